"""The one git layer: a scratch bare repository that talks to one remote env repo.

Design decisions:
- Every command works in a throw-away bare repository and fetches only what it needs with
  `--depth 1` and a single refspec, so its cost does not grow with the env repo's history;
  `reach` deepens step by step only when an older commit is needed.
- Objects are read through GitPython's object API (one `cat-file --batch` process per
  repository) and written by git's own plumbing: `hash-object`, `mktree`, `commit-tree`.
  `mktree` orders tree entries itself, so trees are valid by construction, whatever the names
  (`hello` beside `hello-api`, a folder `base` beside a file `base.yaml`).
- A push is never forced. Its outcome is read from `push --porcelain`: a ref marked
  `[rejected]` (the remote moved on: not a fast-forward) is a lost race, retried by the caller;
  a ref the remote refused is a lost race only if the branch moved meanwhile (a concurrent
  writer held its lock), otherwise a failure carrying the remote's reason; no status line at
  all (connection, authentication) is a failure.
- Git runs with LC_ALL=C and every decision reads exit codes or porcelain fields, never git's
  English messages. Positional arguments follow `--`, so no value can be read as an option, and
  the remote is checked before any git runs (`gitops.checks.check_remote`).
- Every network command (fetch, ls-remote, push) runs in its own process group with a deadline
  (GITOPS_GIT_TIMEOUT, default 120 s), and git aborts HTTP transfers that stall; a remote that
  hangs fails the command with a clear message instead of blocking the build.
- The scratch repository is a `gitops.scratch` folder: a run killed with SIGKILL leaves it
  behind, and the next run on the host removes it.
- GitPython is loaded by `scratch_repo`, after it has started the caller's first fetch (with the
  standard library, the one git call not made through GitPython): loading it takes about as
  long as a shallow fetch, and publish, on every app build's critical path, needs both.
  `make bench` shows the overlap is what keeps publish 10x faster than the tutorial's sequence.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

if TYPE_CHECKING:
    import git

from gitops import processes, scratch
from gitops.checks import check_remote
from gitops.credentials import git_environment, git_timeout, process_environment
from gitops.errors import OperationFailed, one_line
from gitops.signing import GitSigning, SignatureCheck, Signing, git_settings
from gitops.trailers import Trailers, parse_trailer_lines

TREE_MODE = "040000"
FILE_MODE = "100644"
# Depths tried in turn when a commit must be found on a branch; after them, the whole history.
DEEPEN_STEPS = (16, 256, 4096)
FIELD_SEP = "\x1f"


@dataclass(frozen=True)
class Entry:
    """A tree entry: object SHA and mode as git prints it (040000 tree, 100644 file)."""

    sha: str
    mode: str

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE

    @classmethod
    def tree(cls, sha: str) -> Entry:
        return cls(sha, TREE_MODE)

    @classmethod
    def file(cls, sha: str) -> Entry:
        return cls(sha, FILE_MODE)


@dataclass(frozen=True)
class LogEntry:
    """One commit of a branch's history: SHA, committer time (ISO 8601), trailers, and the
    signature check when allowed signers are configured (None otherwise)."""

    sha: str
    time: str
    trailers: Trailers
    signature: SignatureCheck | None = None


@contextmanager
def stdin(data: bytes) -> Iterator[BinaryIO]:
    """data as a file git can read its standard input from."""
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        handle.seek(0)
        yield cast(BinaryIO, handle)


@dataclass
class EnvRepo:
    """A scratch bare repository that talks to one remote env repo (`url`)."""

    url: str
    repo: git.Repo
    process_env: dict[str, str] = field(default_factory=dict)  # for network commands
    timeout: float = 120.0  # seconds one network command may take
    depths: dict[str, int] = field(default_factory=dict)  # per branch; 0: whole history
    # Fetches started by scratch_repo before GitPython was loaded, by branch.
    early: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    signing: Signing = field(default_factory=Signing)  # configured in git by scratch_repo

    @property
    def git(self) -> git.Git:
        return self.repo.git

    def run(self, *args: str, data: bytes | None = None) -> tuple[int, str, str]:
        """Run one git command in the repository: exit code, stdout, stderr (never raises)."""
        if data is None:
            status, out, err = self.git.execute(["git", *args], with_extended_output=True,
                                                with_exceptions=False)
        else:
            with stdin(data) as handle:
                status, out, err = self.git.execute(["git", *args], istream=handle,
                                                    with_extended_output=True,
                                                    with_exceptions=False)
        return int(status), str(out), str(err)

    def output(self, *args: str, data: bytes | None = None) -> str:
        """stdout of a git command that must succeed; OperationFailed with git's reason if not."""
        status, out, err = self.run(*args, data=data)
        if status != 0:
            raise OperationFailed(f"git {args[0]} failed (exit {status}): {one_line(err)}")
        return out

    def network(self, what: str, *args: str) -> tuple[int, str, str]:
        """Run a git command that talks to the remote, within the timeout (never raises
        except on timeout)."""
        return processes.run(["git", *args], self.process_env, self.timeout, what,
                             cwd=str(self.repo.git_dir))

    # --- the remote ---------------------------------------------------------------------------

    def fetch(self, branch: str) -> str | None:
        """Fetch the branch tip, as deep as this branch was fetched before (1 at first).

        Returns the tip SHA, or None when the remote has no such branch.
        """
        depth = self.depths.setdefault(branch, 1)
        early = self.early.pop(branch, None)
        for _ in range(3):
            what = f"git fetch of {branch!r} from {self.url}"
            if early is not None:
                status, _, err = processes.finish(early, self.timeout, what)
                early = None
            else:
                status, _, err = self.network(
                    what, *fetch_args(self.url, branch, depth, self.is_shallow()))
            if status == 0:
                return self.tip(branch)
            # Missing branch, or another failure? Ask the remote (exit code 2: no such ref).
            if self.remote_tip(branch, failure=err) is None:
                return None
            # It exists: created by another writer since our fetch asked, or a real failure.
        raise OperationFailed(f"cannot fetch {branch!r} from {self.url}: {one_line(err)}")

    def remote_tip(self, branch: str, failure: str = "") -> str | None:
        """The branch's tip on the remote now, or None when it has no such branch."""
        ref = f"refs/heads/{branch}"
        status, out, err = self.network(f"git ls-remote of {branch!r} at {self.url}",
                                        "ls-remote", "--exit-code", "--", self.url, ref)
        if status == 2:
            return None
        if status != 0:
            raise OperationFailed(f"cannot fetch {branch!r} from {self.url}: "
                                  f"{one_line(failure or err)}")
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def reach(self, branch: str, commits: list[str]) -> bool:
        """Deepen the branch until every commit is reachable from its tip; False if one never is.

        The cost depends on how far back the commits are, not on the branch's length.
        """
        tip = self.tip(branch) or self.fetch(branch)
        while tip is not None:
            if all(self.has_commit(c) and self.is_ancestor(c, tip) for c in commits):
                return True
            current = self.depths.get(branch, 1)
            if current == 0:
                return False
            self.depths[branch] = next((d for d in DEEPEN_STEPS if d > current), 0)
            tip = self.fetch(branch)
        return False

    def last_change(self, branch: str, commit: str, path: str) -> str | None:
        """The newest commit at or before commit (on branch) that changed path; None if none.

        A shallow history's oldest commit seems to add every file, so when the answer is that
        boundary the branch is deepened until the real change is found, or history ends.
        """
        while True:
            found = self.log(commit, path, limit=1)
            sha = found[0].sha if found else None
            current = self.depths.get(branch, 1)
            if sha is None or sha not in self.shallow_boundary() or current == 0:
                return sha
            self.depths[branch] = next((d for d in DEEPEN_STEPS if d > current), 0)
            self.fetch(branch)

    def shallow_boundary(self) -> set[str]:
        """The commits whose parents this shallow repository does not have."""
        shallow = Path(self.repo.git_dir) / "shallow"
        return set(shallow.read_text().split()) if shallow.exists() else set()

    def fetch_whole(self, *branches: str) -> None:
        """Fetch the branches with their whole history (history is as long as they are)."""
        for branch in branches:
            self.depths[branch] = 0
            self.fetch(branch)

    def push(self, commit: str, branch: str, base: str | None) -> bool:
        """Push commit (built on base, the tip fetched) to branch, never forced.

        True: it landed. False: another writer moved the branch first (retry on the new tip).
        OperationFailed: the remote refused for another reason, or could not be reached.
        """
        ref = f"refs/heads/{branch}"
        status, out, err = self.network(
            f"git push of {commit} to {branch!r} (its outcome is unknown: check the branch)",
            "push", "--porcelain", "--", self.url, f"{commit}:{ref}")
        flag, summary = porcelain_status(out, ref)
        if flag is None:
            raise OperationFailed(f"push to {branch!r} failed (exit {status}): {one_line(err)}")
        if flag != "!":
            return True
        if summary.startswith("[rejected]"):
            return False  # not a fast-forward: the branch moved since our fetch
        if self.remote_tip(branch) != base:
            return False  # refused while another writer was moving the branch
        raise OperationFailed(f"push to {branch!r} refused by the remote: {summary}")

    # --- reading ------------------------------------------------------------------------------

    def tip(self, branch: str) -> str | None:
        """The tip fetched last for branch, if any."""
        import git

        try:  # the ref file read in-process: no git process for it
            return git.Reference.dereference_recursive(self.repo, f"refs/remotes/origin/{branch}")
        except ValueError:  # no such ref
            return None

    def is_shallow(self) -> bool:
        return (Path(self.repo.git_dir) / "shallow").exists()

    def has_commit(self, sha: str) -> bool:
        return self.run("cat-file", "-e", f"{sha}^{{commit}}")[0] == 0

    def is_ancestor(self, older: str, newer: str) -> bool:
        status, _, err = self.run("merge-base", "--is-ancestor", older, newer)
        if status > 1:
            raise OperationFailed(f"cannot compare {older} and {newer}: {one_line(err)}")
        return status == 0

    def tree_entries(self, tree: str) -> dict[str, Entry]:
        import git

        root = git.Tree(self.repo, bytes.fromhex(tree), path="")
        return {item.name: Entry(item.hexsha, f"{item.mode:06o}") for item in root}

    def root_tree(self, commit: str | None) -> str | None:
        import git

        return None if commit is None else git.Commit(self.repo, bytes.fromhex(commit)).tree.hexsha

    def lookup(self, commit: str | None, path: str) -> Entry | None:
        """The entry at path in commit, or None when absent."""
        root = self.root_tree(commit)
        if root is None:
            return None
        entry: Entry | None = Entry.tree(root)
        for part in filter(None, path.split("/")):
            if entry is None or not entry.is_tree:
                return None
            entry = self.tree_entries(entry.sha).get(part)
        return entry

    def read_object(self, sha: str) -> bytes:
        return bytes(self.repo.odb.stream(bytes.fromhex(sha)).read())

    def read_blob(self, commit: str | None, path: str) -> str | None:
        entry = self.lookup(commit, path)
        if entry is None or entry.is_tree:
            return None
        return self.read_object(entry.sha).decode()

    def log(self, tip: str, path: str | None = None, limit: int | None = None,
            signatures: bool = False) -> list[LogEntry]:
        """Commits reachable from tip (touching path, if given), newest first, with trailers;
        with signatures, each commit's signature checked against the allowed signers.

        Checking costs an ssh-keygen run per signed commit, so only the callers that show or
        enforce signatures ask for it.
        """
        if signatures and not self.signing.verifies:
            raise OperationFailed("no allowed signers configured: signatures cannot be checked")
        signature = f"%G?{FIELD_SEP}%GS{FIELD_SEP}" if signatures else ""
        args = ["log", "-z",
                f"--format=%H{FIELD_SEP}%cI{FIELD_SEP}{signature}%(trailers:only,unfold)"]
        if limit is not None:
            args.append(f"--max-count={limit}")
        out = self.output(*args, tip, "--", *([path] if path else []))
        entries = []
        for record in filter(None, out.split("\0")):
            check: SignatureCheck | None = None
            if signatures:
                sha, when, flag, signer, trailers = record.split(FIELD_SEP, 4)
                check = SignatureCheck.from_git(flag, signer)
            else:
                sha, when, trailers = record.split(FIELD_SEP, 2)
            entries.append(LogEntry(sha.strip(), when, parse_trailer_lines(trailers), check))
        return entries

    def unverified(self, branch: str, commit: str, path: str) -> str | None:
        """Why commit (on branch) may not be applied when signing is on, or None when it may.

        Both must verify: commit itself, and the commit that last changed path up to it (the
        one that wrote what would be applied): a writer signs whatever tip it builds on, so an
        unsigned change beneath a signed commit would otherwise pass under its signature.
        """
        writer = self.last_change(branch, commit, path) or commit
        roles = {commit: "commit"}
        roles.setdefault(writer, f"the commit that wrote {path.rstrip('/')}/,")
        for sha, role in roles.items():
            check = self.verify(sha)
            if not check.good:
                return f"{role} {sha[:12]} is {check.describe()}"
        return None

    def verify(self, commit: str) -> SignatureCheck:
        """The commit's signature checked against the configured allowed signers."""
        check = self.log(commit, limit=1, signatures=True)[0].signature
        assert check is not None  # asked for: every entry carries its check
        return check

    def trailers(self, commit: str) -> Trailers:
        return self.log(commit, limit=1)[0].trailers

    def materialize(self, tree: str, folder: Path) -> None:
        """Write a tree's files into folder."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, entry in self.tree_entries(tree).items():
            if entry.is_tree:
                self.materialize(entry.sha, folder / name)
            else:
                (folder / name).write_bytes(self.read_object(entry.sha))

    # --- writing: git's plumbing makes every object -------------------------------------------

    def write_blob(self, data: bytes) -> str:
        return self.output("hash-object", "-w", "--stdin", data=data).strip()

    def write_files(self, paths: list[Path]) -> list[str]:
        """Store files as blobs (one process for all); their SHAs in order."""
        if not paths:
            return []
        out = self.output("hash-object", "-w", "--no-filters", "--", *map(str, paths))
        return out.split()

    def make_tree(self, entries: dict[str, Entry]) -> str:
        """A tree of entries; mktree sorts them the way git requires."""
        data = b"".join(
            f"{e.mode} {'tree' if e.is_tree else 'blob'} {e.sha}\t".encode() + name.encode()
            + b"\0" for name, e in entries.items())
        return self.output("mktree", "-z", data=data).strip()

    def write_folder(self, files: dict[str, Path]) -> str | None:
        """Files (tree path -> the regular file holding its content) as blobs and trees; the
        top tree's SHA (None when there are no files). The caller has checked every path."""
        names = sorted(files)
        shas = dict(zip(names, self.write_files([files[n] for n in names]), strict=True))
        nested: dict[str, dict[str, str]] = {"": {}}  # folder -> {entry name: tree path}
        for name in names:
            parts = name.split("/")
            for depth in range(len(parts)):
                folder = "/".join(parts[:depth])
                nested.setdefault(folder, {})[parts[depth]] = "/".join(parts[:depth + 1])

        def tree_of(folder: str) -> str | None:
            entries: dict[str, Entry] = {}
            for entry_name, path in nested.get(folder, {}).items():
                if path in shas:
                    entries[entry_name] = Entry.file(shas[path])
                else:
                    sub = tree_of(path)
                    if sub is not None:
                        entries[entry_name] = Entry.tree(sub)
            return self.make_tree(entries) if entries else None

        return tree_of("")

    def edit_tree(self, base: str | None, path: str, new: Entry | None) -> str | None:
        """Tree base with the entry at path replaced by new, or removed if new is None.

        Only the trees on the path are rewritten. None when the result is empty (git keeps no
        empty trees).
        """
        entries = self.tree_entries(base) if base is not None else {}
        head, _, rest = path.partition("/")
        if rest:
            current = entries.get(head)
            child = current.sha if current is not None and current.is_tree else None
            new_child = self.edit_tree(child, rest, new)
            new = Entry.tree(new_child) if new_child else None
        if new is None:
            entries.pop(head, None)
        else:
            entries[head] = new
        return self.make_tree(entries) if entries else None

    def commit(self, tree: str | None, parent: str | None, message: str) -> str:
        """A commit of tree (None: the empty tree) on parent, by the configured identity, signed
        with the configured SSH key when there is one."""
        tree = tree or self.make_tree({})
        parents = ["-p", parent] if parent else []
        sign = ["-S"] if self.signing.signs else []
        return self.output("commit-tree", *sign, tree, *parents, data=message.encode()).strip()


