"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--environment NAME]
        [--from candidate] [--to production] [--json]

With delivery environments: every app in every environment side by side (or only
--environment). Without: production beside candidate (or --from / --to), as always.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gitops.cli import command_parser, run
from gitops.environments import resolve
from gitops.status import render_environments, render_text, status, status_by_environment


def main(argv: Sequence[str]) -> str:
    parser = command_parser("status.py", __doc__, "repo", "app-filter", "environment", "from",
                            "to", "json")
    args = parser.parse_args(argv)
    if resolve(args.repo, args.environment).recorded:
        results = status_by_environment(args.repo, args.app, args.environment)
        if args.json:
            return json.dumps([r.to_json() for r in results], indent=2)
        return render_environments(results)
    statuses = status(args.repo, args.app, args.from_branch, args.to_branch)
    if args.json:
        return json.dumps([s.to_json() for s in statuses], indent=2)
    return render_text(statuses)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
