"""Roll an app back by re-running its delivery build at an older candidate commit.

    python scripts/rollback.py --repo URL --app APP --target REF --project P --region R
        [--environment NAME] [--trigger deliver-APP] [--from candidate] [--to production]
        [--dry-run]

REF is a production entry (its commit, 7+ hex digits), an image digest (`sha256:HEX` or
`NAME@sha256:HEX`, 7+ hex digits: the short digests `status` and `history` print work when
unambiguous), or `-N`: the entry N rows down in the production list `history` prints (newest
first, promotions and rollbacks alike; -1 is what production held before its current entry).
It is resolved from git alone to the candidate commit that produced it; then the app's delivery
trigger runs at that commit through the Cloud Build API (the regional endpoint of --region), and
production records the result as a Rollback. `--dry-run` prints what it would
run. Prints the build's console link. --environment rolls back one delivery environment
(default: the last one) through its own trigger; in an environment with an approval gate the
build waits for an approver like any other.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gitops.cli import command_parser, log, run
from gitops.environments import for_command
from gitops.rollback import plan_rollback, run_rollback


def main(argv: Sequence[str]) -> str:
    parser = command_parser("rollback.py", __doc__, "repo", "app", "environment", "from", "to")
    parser.add_argument("--target", required=True, metavar="REF",
                        help="what to roll back to: production commit, image digest (7+ hex "
                        "digits) or -N (N rows down history's production list)")
    parser.add_argument("--project", required=True, help="Google Cloud project")
    parser.add_argument("--region", required=True, help="region of the delivery trigger")
    parser.add_argument("--trigger", help="delivery trigger name (default: the "
                                          "environment's, deliver-APP or deliver-APP-ENV)")
    parser.add_argument("--dry-run", action="store_true", help="print, run nothing")
    args = parser.parse_args(argv)
    env = for_command(args.repo, args.environment, args.from_branch, args.to_branch)
    plan = plan_rollback(args.repo, args.app, args.target, args.project, args.region,
                         args.trigger or env.trigger(args.app), env.candidate, env.production)
    if args.dry_run:
        return f"dry run, nothing started: {plan.describe(env.candidate)}"
    log(plan.describe(env.candidate))
    if env.approval:
        log(f"environment {env.name} has an approval gate: the build waits for an approver")
    result = run_rollback(plan)
    log(f"started build {result.build_id}")
    return result.link


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
