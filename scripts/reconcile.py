"""Compare each app's namespace with what production holds; heal the apps allowed to.

    python scripts/reconcile.py --repo URL --project P --cluster C --location L
        [--environment NAME] [--heal APP,APP] [--app APP] [--timeout 300s]
        [--lock-timeout 1800s] [--from candidate] [--to production] [--build-id ID] [--json]

One delivery environment (--environment, default the last one the env repo records): its
production branch and its namespaces (namespace suffix included), from the env repo's record;
without a record, --from and --to name the branches. Per app: in sync, drifted (objects,
fields) or missing; frozen apps are not compared. Apps named by --heal are re-applied from
production under the delivery Lease, their leftovers deleted.
Each drifted app publishes a drift_found event, each healed one drift_healed. Exits 1 when a
comparison or a heal failed; drift alone is a finding, not a failure.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from gitops import scratch
from gitops.cli import command_parser, run
from gitops.drift import (
    ReconcileRequest,
    failures,
    operator_cluster,
    reconcile,
    render_text,
)
from gitops.errors import BadInput, OperationFailed
from gitops.settings import MAX_LOCK_TIMEOUT, MAX_ROLLOUT_TIMEOUT, whole_seconds


def app_list(value: str) -> frozenset[str]:
    """`a,b` (empty: none); names are checked as app names by the library."""
    if not re.fullmatch(r"[a-z0-9,-]*", value):
        raise BadInput(f"--heal {value!r} must be app names separated by commas")
    return frozenset(name for name in value.split(",") if name)


def main(argv: Sequence[str]) -> str:
    parser = command_parser("reconcile.py", __doc__, "repo", "app-filter", "environment",
                            "from", "to", "build-id", "json")
    parser.set_defaults(build_id=f"local-{os.getpid()}")
    parser.add_argument("--project", help="Google Cloud project of the cluster")
    parser.add_argument("--cluster", help="GKE cluster name (get-credentials)")
    parser.add_argument("--location", help="GKE cluster location")
    parser.add_argument("--heal", default="", help="apps to heal, comma-separated")
    parser.add_argument("--timeout", default="300s", help="rollout timeout of a heal")
    parser.add_argument("--lock-timeout", default="1800s",
                        help="how long a heal waits for a delivery of the app")
    args = parser.parse_args(argv)
    request = ReconcileRequest(
        repo=args.repo, build_id=args.build_id, heal=app_list(args.heal),
        apps=(args.app,) if args.app else (), source=args.from_branch, target=args.to_branch,
        environment=args.environment,
        timeout=whole_seconds("--timeout", args.timeout, MAX_ROLLOUT_TIMEOUT),
        lock_timeout=whole_seconds("--lock-timeout", args.lock_timeout, MAX_LOCK_TIMEOUT))
    with scratch.folder() as work:  # swept by the next run if this one is killed
        cluster = operator_cluster(args.project, args.cluster, args.location, Path(work))
        results = reconcile(request, cluster)
    text = json.dumps([r.to_json() for r in results], indent=2) if args.json \
        else render_text(results)
    failed = failures(results, request)
    if failed:
        print(text, flush=True)
        raise OperationFailed(f"reconcile failed for {', '.join(failed)}")
    return text


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
