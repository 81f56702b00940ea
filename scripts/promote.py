"""Promote one app from a `candidate` commit to `production` (or any --from / --to pair).

    python scripts/promote.py --repo URL --app APP --commit SHA [--from candidate]
        [--to production] [--build-id ID]

`apps/APP/` on --to becomes exactly what it is at --commit; other apps stay untouched. The
commit says Rollback when --commit is older than what --to took last, else Promote. Already
identical: no commit. Prints the --to tip.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.cli import command_parser, run
from gitops.promote import PromoteRequest, promote


def main(argv: Sequence[str]) -> str:
    parser = command_parser("promote.py", __doc__, "repo", "app", "commit", "from", "to",
                            "build-id")
    args = parser.parse_args(argv)
    return promote(PromoteRequest(repo=args.repo, app=args.app, commit=args.commit,
                                  source=args.from_branch, target=args.to_branch,
                                  build_id=args.build_id)).commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
