"""Promotion between environments: a success in one environment publishes the same release to
the next environment's candidate branch.

The release travels in the candidate commit that CI published to the first environment:
`apps/APP/` (what that environment applies) and, when environments render differently (one
kustomize overlay each), `releases/ENV/APP/` for each later environment, rendered at CI time
for the same image digest, so every environment's manifests are reviewable in Git before they
are applied. Without `releases/ENV/APP/` an environment gets `apps/APP/` as it is.

When environment E delivers candidate commit C of app A successfully, the next environment N
gets one commit on its candidate branch: `apps/A/` = C's `releases/N/A/` (or `apps/A/`), the
later environments' `releases/*/A/` carried along, other apps untouched; subject `Deploy A: ...
from E`, trailers `Promoted-From-Environment: E` and `Promoted-From-Commit:` (E's production
commit) beside the provenance of C (every `Image`, `Source-Repo`, `Source-Commit`). Already there:
no commit. A push that loses a race is rebuilt on the new tip and retried, as in publish.

Only promotions travel: a rollback in E stays in E (roll back each environment on its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from gitops.checks import check_app, check_branch, check_sha, check_trailer_value, short_ref
from gitops.envrepo import Entry, EnvRepo, reuse_or_open
from gitops.errors import BadInput
from gitops.promote import provenance
from gitops.retry import RetryPolicy, retry_push
from gitops.signing import Signing
from gitops.trailers import commit_message

APPS_DIR = "apps"
RELEASES_DIR = "releases"


@dataclass(frozen=True)
class ChainRequest:
    repo: str
    app: str
    commit: str  # the candidate commit of the environment that succeeded
    source: str  # that environment's candidate branch
    environment: str  # that environment's name
    production_commit: str  # its production commit that recorded the success
    next_environment: str
    next_branch: str  # the next environment's candidate branch
    build_id: str | None = None
    signing: Signing | None = None  # None: from the environment (gitops.signing)


@dataclass(frozen=True)
class ChainResult:
    commit: str  # the next candidate branch's tip afterwards
    created: bool  # False: it already held this release


def check_request(request: ChainRequest) -> None:
    check_app(request.app)
    check_sha(request.commit)
    check_sha(request.production_commit, "production commit")
    check_branch(request.source)
    check_branch(request.next_branch)
    check_app(request.environment)
    check_app(request.next_environment)
    if request.next_branch == request.source:
        raise BadInput("the next environment's candidate branch is this environment's")
    if request.build_id is not None:
        check_trailer_value("--build-id", request.build_id)


def publish_to_next(request: ChainRequest, policy: RetryPolicy | None = None,
                    env: EnvRepo | None = None) -> ChainResult:
    """Publish the release of request.commit to the next environment's candidate branch.

    env: the repository already open on request.repo (deploy's), else a scratch one."""
    opened = env
    check_request(request)
    policy = policy or RetryPolicy.from_env()
    app, commit = request.app, request.commit
    with reuse_or_open(request.repo, opened, request.signing) as env:
        if env.fetch(request.source) is None or not env.reach(request.source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {request.source!r}")
        applied = env.lookup(commit, f"{APPS_DIR}/{app}")
        if applied is None or not applied.is_tree:
            raise BadInput(f"app {app!r} has no manifests ({APPS_DIR}/{app}/) at {commit}")
        releases = releases_at(env, commit, app)
        entry = releases.pop(request.next_environment, applied)
        trailers = provenance(env, commit, app)
        images = [value for key, value in trailers if key == "Image"]
        message = commit_message(
            f"Deploy {app}: {', '.join(short_ref(i) for i in images) or commit[:12]} "
            f"from {request.environment}",
            [("App", app), *trailers,
             ("Build-Id", request.build_id),
             ("Promoted-From-Environment", request.environment),
             ("Promoted-From-Commit", request.production_commit)])
        created: list[bool] = []

        def attempt() -> str | None:
            tip = env.fetch(request.next_branch)
            if tip is None:
                raise BadInput(f"branch {request.next_branch!r} does not exist in "
                               f"{request.repo}")
            base = env.root_tree(tip)
            # Later environments' renderings travel on; stale ones from older releases go.
            tree = with_releases(env, env.edit_tree(base, f"{APPS_DIR}/{app}", entry), tip, app,
                                 releases)
            if tree == base:
                created.append(False)
                return tip
            created.append(True)
            new = env.commit(tree, tip, message)
            return new if env.push(new, request.next_branch, tip) else None

        landed = retry_push(attempt, policy)
        return ChainResult(commit=landed.value, created=created[-1])


def with_releases(env: EnvRepo, tree: str | None, tip: str, app: str,
                  releases: dict[str, Entry]) -> str | None:
    """tree with `releases/ENV/APP/` exactly releases: what tip held for other environments
    (an older release's renderings) removed, each given one set."""
    for name in sorted(set(releases_at(env, tip, app)) - set(releases)):
        tree = env.edit_tree(tree, f"{RELEASES_DIR}/{name}/{app}", None)
    for name, release in sorted(releases.items()):
        tree = env.edit_tree(tree, f"{RELEASES_DIR}/{name}/{app}", release)
    return tree


def releases_at(env: EnvRepo, commit: str, app: str) -> dict[str, Entry]:
    """environment -> tree of `releases/ENV/APP/` at the commit."""
    folder = env.lookup(commit, RELEASES_DIR)
    if folder is None or not folder.is_tree:
        return {}
    found = {}
    for name, entry in env.tree_entries(folder.sha).items():
        if entry.is_tree:
            app_entry = env.tree_entries(entry.sha).get(app)
            if app_entry is not None and app_entry.is_tree:
                found[name] = app_entry
    return found
