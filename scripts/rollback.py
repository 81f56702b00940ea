"""Roll an app back by re-running its delivery build at an older candidate commit.

    python scripts/rollback.py --repo URL --app APP --to REF --project P --region R [--dry-run]

REF is a production entry (its commit, 7+ hex digits), an image digest (`sha256:...` or a full
`NAME@sha256:...` reference), or `-N` (N promotions back: -1 is what production held before its
current entry). It is resolved from git alone to the candidate commit that produced it; then the
app's delivery trigger (`deliver-APP` unless --trigger) runs at that commit through the Cloud
Build API, and production records the result as a Rollback. `--dry-run` prints what it would
run. Prints the build id and its console link.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from envrepo import (
    ArgumentParser,
    BadInput,
    OperationFailed,
    check_app,
    check_branch,
    one_line,
    run_main,
    scratch_repo,
    short_ref,
)
from history import apps_on, collect, fetch_history

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class CloudBuildApi:
    """The only place that calls Cloud Build. Tests replace `run_trigger`."""

    def run_trigger(self, request: Any) -> str:
        """Run a trigger; the id of the build it started."""
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        from google.cloud.devtools import cloudbuild_v1

        try:
            operation = cloudbuild_v1.CloudBuildClient().run_build_trigger(request=request)
            return str(operation.metadata.build.id)
        except Exception as exc:
            raise OperationFailed(f"cannot run trigger {request.name}: "
                                  f"{one_line(str(exc))}") from None


def build_request(project: str, region: str, trigger: str, commit: str) -> Any:
    from google.cloud.devtools import cloudbuild_v1

    return cloudbuild_v1.RunBuildTriggerRequest(
        name=f"projects/{project}/locations/{region}/triggers/{trigger}",
        project_id=project,
        trigger_id=trigger,
        source=cloudbuild_v1.RepoSource(project_id=project, commit_sha=commit),
    )


def resolve(story: dict[str, Any], ref: str) -> tuple[str, str]:
    """(candidate commit, what it is) for REF; BadInput when it resolves to nothing."""
    production, attempts = story["production"], story["attempts"]
    app = story["app"]
    if re.fullmatch(r"-[1-9][0-9]*", ref):
        back = int(ref[1:])
        if back >= len(production):
            raise BadInput(f"--to {ref}: production holds only {len(production)} entries "
                           f"for {app}")
        entry = production[back]
        return entry["promoted_from"], f"production entry {entry['commit'][:12]} ({ref})"
    digest = DIGEST.search(ref)
    if digest:
        for attempt in attempts:  # newest first
            if attempt["image"] and attempt["image"].endswith("@" + digest.group(0)):
                return attempt["commit"], f"image {short_ref(attempt['image'])}"
        raise BadInput(f"--to {ref}: no candidate attempt of {app} built {digest.group(0)}")
    if re.fullmatch(r"[0-9a-f]{7,64}", ref):
        matches = [p for p in production if p["commit"].startswith(ref)]
        if len(matches) == 1 and matches[0]["promoted_from"]:
            entry = matches[0]
            return entry["promoted_from"], f"production entry {entry['commit'][:12]}"
        if len(matches) > 1:
            raise BadInput(f"--to {ref}: ambiguous, give more digits")
        raise BadInput(f"--to {ref}: not a production entry of {app}")
    raise BadInput(f"--to {ref!r}: give a production commit, an image digest or -N")


def main(argv: list[str], api: CloudBuildApi | None = None) -> str:
    parser = ArgumentParser(prog="rollback.py", description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--to", required=True, dest="ref", help="commit, digest or -N")
    parser.add_argument("--project", required=True, help="Google Cloud project")
    parser.add_argument("--region", required=True, help="region of the delivery trigger")
    parser.add_argument("--trigger", help="delivery trigger name (default deliver-APP)")
    parser.add_argument("--from", dest="source", default="candidate")
    parser.add_argument("--to-branch", dest="target", default="production")
    parser.add_argument("--dry-run", action="store_true", help="print, run nothing")
    args = parser.parse_args(argv)
    app = check_app(args.app)
    source, target = check_branch(args.source), check_branch(args.target)
    trigger = args.trigger or f"deliver-{app}"
    with scratch_repo(args.repo) as env:
        fetch_history(env, source, target)
        if app not in apps_on(env, source, target):
            raise BadInput(f"unknown app {app!r}")
        story = collect(env, app, source, target)
    commit, what = resolve(story, args.ref)
    plan = (f"rollback {app} to {what}: run trigger {trigger} in {args.region} "
            f"({args.project}) at {source} commit {commit}")
    if args.dry_run:
        return f"dry run, nothing started: {plan}"
    print(plan)
    build = (api or CloudBuildApi()).run_trigger(
        build_request(args.project, args.region, trigger, commit))
    print(f"started build {build}")
    return (f"https://console.cloud.google.com/cloud-build/builds;region={args.region}/{build}"
            f"?project={args.project}")


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