def porcelain_status(out: str, ref: str) -> tuple[str | None, str]:
    """(flag, summary) of ref in `git push --porcelain` output; (None, "") when absent.

    Lines are `<flag>\\t<from>:<to>\\t<summary>`; the flag is ` ` (fast-forward), `*` (new
    ref), `=` (up to date), `!` (rejected or refused), and `+`/`-` (never used here).
    """
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and parts[1].endswith(f":{ref}"):
            return parts[0], parts[2]
    return None, ""


def fetch_args(url: str, branch: str, depth: int, shallow: bool) -> list[str]:
    """`git fetch` arguments for one branch into refs/remotes/origin/ (depth 0: whole history)."""
    args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
    if depth:
        args.append(f"--depth={depth}")
    elif shallow:
        args.append("--unshallow")
    return [*args, "--", url, f"+refs/heads/{branch}:refs/remotes/origin/{branch}"]


@contextmanager
def scratch_repo(url: str, first_fetch: str | None = None,
                 signing: Signing | None = None) -> Iterator[EnvRepo]:
    """A temporary bare repository for talking to url, removed afterwards.

    With first_fetch, that branch's shallow fetch starts at once and runs while GitPython
    loads and the caller prepares; `EnvRepo.fetch(first_fetch)` then returns its result.
    Commits are signed and signatures checked as signing says (default: the environment,
    `gitops.signing`).
    """
    url = check_remote(url)
    signing = signing if signing is not None else Signing.from_env()
    # git_settings first: a bad key fails there, before anything else.
    with git_settings(signing) as git_signing, \
            _scratch_repo(url, first_fetch, signing, git_signing) as env:
        yield env


