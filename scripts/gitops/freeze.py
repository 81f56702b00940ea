"""Freeze an app's deliveries during an incident: new candidate commits are recorded, not deployed.

The freeze is the file `.gitops/frozen/APP` on `candidate`, so it has a history like everything
else; the delivery build reads it and exits cleanly, saying so. Already in the asked state: no
commit, except that freezing a frozen app with a different --reason records the new reason (one
commit, subject `Freeze APP (reason changed): ...`): the reason is what the delivery build and
`status` show, so it must be the current one. Without --reason the recorded one stays.
Unfreezing does not deploy what was recorded meanwhile: re-run the app's delivery trigger for
the newest commit, or push again.
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
    changed: bool  # False: the app was already in the asked state (and reason)
    app: str = ""
    frozen: bool = True  # the state asked for
    reason: str | None = None  # the reason now recorded (frozen only)
    previous_reason: str | None = None  # the reason recorded before, when it was frozen

    def describe(self) -> str:
        """What happened, in one line, for the operator."""
        before = f" ({self.previous_reason})" if self.previous_reason else ""
        if not self.frozen:
            return (f"unfroze {self.app}: deliveries of new candidate commits resume; nothing "
                    "recorded during the freeze was deployed" if self.changed
                    else f"{self.app} was not frozen: nothing changed")
        if not self.changed:
            return f"{self.app} was already frozen{before}: nothing changed"
        if self.previous_reason is not None:
            return f"{self.app} was already frozen{before}: reason now {self.reason!r}"
        return f"froze {self.app}" + (f": {self.reason}" if self.reason else "")


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
        text = reason or "frozen"
        note = Entry.file(env.write_blob(f"{text}\n".encode()))
        verb = "Freeze" if frozen else "Unfreeze"
        changed: list[bool] = []
        previous: list[str | None] = []

        def attempt() -> str | None:
            tip = env.fetch(branch)
            if tip is None:
                raise OperationFailed(f"branch {branch!r} was deleted from {repo} meanwhile")
            blob = env.read_blob(tip, path)
            current = blob.strip() if blob is not None else None
            previous.append(current)
            # Already in the asked state; a freeze without --reason keeps the recorded one.
            if (current is not None) == frozen and (not frozen or reason is None
                                                    or current == text):
                changed.append(False)
                return tip
            changed.append(True)
            again = " (reason changed)" if frozen and current is not None else ""
            message = commit_message(f"{verb} {app}{again}" + (f": {reason}" if reason else ""),
                                     [("App", app), ("Freeze", "true" if frozen else "false")])
            tree = env.edit_tree(env.root_tree(tip), path, note if frozen else None)
            commit = env.commit(tree, tip, message)
            return commit if env.push(commit, branch, tip) else None

        landed = retry_push(attempt, policy)
        now = (text if changed[-1] else previous[-1]) if frozen else None
        return FreezeResult(commit=landed.value, changed=changed[-1], app=app, frozen=frozen,
                            reason=now, previous_reason=previous[-1])
