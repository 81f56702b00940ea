"""Deliver one app: apply a candidate commit to GKE, verify the rollout, promote to production.

    python scripts/deploy.py --repo URL --app APP --commit SHA --project P --cluster C
        --location L [--timeout 300s] [--lock-timeout 1800s] [--from candidate]
        [--to production] [--build-id ID] [--namespace APP] [--environment NAME]
        [--next-environment NAME --next-candidate BRANCH] [--region R]

Under the app's Lease: applies the commit's manifests, waits for every rollout (one deadline for
all), then promotes; on failure re-applies what --to holds and exits 1. Skips a stale build and
a frozen app, saying so. Prints the --to tip.

With environments: --namespace is the environment's namespace of the app; after a promotion the
release is published to --next-candidate (the next environment's candidate branch; empty: this
is the last environment). With GITOPS_RECORD_APPROVAL=true (a gated environment) the build
reads who approved it (its own Build, in --project and --region) before it applies anything.

With allowed signers (--allowed-signers or $GITOPS_ALLOWED_SIGNERS), refuses a commit whose
signature does not verify (exit 2). Signs the commits it makes with $GITOPS_SIGNING_KEY when
set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from gitops.approval import approval_required
from gitops.cli import command_parser, run, signing_from
from gitops.deploy import DeliveryRequest, deliver, seconds
from gitops.settings import MAX_LOCK_TIMEOUT, MAX_ROLLOUT_TIMEOUT


def main(argv: Sequence[str]) -> str:
    parser = command_parser("deploy.py", __doc__, "repo", "app", "commit", "from", "to",
                            "build-id", "allowed-signers")
    parser.set_defaults(build_id=f"local-{os.getpid()}")
    parser.add_argument("--project", help="Google Cloud project of the cluster")
    parser.add_argument("--cluster", help="GKE cluster name (get-credentials)")
    parser.add_argument("--location", help="GKE cluster location")
    parser.add_argument("--timeout", default="300s", help="rollout timeout, e.g. 300s")
    parser.add_argument("--lock-timeout", default="1800s",
                        help="how long to wait for another delivery of the app")
    parser.add_argument("--namespace", help="namespace of the app (default: the app's name)")
    parser.add_argument("--environment", default="production", help="this environment's name")
    parser.add_argument("--next-environment", default="",
                        help="the environment a promotion goes on to (empty: none)")
    parser.add_argument("--next-candidate", default="",
                        help="that environment's candidate branch (empty: none)")
    parser.add_argument("--region", help="region of this build (to read its approval)")
    args = parser.parse_args(argv)
    request = DeliveryRequest(
        repo=args.repo, app=args.app, commit=args.commit, build_id=args.build_id,
        source=args.from_branch, target=args.to_branch,
        timeout=seconds(args.timeout, "--timeout", MAX_ROLLOUT_TIMEOUT),
        lock_timeout=seconds(args.lock_timeout, "--lock-timeout", MAX_LOCK_TIMEOUT),
        project=args.project, cluster=args.cluster, location=args.location,
        namespace=args.namespace or None, environment=args.environment,
        next_environment=args.next_environment or None,
        next_candidate=args.next_candidate or None, region=args.region or None,
        record_approval=approval_required(),
        signing=signing_from(args.allowed_signers))
    return deliver(request).commit


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
