"""Freeze an app's deliveries during an incident: new candidate commits are recorded, not deployed.

    python scripts/freeze.py --repo URL --app APP [--reason TEXT] [--branch candidate]
    python scripts/unfreeze.py --repo URL --app APP [--branch candidate]

The freeze is the file `.gitops/frozen/APP` on `candidate`; the delivery build reads it and exits
cleanly, saying so. Already frozen: no commit, unless the reason differs (the new reason is
recorded). Prints what it did, then the resulting candidate tip.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.cli import command_parser, log, run
from gitops.freeze import set_freeze


def main(argv: Sequence[str]) -> str:
    parser = command_parser("freeze.py", __doc__, "repo", "app", "branch")
    parser.add_argument("--reason", help="why (recorded in the commit and the freeze file)")
    args = parser.parse_args(argv)
    result = set_freeze(args.repo, args.app, True, args.reason, args.branch)
    log(result.describe())
    return result.commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
