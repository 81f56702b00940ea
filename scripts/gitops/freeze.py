"""Freeze an app's deliveries during an incident: new candidate commits are recorded, not deployed.

The freeze is the file `.gitops/frozen/APP` on `candidate`, so it has a history like everything
else; the delivery build reads it and exits cleanly, saying so. Already in the asked state: no
commit. Unfreezing does not deploy what was recorded meanwhile: re-run the app's delivery
trigger for the newest commit, or push again.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitops.checks import check_app, check_branch, check_remote, check_trailer_value
from gitops.envrepo import Entry, scratch_repo
from gitops.errors import BadInput, OperationFailed
from gitops.retry import RetryPolicy, retry_push
from gitops.status import FROZEN_DIR
from gitops.trailers import commit_message

APPS_DIR = "apps"


@dataclass(frozen=True)
class FreezeResult:
    commit: str  # the branch tip afterwards
    changed: bool  # False: the app was already in the asked state


def set_freeze(repo: str, app: str, frozen: bool, reason: str | None = None,
               branch: str = "candidate", policy: RetryPolicy | None = None) -> FreezeResult:
    """Freeze (frozen=True, with an optional reason) or unfreeze app on branch."""
    check_remote(repo)
    check_app(app)
    check_branch(branch)
    if reason is not None:
        check_trailer_value("--reason", reason)
    policy = policy or RetryPolicy.from_env()
    path = f"{FROZEN_DIR}/{app}"
    with scratch_repo(repo) as env:
        tip = env.fetch(branch)
        if tip is None:
            raise BadInput(f"branch {branch!r} does not exist in {repo}: branches are created "
                           "by init_branches.py (is --branch mistyped?)")
        if env.lookup(tip, f"{APPS_DIR}/{app}") is None:
            raise BadInput(f"unknown app {app!r}: no {APPS_DIR}/{app}/ on {branch!r}")
        note = Entry.file(env.write_blob(f"{reason or 'frozen'}\n".encode()))
        verb = "Freeze" if frozen else "Unfreeze"
        message = commit_message(f"{verb} {app}" + (f": {reason}" if reason else ""),
                                 [("App", app), ("Freeze", "true" if frozen else "false")])
        changed: list[bool] = []

        def attempt() -> str | None:
            tip = env.fetch(branch)
            if tip is None:
                raise OperationFailed(f"branch {branch!r} was deleted from {repo} meanwhile")
            if (env.lookup(tip, path) is not None) == frozen:
                changed.append(False)
                return tip  # already in the asked state
            changed.append(True)
            tree = env.edit_tree(env.root_tree(tip), path, note if frozen else None)
            commit = env.commit(tree, tip, message)
            return commit if env.push(commit, branch, tip) else None

        landed = retry_push(attempt, policy)
        return FreezeResult(commit=landed.value, changed=changed[-1])
