"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--from candidate] [--to production] [--json]
        [--allowed-signers FILE]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gitops.cli import command_parser, run, signing_from
from gitops.status import render_text, status


def main(argv: Sequence[str]) -> str:
    parser = command_parser("status.py", __doc__, "repo", "app-filter", "from", "to", "json",
                            "allowed-signers")
    args = parser.parse_args(argv)
    statuses = status(args.repo, args.app, args.from_branch, args.to_branch,
                      signing_from(args.allowed_signers))
    if args.json:
        return json.dumps([s.to_json() for s in statuses], indent=2)
    return render_text(statuses)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
