"""Publish one app's rendered manifests to a branch of the env repo (default `candidate`).

`apps/APP/` on the branch becomes exactly the given folder: files removed from the folder are
removed from the branch. One commit per call, with provenance trailers (one `Image:` line per
image the app's build pushed: an app may have several); identical content makes no commit and
returns the current tip. A rejected push is rebuilt on the new tip and retried.

With environments that render differently, the same commit also carries each later
environment's rendering of the same release as `releases/ENV/APP/` (`release_for`), which the
delivery chain publishes to that environment's candidate in turn (`gitops.chain`). The commit
holds the whole release: `releases/*/APP/` becomes exactly the later renderings that differ
from `apps/APP/` (an identical one is not stored: the chain falls back to `apps/APP/`), so no
rendering of an older release is left to travel with this one. `per_environment` reads the
folder `render.py --environments` writes (one subfolder per environment, in delivery order).

Publish is on every app build's critical path, so its first fetch runs while GitPython loads
and the manifests are checked and stored as git objects (`gitops.envrepo.scratch_repo`).

The folder holds regular .yaml/.yml files only (symlinks only when they resolve inside it), and
each is parsed as render parses it, so publish refuses what render refuses (duplicate keys,
excessive nesting, alias bombs: `gitops.manifests`). The branch must exist: creating branches
is `init_branches`' job, so a mistyped `--branch` cannot start a new root branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitops.chain import with_releases
from gitops.checks import (
    check_app,
    check_branch,
    check_build_name,
    check_image_ref,
    check_remote,
    check_sha,
    check_source_repo,
    check_trailer_value,
    short_ref,
)
from gitops.envrepo import Entry, scratch_repo
from gitops.errors import BadInput
from gitops.manifests import check_folder_yaml, collect_files
from gitops.retry import RetryPolicy, retry_push
from gitops.trailers import commit_message

APPS_DIR = "apps"


@dataclass(frozen=True)
class PublishRequest:
    repo: str
    app: str
    manifests: Path
    branch: str = "candidate"
    source_repo: str | None = None
    source_commit: str | None = None
    images: tuple[str, ...] = ()  # full references with @sha256: digests, in build order
    build_id: str | None = None
    provenance: str | None = None  # projects/P/locations/L/builds/ID (gitops.checks)
    # (environment, folder): later environments' renderings, as releases/ENV/APP/
    release_for: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class PublishResult:
    commit: str  # the branch tip afterwards
    created: bool  # False: the branch already held exactly these manifests
    attempts: int  # pushes tried (1 unless another writer got there first)


def missing_branch(branch: str, repo: str) -> BadInput:
    return BadInput(f"branch {branch!r} does not exist in {repo}: branches are created by "
                    "init_branches.py (is --branch mistyped?)")


def check_request(request: PublishRequest) -> None:
    check_remote(request.repo)
    check_app(request.app)
    check_branch(request.branch)
    image_names: set[str] = set()
    for image in request.images:
        name = check_image_ref(image)["name"]
        if name in image_names:
            raise BadInput(f"--image {name} is given more than once: one reference per image")
        image_names.add(name)
    if request.source_commit is not None:
        check_sha(request.source_commit, "--source-commit")
    if request.source_repo is not None:
        check_source_repo(request.source_repo)
    if request.build_id is not None:
        check_trailer_value("--build-id", request.build_id)
    if request.provenance is not None:
        check_build_name(request.provenance, "--provenance")
    names = [check_app(name) for name, _ in request.release_for]
    if len(set(names)) != len(names):
        raise BadInput("--release-for names an environment twice")


def per_environment(folder: Path,
                    environments: tuple[str, ...]) -> tuple[Path, tuple[tuple[str, Path], ...]]:
    """The first environment's manifests folder and the later ones' (`release_for`), from a
    folder holding exactly one rendering per environment, named after it."""
    if not folder.is_dir() or folder.is_symlink():
        raise BadInput(f"manifests folder {str(folder)!r} is not a folder")
    found = {entry.name: entry for entry in folder.iterdir()}
    for name, entry in sorted(found.items()):
        if name not in environments or entry.is_symlink() or not entry.is_dir():
            raise BadInput(f"{str(entry)!r} is not the rendering of an environment in "
                           f"--environments ({' '.join(environments)})")
    missing = [name for name in environments if name not in found]
    if missing:
        raise BadInput(f"manifests folder {str(folder)!r} holds no rendering for environment "
                       f"{missing[0]!r} (render.py --environments writes one folder each)")
    first, *later = environments
    return folder / first, tuple((name, folder / name) for name in later)


def message_for(request: PublishRequest) -> str:
    what = ", ".join(short_ref(image) for image in request.images) or "manifests"
    return commit_message(f"Deploy {request.app}: {what}", [
        ("App", request.app),
        *(("Image", image) for image in request.images),
        ("Source-Repo", request.source_repo),
        ("Source-Commit", request.source_commit),
        ("Build-Id", request.build_id),
        ("Provenance", request.provenance),
    ])


def publish(request: PublishRequest, policy: RetryPolicy | None = None) -> PublishResult:
    """Make `apps/APP/` on the branch exactly the manifests folder, in one commit."""
    check_request(request)
    policy = policy or RetryPolicy.from_env()
    files = collect_files(request.manifests)
    release_files = {name: collect_files(folder) for name, folder in request.release_for}
    message = message_for(request)
    prefix = f"{APPS_DIR}/{request.app}"

    with scratch_repo(request.repo, first_fetch=request.branch) as env:
        check_folder_yaml(files, request.manifests)  # bad input stops us before any push
        for name, folder in request.release_for:
            check_folder_yaml(release_files[name], folder)
        app_tree = env.write_folder(files)
        if app_tree is None:
            raise BadInput(f"manifests folder {str(request.manifests)!r} holds no files")
        app_entry = Entry.tree(app_tree)
        releases: dict[str, Entry] = {}
        for name, folder in request.release_for:
            tree_sha = env.write_folder(release_files[name])
            if tree_sha is None:
                raise BadInput(f"manifests folder {str(folder)!r} holds no files")
            if tree_sha != app_tree:  # the same rendering travels as apps/APP/
                releases[name] = Entry.tree(tree_sha)
        attempts: list[bool] = []  # per attempt: whether it made a commit

        def attempt() -> str | None:
            tip = env.fetch(request.branch)  # the first time: the fetch started early
            if tip is None:
                raise missing_branch(request.branch, request.repo)
            base = env.root_tree(tip)
            tree = with_releases(env, env.edit_tree(base, prefix, app_entry), tip, request.app,
                                 releases)
            if tree == base:
                attempts.append(False)
                return tip  # identical content: no commit
            attempts.append(True)
            commit = env.commit(tree, tip, message)
            return commit if env.push(commit, request.branch, tip) else None

        landed = retry_push(attempt, policy)
        return PublishResult(commit=landed.value, created=attempts[-1],
                             attempts=landed.attempts)
