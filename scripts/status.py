"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--from candidate] [--to production] [--json]
        [--allowed-signers FILE] [--drift [--project P --cluster C --location L]]

--drift compares each app's namespace with what production holds, as the scheduled reconcile
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
from gitops.cli import command_parser, run, signing_from
from gitops.status import render_text, status


def main(argv: Sequence[str]) -> str:
    parser = command_parser("status.py", __doc__, "repo", "app-filter", "from", "to", "json",
                            "allowed-signers")
    parser.add_argument("--drift", action="store_true",
                        help="compare the cluster with production (your credentials)")
    parser.add_argument("--project", help="with --drift: project of the cluster")
    parser.add_argument("--cluster", help="with --drift: GKE cluster name")
    parser.add_argument("--location", help="with --drift: GKE cluster location")
    args = parser.parse_args(argv)
    if args.drift:
        request = drift.ReconcileRequest(repo=args.repo, build_id="status",
                                         apps=(args.app,) if args.app else (),
                                         source=args.from_branch, target=args.to_branch)
        with tempfile.TemporaryDirectory() as work:
            cluster = drift.operator_cluster(args.project, args.cluster, args.location,
                                             Path(work))
            results = drift.reconcile(request, cluster, publish=False)
        if args.json:
            return json.dumps([r.to_json() for r in results], indent=2)
        return drift.render_text(results)
    statuses = status(args.repo, args.app, args.from_branch, args.to_branch,
                      signing_from(args.allowed_signers))
    if args.json:
        return json.dumps([s.to_json() for s in statuses], indent=2)
    return render_text(statuses)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
