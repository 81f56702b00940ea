"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--environment NAME]
        [--project P --region R] [--from candidate] [--to production] [--json]

With delivery environments: every app in every environment side by side (or only
--environment); with --project and --region, Cloud Build says whether an attempt not yet in
an environment's production waits for approval, is being delivered, or failed. Without
environments: production beside candidate (or --from / --to), as always.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gitops.build_status import CloudBuildStatus
from gitops.cli import command_parser, run
from gitops.environments import resolve
from gitops.errors import BadInput
from gitops.status import (
    BuildsAt,
    render_environments,
    render_text,
    status,
    status_by_environment,
)


def main(argv: Sequence[str]) -> str:
    parser = command_parser("status.py", __doc__, "repo", "app-filter", "environment", "from",
                            "to", "json")
    parser.add_argument("--project", help="Google Cloud project (ask Cloud Build, with --region)")
    parser.add_argument("--region", help="region of the delivery triggers")
    args = parser.parse_args(argv)
    if bool(args.project) != bool(args.region):
        raise BadInput("--project and --region go together")
    if resolve(args.repo, args.environment).recorded:
        builds = BuildsAt(CloudBuildStatus(), args.project, args.region) \
            if args.project else None
        results = status_by_environment(args.repo, args.app, args.environment, builds)
        if args.json:
            return json.dumps([r.to_json() for r in results], indent=2)
        return render_environments(results)
    if args.project:
        raise BadInput("--project and --region ask about environments' delivery builds; this "
                       "env repo records no environments")
    statuses = status(args.repo, args.app, args.from_branch, args.to_branch)
    if args.json:
        return json.dumps([s.to_json() for s in statuses], indent=2)
    return render_text(statuses)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
