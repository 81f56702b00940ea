"""Promote one app from a `candidate` commit to `production` (or any source / target pair).

`apps/APP/` on the target becomes exactly what it is at the commit; other apps stay untouched.
The commit is a Rollback when it is older on the source than the candidate commit production
last took for this app (recorded in `.gitops/promoted/APP`), otherwise a Promote. Already
identical: no commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gitops.checks import (
    check_app,
    check_branch,
    check_remote,
    check_sha,
    check_trailer_value,
    short_ref,
)
from gitops.credentials import strip_userinfo
from gitops.envrepo import Entry, EnvRepo, reuse_or_open
from gitops.errors import BadInput
from gitops.retry import RetryPolicy, retry_push
from gitops.signing import Signing
from gitops.trailers import Trailers, commit_message

APPS_DIR = "apps"
PROMOTED_DIR = ".gitops/promoted"
PROVENANCE_KEYS = ("Image", "Provenance", "Source-Repo", "Source-Commit")


class Kind(Enum):
    PROMOTE = "Promote"
    ROLLBACK = "Rollback"


@dataclass(frozen=True)
class PromoteRequest:
    repo: str
    app: str
    commit: str
    source: str = "candidate"
    target: str = "production"
    build_id: str | None = None
    signing: Signing | None = None  # None: from the environment (gitops.signing)
    approved_by: str | None = None  # who approved the delivery build (gated environments)


@dataclass(frozen=True)
class PromoteResult:
    commit: str  # the target's tip afterwards
    kind: Kind | None  # None: the target already held this tree, no commit made
    attempts: int


def promoted_from(env: EnvRepo, tip: str | None, app: str) -> str | None:
    """The source commit the target took last for app (`.gitops/promoted/APP`)."""
    return (env.read_blob(tip, f"{PROMOTED_DIR}/{app}") or "").strip() or None


def provenance(env: EnvRepo, commit: str, app: str) -> list[tuple[str, str]]:
    """Provenance trailers (every `Image:` line included) of the candidate commit that produced
    the app's tree at commit, in message order."""
    trailers = env.trailers(commit)
    if trailers.get("App") != app:
        last = env.log(commit, f"{APPS_DIR}/{app}/", limit=1)
        trailers = last[0].trailers if last else Trailers()
        if trailers.get("App") != app:
            return []
    found = [(key, value) for key in PROVENANCE_KEYS for value in trailers.all(key)]
    # Credentials recorded before Source-Repo was checked stay out.
    return [(key, strip_userinfo(value) or "" if key == "Source-Repo" else value)
            for key, value in found]


def is_rollback(env: EnvRepo, source: str, commit: str, previous: str | None) -> bool:
    """True when commit is strictly older on the source branch than what the target took."""
    if not previous or previous == commit:
        return False
    if not env.reach(source, [previous]):
        return False  # the target's last source is not on this branch: not comparable
    return env.is_ancestor(commit, previous)


def check_request(request: PromoteRequest) -> None:
    check_remote(request.repo)
    check_app(request.app)
    check_sha(request.commit)
    check_branch(request.source)
    check_branch(request.target)
    if request.source == request.target:
        raise BadInput("--from and --to must be different branches")
    if request.build_id is not None:
        check_trailer_value("--build-id", request.build_id)
    if request.approved_by is not None:
        check_trailer_value("approver", request.approved_by)


def promote(request: PromoteRequest, policy: RetryPolicy | None = None,
            env: EnvRepo | None = None) -> PromoteResult:
    """Make `apps/APP/` on the target what it is at the commit, in one commit (or none).

    env: the repository already open on request.repo (deploy's), else a scratch one."""
    opened = env
    check_request(request)
    policy = policy or RetryPolicy.from_env()
    app, commit, source, target = request.app, request.commit, request.source, request.target
    prefix = f"{APPS_DIR}/{app}"

    with reuse_or_open(request.repo, opened, request.signing) as env:
        if env.fetch(source) is None:
            raise BadInput(f"branch {source!r} does not exist in {request.repo}")
        if not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        app_entry = env.lookup(commit, prefix)
        if app_entry is None or not app_entry.is_tree:
            raise BadInput(f"app {app!r} has no manifests ({prefix}/) at commit {commit}")
        state_entry = Entry.file(env.write_blob(f"{commit}\n".encode()))
        trailers = provenance(env, commit, app)
        kinds: list[Kind | None] = []

        def attempt() -> str | None:
            tip = env.fetch(target)
            if tip is None:
                raise BadInput(f"branch {target!r} does not exist in {request.repo}: branches "
                               "are created by init_branches.py (is --to mistyped?)")
            if env.lookup(tip, prefix) == app_entry:
                kinds.append(None)
                return tip  # the target already holds this tree: nothing to do
            kind = (Kind.ROLLBACK if is_rollback(env, source, commit, promoted_from(env, tip, app))
                    else Kind.PROMOTE)
            kinds.append(kind)
            images = [value for key, value in trailers if key == "Image"]
            what = ", ".join(short_ref(image) for image in images) or commit[:12]
            message = commit_message(
                f"{kind.value} {app}: {what} from {source} {commit[:12]}",
                [
                    ("App", app),
                    *trailers,
                    ("Build-Id", request.build_id),
                    ("Approved-By", request.approved_by),
                    ("Promoted-From", commit),
                    ("Rollback", "true" if kind is Kind.ROLLBACK else None),
                ],
            )
            tree = env.edit_tree(env.root_tree(tip), prefix, app_entry)
            tree = env.edit_tree(tree, f"{PROMOTED_DIR}/{app}", state_entry)
            new = env.commit(tree, tip, message)
            return new if env.push(new, target, tip) else None

        landed = retry_push(attempt, policy)
        return PromoteResult(commit=landed.value, kind=kinds[-1], attempts=landed.attempts)