@contextmanager
def reuse_or_open(url: str, env: EnvRepo | None,
                  signing: Signing | None = None) -> Iterator[EnvRepo]:
    """env, when the caller already has url open (a delivery promotes and chains in the
    repository it read the candidate from: no second scratch repository and first fetch);
    otherwise a new scratch repository."""
    if env is not None:
        if env.url != check_remote(url):
            raise ValueError(f"an open repository of {env.url} cannot stand in for {url}")
        yield env
        return
    with scratch_repo(url, signing=signing) as fresh:
        yield fresh


@contextmanager
def _scratch_repo(url: str, first_fetch: str | None, signing: Signing,
                  git_signing: GitSigning) -> Iterator[EnvRepo]:
    timeout = git_timeout()
    # First: a token failure leaves nothing behind.
    environment = git_environment(url, git_signing.settings, git_signing.email)
    process_env = process_environment(environment)
    workdir = str(scratch.make())
    early: subprocess.Popen[bytes] | None = None
    try:
        # No template: nothing to copy in, nothing to delete afterwards.
        status, _, err = processes.run(
            ["git", "init", "--quiet", "--bare", "--template=", "--", workdir], process_env,
            timeout, "git init of a scratch repository")
        if status != 0:
            raise OperationFailed(f"cannot create a scratch repository: {one_line(err)}")
        if first_fetch is not None:
            early = processes.start(["git", *fetch_args(url, first_fetch, 1, False)],
                                    process_env, cwd=workdir)
        import git  # here, not at the top: see the module docstring

        repo = git.Repo(workdir)
        repo.git.update_environment(**environment)
        try:
            yield EnvRepo(url=url, repo=repo, process_env=process_env, timeout=timeout,
                          early={first_fetch: early} if first_fetch and early else {},
                          signing=signing)
        finally:
            repo.close()
    finally:
        if early is not None and early.returncode is None:
            processes.kill_group(early)
        shutil.rmtree(workdir, ignore_errors=True)
