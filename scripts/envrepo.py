"""The env-repo engine shared by the step scripts.

Design decisions recorded here:

- Every script works in a throw-away bare repository and fetches only what it needs with
  `--depth 1` and a single refspec, so its cost does not grow with the env repo's history.
- Trees are edited with git plumbing (read-tree, update-index, write-tree, commit-tree) through
  GitPython: no working tree is checked out, and only the edited app's files are hashed.
- A push is never forced. When another writer moved the branch first, the push is rejected, we
  fetch the new tip, rebuild the commit on it and try again, a bounded number of times with
  jittered exponential back-off.
- Credentials stay out of the logic: a plain git URL works as it is. For an HTTPS remote a token
  may be given in the environment (GITOPS_GIT_TOKEN); it reaches git as an HTTP header through
  GIT_CONFIG_* variables, so it is never on a command line, in `.git/config` or in output.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import NoReturn

import git
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb import LooseObjectDB
from gitdb.base import IStream
from gitdb.exc import BadObject

from gitenv import (
    TOKEN_ENV,
    BadInput,
    OperationFailed,
    basic_auth,
    fetch_args,
    git_environment,
    local_path_url,
    one_line,
)
from prefetch import Prefetch

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

MAX_ATTEMPTS_ENV = "GITOPS_PUSH_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 40

APPS_DIR = "apps"
CONTROL_DIR = ".gitops"
PROMOTED_DIR = f"{CONTROL_DIR}/promoted"
FROZEN_DIR = f"{CONTROL_DIR}/frozen"

APP_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SHA_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# Compiled on first use: process start-up is most of a publish's latency.
BRANCH_PATTERN = r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]+(?<![./])$"
# name[:tag]@sha256:<64 hex>; name is a registry path (host[:port]/path or a bare path).
IMAGE_REF_PATTERN = (
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)

TREE_MODE, FILE_MODE = 0o040000, 0o100644
# Depths tried in turn when a commit must be found on a branch; after them, the whole history.
DEEPEN_STEPS = (16, 256, 4096)
REJECTION_MARKERS = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "cannot lock ref",
    "failed to lock",
    "failed to update ref",
    "stale info",
    "incorrect old value",
    "reference already exists",
)


# --- command-line conventions -------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage problem as one `error:` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{self.prog}: {message}")

    def add_repo_and_app(self, app_required: bool = True) -> None:
        """--repo and --app, which every script takes."""
        self.add_argument("--repo", required=True, help="env repo URL (anything git accepts)")
        self.add_argument("--app", required=app_required, help="app name (a DNS label)")


def run_main(body: Callable[[], str]) -> int:
    """Run a script body; print its result as the last stdout line, map errors to exit codes."""
    try:
        result = body()
    except BadInput as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OperationFailed, git.GitCommandError) as exc:
        print(f"error: {redact(one_line(str(exc)))}", file=sys.stderr)
        return EXIT_FAILED
    print(result)
    return EXIT_OK


def redact(text: str) -> str:
    """Remove the token and any credentials embedded in URLs from a message."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        text = text.replace(token, "***")
        text = text.replace(basic_auth(token), "***")
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


# --- input validation -----------------------------------------------------------------------


def check_app(app: str) -> str:
    if len(app) > 63 or not APP_RE.match(app):
        raise BadInput(f"app {app!r} is not a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, max 63)")
    return app


def check_sha(sha: str, what: str = "commit") -> str:
    if not SHA_RE.match(sha):
        raise BadInput(f"{what} {sha!r} is not a full hex commit SHA (40 or 64 digits)")
    return sha


def check_branch(branch: str) -> str:
    if not re.match(BRANCH_PATTERN, branch) or branch.endswith(".lock"):
        raise BadInput(f"branch {branch!r} is not a valid branch name")
    return branch


def check_image_ref(ref: str) -> re.Match[str]:
    match = re.match(IMAGE_REF_PATTERN, ref)
    if not match:
        raise BadInput(
            f"image reference {ref!r} is invalid: it must be NAME[:TAG]@sha256:<64 hex digits>"
        )
    return match


