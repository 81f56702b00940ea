"""Lift an app's freeze (see freeze.py). Candidate commits recorded during the freeze are not
deployed by this: re-run the app's delivery trigger for the newest one, or push again.

    python scripts/unfreeze.py --repo URL --app APP [--environment NAME] [--branch candidate]

Removes `.gitops/frozen/APP` from `candidate` (one commit; not frozen: no commit). Prints what it
did, then the resulting candidate tip. --environment: that environment's candidate branch
(default: the last environment).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.cli import command_parser, log, run
from gitops.environments import for_command
from gitops.freeze import set_freeze


def main(argv: Sequence[str]) -> str:
    parser = command_parser("unfreeze.py", __doc__, "repo", "app", "environment", "branch")
    args = parser.parse_args(argv)
    branch = for_command(args.repo, args.environment, args.branch).candidate
    result = set_freeze(args.repo, args.app, False, None, branch)
    log(result.describe())
    return result.commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
