"""Create the env repo's `candidate` and `production` branches if they do not exist yet.

    python scripts/init_branches.py --repo URL [--branch NAME ...] [--environments JSON]

With --environments (the stack's ordered environments, as `pulumi up` passes them): every
environment's candidate and production branches, and the environments recorded on the branch
`gitops-environments` for the operator commands.

Idempotent and safe: an existing branch is never touched, so running it again (every
`pulumi up` may) changes nothing. Prints one line per branch: `created <branch> <sha>` or
`exists <branch>`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.branches import DEFAULT_BRANCHES, init_branches
from gitops.cli import command_parser, run
from gitops.environments import parse


def main(argv: Sequence[str]) -> str:
    parser = command_parser("init_branches.py", __doc__, "repo", "branches")
    parser.add_argument("--environments", metavar="JSON",
                        help="the ordered environments (replaces --branch)")
    args = parser.parse_args(argv)
    environments = parse(args.environments) if args.environments else None
    results = init_branches(args.repo, args.branch or list(DEFAULT_BRANCHES), environments)
    return "\n".join(result.describe() for result in results)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