def check_trailer_value(key: str, value: str) -> str:
    if not value or any(ch in value for ch in "\r\n") or value != value.strip():
        raise BadInput(f"{key} {value!r} must be a non-empty single line")
    return value


def short_ref(image: str) -> str:
    """`hello@sha256:0123456789ab` for a subject line: last path part, 12 digest digits."""
    name, _, digest = image.rpartition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}"


# --- commit messages ------------------------------------------------------------------------


def commit_message(subject: str, trailers: Sequence[tuple[str, str | None]]) -> str:
    lines = [f"{key}: {value}" for key, value in trailers if value]
    return f"{subject}\n\n" + "\n".join(lines) + "\n" if lines else f"{subject}\n"


def parse_trailers(message: str) -> dict[str, str]:
    """The trailers of a message: `Key: value` lines of its last paragraph."""
    paragraphs = message.strip().split("\n\n")
    if len(paragraphs) < 2:
        return {}
    trailers: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.match(r"^[A-Za-z][A-Za-z0-9-]*$", key):
            trailers[key] = value.strip()
    return trailers


# --- the working repository -----------------------------------------------------------------


@dataclass
class EnvRepo:
    """A scratch bare repository that talks to one remote env repo."""

    url: str
    repo: git.Repo
    depths: dict[str, int] = field(default_factory=dict)  # 0: full history
    prefetched: dict[str, Prefetch] = field(default_factory=dict)
    loose: LooseObjectDB | None = None

    @property
    def g(self) -> git.Git:
        return self.repo.git

    def fetch_branch(self, branch: str) -> str | None:
        """Fetch the branch tip, as deep as this branch was fetched before (1 at first).

        Returns the tip SHA, or None if the branch does not exist.
        """
        depth = self.depths.setdefault(branch, 1)
        early = self.prefetched.pop(branch, None)
        if early is not None:
            code, stderr = early.wait()  # started before GitPython was imported
            if code != 0:
                return self.fetch_failed(branch, stderr)
            return self.tip(branch)
        try:
            self.g.execute(["git", *fetch_args(self.url, branch, depth, self.is_shallow())])
        except git.GitCommandError as exc:
            return self.fetch_failed(branch, git_error(exc))
        return self.tip(branch)

    def fetch_failed(self, branch: str, stderr: str) -> None:
        """None when the branch does not exist; any other failure is operational."""
        if "couldn't find remote ref" in stderr:
            return None
        raise OperationFailed(f"cannot fetch {branch!r} from {self.url}: {one_line(stderr)}")

    def reach(self, branch: str, commits: Sequence[str]) -> bool:
        """Deepen the branch until every commit is reachable from its tip; False if one never is.

        The cost depends on how far back the commits are, not on the branch's length.
        """
        tip = self.tip(branch) or self.fetch_branch(branch)
        while tip is not None:
            if all(self.has_object(c) and self.is_ancestor(c, tip) for c in commits):
                return True
            current = self.depths.get(branch, 1)
            if current == 0:
                return False
            self.depths[branch] = next((d for d in DEEPEN_STEPS if d > current), 0)
            tip = self.fetch_branch(branch)
        return False

    def tip(self, branch: str) -> str | None:
        """The tip fetched last for branch, if any."""
        ref = git.Reference(self.repo, f"refs/remotes/origin/{branch}")
        return ref.object.hexsha if ref.is_valid() else None

    def is_shallow(self) -> bool:
        return (Path(self.repo.git_dir) / "shallow").exists()

    def has_object(self, sha: str) -> bool:
        try:
            self.g.cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self.g.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError:
            return False
        return True

    def read_object(self, binsha: bytes) -> bytes:
        """An object's content: in-process when the fetch left it loose, else through git."""
        try:
            return self.loose_db().stream(binsha).read()
        except BadObject:
            return self.repo.odb.stream(binsha).read()

    def entries(self, tree: bytes) -> dict[str, tuple[bytes, int]]:
        return {name: (sha, mode) for sha, mode, name in
                tree_entries_from_data(self.read_object(tree))}

    def root_tree(self, commit: str | None) -> bytes | None:
        if commit is None:
            return None
        header = self.read_object(bytes.fromhex(commit)).split(b"\n", 1)[0]
        return bytes.fromhex(header.removeprefix(b"tree ").decode())

    def lookup(self, commit: str | None, path: str) -> tuple[bytes, int] | None:
        """(binsha, mode) of the entry at path in commit, or None when absent."""
        tree = self.root_tree(commit)
        if tree is None:
            return None
        entry: tuple[bytes, int] | None = (tree, TREE_MODE)
        for part in filter(None, path.split("/")):
            if entry is None or entry[1] != TREE_MODE:
                return None
            entry = self.entries(entry[0]).get(part)
        return entry

    def tree_of(self, commit: str | None, path: str = "") -> str | None:
        """The tree (or blob) SHA at path in commit, or None when absent."""
        entry = self.lookup(commit, path)
        return entry[0].hex() if entry else None

    def read_blob(self, commit: str | None, path: str) -> str | None:
        entry = self.lookup(commit, path)
        if entry is None or entry[1] == TREE_MODE:
            return None
        return self.read_object(entry[0]).decode()

    def promoted_from(self, tip: str | None, app: str) -> str | None:
        """The candidate commit production took last for app (`.gitops/promoted/APP`)."""
        return (self.read_blob(tip, f"{PROMOTED_DIR}/{app}") or "").strip() or None

    def freeze_note(self, branch: str, app: str) -> str | None:
        """The reason app is frozen at the branch's fetched tip, or None when it is not."""
        return self.read_blob(self.tip(branch), f"{FROZEN_DIR}/{app}")

    def message_of(self, commit: str) -> str:
        return self.read_object(bytes.fromhex(commit)).decode().split("\n\n", 1)[1]

    # Trees and commits are written straight into the object database: no index, no work tree,
    # no process per step. Only the trees on the edited path are rewritten.

    def loose_db(self) -> LooseObjectDB:
        if self.loose is None:
            self.loose = LooseObjectDB(os.path.join(self.repo.git_dir, "objects"))
        return self.loose

    def store(self, kind: bytes, data: bytes) -> bytes:
        """Write one loose object in-process (no git process per object); its binary SHA."""
        return self.loose_db().store(IStream(kind, len(data), BytesIO(data))).binsha

    def write_tree(self, entries: dict[str, tuple[bytes, int]]) -> bytes:
        # git orders entries by name, a tree's name compared as if it ended with "/".
        ordered = sorted(entries.items(),
                         key=lambda item: item[0] + "/" if item[1][1] == TREE_MODE else item[0])
        buffer = BytesIO()
        tree_to_stream([(sha, mode, name) for name, (sha, mode) in ordered], buffer.write)
        return self.store(b"tree", buffer.getvalue())

    def edit_tree(self, base: bytes | None, path: str,
                  new: tuple[bytes, int] | None) -> bytes | None:
        """Tree base with the entry at path replaced by new (binsha, mode), or removed if None.

        Returns the new tree's binary SHA, or None when the result is empty (git keeps no
        empty trees).
        """
        entries = self.entries(base) if base is not None else {}
        head, _, rest = path.partition("/")
        if rest:
            current = entries.get(head)
            child = current[0] if current and current[1] == TREE_MODE else None
            new_child = self.edit_tree(child, rest, new)
            new = (new_child, TREE_MODE) if new_child else None
        if new is None:
            entries.pop(head, None)
        else:
            entries[head] = new
        return self.write_tree(entries) if entries else None

    def folder_tree(self, root: Path) -> bytes | None:
        """Write every file under root as blobs and trees; the folder's tree SHA."""
        entries: dict[str, tuple[bytes, int]] = {}
        for item in root.iterdir():
            if item.is_dir():
                sub = self.folder_tree(item)
                if sub is not None:
                    entries[item.name] = (sub, TREE_MODE)
            elif item.is_file():
                entries[item.name] = (self.store(b"blob", item.read_bytes()), FILE_MODE)
        return self.write_tree(entries) if entries else None

    def commit(self, tree: bytes, parent: str | None, message: str) -> str:
        env = self.repo.git.environment()
        stamp = f"{int(time.time())} +0000"
        author = f"{env['GIT_AUTHOR_NAME']} <{env['GIT_AUTHOR_EMAIL']}> {stamp}"
        committer = f"{env['GIT_COMMITTER_NAME']} <{env['GIT_COMMITTER_EMAIL']}> {stamp}"
        header = f"tree {tree.hex()}\n" + (f"parent {parent}\n" if parent else "")
        body = f"{header}author {author}\ncommitter {committer}\n\n{message}"
        return self.store(b"commit", body.encode()).hex()

    def push(self, commit: str, branch: str) -> bool:
        """Push commit to branch without force; False when another writer got there first."""
        try:
            self.g.push("--porcelain", "--quiet", self.url, f"{commit}:refs/heads/{branch}")
        except git.GitCommandError as exc:
            output = f"{exc.stdout}\n{exc.stderr}"
            if any(marker in output for marker in REJECTION_MARKERS):
                return False
            raise OperationFailed(f"push to {branch!r} failed: {git_error(exc)}") from None
        return True


