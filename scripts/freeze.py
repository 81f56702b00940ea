"""Freeze an app's deliveries during an incident: new candidate commits are recorded, not deployed.

    python scripts/freeze.py --repo URL --app APP [--reason TEXT]
    python scripts/unfreeze.py --repo URL --app APP

The freeze is the file `.gitops/frozen/APP` on `candidate`, so it has a history like everything
else; the delivery build reads it and exits cleanly, saying so. Already in the asked state: no
commit. Prints the resulting candidate tip.
"""

from __future__ import annotations

import sys

from envrepo import (
    APPS_DIR,
    FILE_MODE,
    FROZEN_DIR,
    ArgumentParser,
    BadInput,
    check_app,
    check_branch,
    check_trailer_value,
    commit_message,
    retry_push,
    run_main,
    scratch_repo,
)


def set_freeze(repo: str, app: str, reason: str | None, branch: str, frozen: bool) -> str:
    path = f"{FROZEN_DIR}/{app}"
    with scratch_repo(repo) as env:
        tip = env.fetch_branch(branch)
        if env.lookup(tip, f"{APPS_DIR}/{app}") is None:
            raise BadInput(f"unknown app {app!r}: no {APPS_DIR}/{app}/ on {branch!r}")
        note = env.store(b"blob", f"{reason or 'frozen'}\n".encode())
        verb = "Freeze" if frozen else "Unfreeze"
        message = commit_message(f"{verb} {app}" + (f": {reason}" if reason else ""),
                                 [("App", app), ("Freeze", "true" if frozen else "false")])

        def attempt_once() -> str | None:
            tip = env.fetch_branch(branch)
            if (env.lookup(tip, path) is not None) == frozen:
                return tip  # already in the asked state
            base = env.root_tree(tip)
            tree = env.edit_tree(base, path, (note, FILE_MODE) if frozen else None)
            commit = env.commit(tree, tip, message)
            return commit if env.push(commit, branch) else None

        return retry_push(attempt_once)


def main(argv: list[str], frozen: bool = True) -> str:
    name = "freeze.py" if frozen else "unfreeze.py"
    parser = ArgumentParser(prog=name, description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--branch", default="candidate")
    if frozen:
        parser.add_argument("--reason", help="why (recorded in the commit and the freeze file)")
    args = parser.parse_args(argv)
    reason = getattr(args, "reason", None)
    if reason is not None:
        check_trailer_value("--reason", reason)
    return set_freeze(args.repo, check_app(args.app), reason, check_branch(args.branch),
                      frozen)


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
