"""Freeze an app's deliveries during an incident: new candidate commits are recorded, not deployed.

    python scripts/freeze.py --repo URL --app APP [--reason TEXT] [--environment NAME]
        [--branch candidate]
    python scripts/unfreeze.py --repo URL --app APP [--environment NAME] [--branch candidate]

The freeze is the file `.gitops/frozen/APP` on `candidate`; the delivery build reads it and exits
cleanly, saying so. Already frozen: no commit, unless the reason differs (the new reason is
recorded). Prints what it did, then the resulting candidate tip. A freeze holds one environment
(--environment, default: the last one): the file is on its candidate branch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.cli import command_parser, log, run
from gitops.environments import for_command
from gitops.freeze import set_freeze


def main(argv: Sequence[str]) -> str:
    parser = command_parser("freeze.py", __doc__, "repo", "app", "environment", "branch")
    parser.add_argument("--reason", help="why (recorded in the commit and the freeze file)")
    args = parser.parse_args(argv)
    branch = for_command(args.repo, args.environment, args.branch).candidate
    result = set_freeze(args.repo, args.app, True, args.reason, branch)
    log(result.describe())
    return result.commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