def git_error(exc: git.GitCommandError) -> str:
    """git's own message, without GitPython's wrapping."""
    text = str(exc.stderr).strip()
    text = text.removeprefix("stderr:").strip().strip("'")
    return one_line(text)


@contextmanager
def scratch_repo(url: str, early: Prefetch | None = None) -> Iterator[EnvRepo]:
    """A temporary bare repository for talking to url, removed afterwards.

    With `early` (a fetch publish.py started before importing GitPython), that fetch's
    repository is adopted and its result is the branch's first fetch.
    """
    url = local_path_url(url)
    if early is not None and early.matches(url):
        workdir = early.workdir
        repo = git.Repo(workdir)
    else:
        early = None
        workdir = tempfile.mkdtemp(prefix="gitops-")
        # No template: nothing to copy in, nothing to delete afterwards.
        repo = git.Repo.init(workdir, bare=True, template="", allow_unsafe_options=True)
    try:
        repo.git.update_environment(**git_environment(url))
        env = EnvRepo(url=url, repo=repo)
        if early is not None:
            env.prefetched[early.branch] = early
        yield env
    finally:
        if early is not None:
            early.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def max_attempts() -> int:
    value = os.environ.get(MAX_ATTEMPTS_ENV, str(DEFAULT_MAX_ATTEMPTS))
    if not value.isdigit() or int(value) < 1:
        raise BadInput(f"{MAX_ATTEMPTS_ENV} must be a positive integer, not {value!r}")
    return int(value)


def backoff(attempt: int) -> None:
    """Full-jitter exponential back-off: spreads writers that collided on the same tip."""
    time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


def retry_push(attempt_once: Callable[[], str | None]) -> str:
    """Run attempt_once until it lands; it returns the resulting tip, or None when rejected.

    attempt_once fetches the branch tip, builds its commit on that tip and pushes it without
    force. A rejection means another writer got there first: back off, then rebuild on the new
    tip. The number of attempts is bounded.
    """
    attempts = max_attempts()
    for attempt in range(attempts):
        result = attempt_once()
        if result is not None:
            return result
        backoff(attempt)
    raise OperationFailed(f"push rejected {attempts} times: other writers kept moving the branch")


def atomic_write_dir(target: Path, files: dict[str, str]) -> None:
    """Write files (relative name -> text) into target, which must not exist yet or be empty."""
    staging = Path(tempfile.mkdtemp(prefix=".render-", dir=target.parent))
    try:
        for name, text in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
