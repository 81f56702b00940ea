"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--environment NAME]
        [--project P --region R] [--from candidate] [--to production] [--json]
        [--allowed-signers FILE] [--drift [--project P --cluster C --location L]]

With delivery environments: every app in every environment side by side (or only
--environment); with --project and --region, Cloud Build says whether an attempt not yet in
an environment's production waits for approval, is being delivered, or failed. Without
environments: production beside candidate (or --from / --to), as always.

--drift compares each app's namespace with what production holds, in one environment
(--environment, default the last one: its branches and namespaces), as the scheduled reconcile
build does, with your own credentials (your kubeconfig, or get-credentials with your gcloud
login when --project, --cluster and --location are given); it heals nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gitops import drift
from gitops.build_status import CloudBuildStatus
from gitops.cli import command_parser, run, signing_from
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
                            "to", "json", "allowed-signers")
    parser.add_argument("--drift", action="store_true",
                        help="compare the cluster with production (your credentials)")
    parser.add_argument("--project", help="Google Cloud project: of the cluster with --drift; "
                        "else ask Cloud Build about delivery builds, with --region")
    parser.add_argument("--region", help="region of the delivery triggers")
    parser.add_argument("--cluster", help="with --drift: GKE cluster name")
    parser.add_argument("--location", help="with --drift: GKE cluster location")
    args = parser.parse_args(argv)
    if args.drift:
        request = drift.ReconcileRequest(repo=args.repo, build_id="status",
                                         apps=(args.app,) if args.app else (),
                                         source=args.from_branch, target=args.to_branch,
                                         environment=args.environment)
        with tempfile.TemporaryDirectory() as work:
            cluster = drift.operator_cluster(args.project, args.cluster, args.location,
                                             Path(work))
            drifts = drift.reconcile(request, cluster, publish=False)
        if args.json:
            return json.dumps([r.to_json() for r in drifts], indent=2)
        return drift.render_text(drifts)
    if bool(args.project) != bool(args.region):
        raise BadInput("--project and --region go together")
    if resolve(args.repo, args.environment).recorded:
        builds = BuildsAt(CloudBuildStatus(), args.project, args.region) \
            if args.project else None
        results = status_by_environment(args.repo, args.app, args.environment, builds,
                                        signing_from(args.allowed_signers))
        if args.json:
            return json.dumps([r.to_json() for r in results], indent=2)
        return render_environments(results)
    if args.project:
        raise BadInput("--project and --region ask about environments' delivery builds; this "
                       "env repo records no environments")
    statuses = status(args.repo, args.app, args.from_branch, args.to_branch,
                      signing_from(args.allowed_signers))
    if args.json:
        return json.dumps([s.to_json() for s in statuses], indent=2)
    return render_text(statuses)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
