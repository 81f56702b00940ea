"""Roll an app back by re-running its delivery build at an older candidate commit.

The target is a production entry (its commit, 7+ hex digits), an image digest (`sha256:HEX` or
`NAME@sha256:HEX`, HEX at least 7 digits: the 12 that `status` and `history` print are enough
when no other image of the app starts with them), or `-N`: the entry N rows down in the
production list that `history` prints (newest first, promotions and rollbacks alike), so -1 is
what production held before its current entry. It is resolved from git alone to the candidate
commit that produced it; then the app's delivery trigger runs at that commit through the Cloud
Build API, and production records the result as a Rollback.

Delivery triggers are regional (2nd-gen repositories need them in the connection's region), so
the API is called at the trigger region's endpoint, `{region}-cloudbuild.googleapis.com`, with
the regional trigger name `projects/P/locations/R/triggers/T`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from gitops.checks import check_app, check_branch, short_ref
from gitops.cloudbuild_client import regional_client
from gitops.envrepo import scratch_repo
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.history import Attempt, History, apps_on, collect

DIGEST = re.compile(r"sha256:([0-9a-f]{7,64})(?![0-9a-f])")


@dataclass(frozen=True)
class RollbackPlan:
    app: str
    commit: str  # the candidate commit the delivery build runs at
    what: str  # what the target resolved to, for people
    project: str
    region: str
    trigger: str

    def describe(self, source: str) -> str:
        return (f"rollback {self.app} to {self.what}: run trigger {self.trigger} in "
                f"{self.region} ({self.project}) at {source} commit {self.commit}")


@dataclass(frozen=True)
class RollbackResult:
    build_id: str
    link: str  # the build in the console


class TriggerRunner(Protocol):
    def run_trigger(self, plan: RollbackPlan) -> str:
        """Run the plan's trigger at its commit; the id of the build it started."""


def trigger_name(project: str, region: str, trigger: str) -> str:
    return f"projects/{project}/locations/{region}/triggers/{trigger}"


def build_request(plan: RollbackPlan) -> Any:
    from google.cloud.devtools import cloudbuild_v1

    return cloudbuild_v1.RunBuildTriggerRequest(
        name=trigger_name(plan.project, plan.region, plan.trigger),
        project_id=plan.project,
        trigger_id=plan.trigger,
        source=cloudbuild_v1.RepoSource(project_id=plan.project, commit_sha=plan.commit),
    )


class CloudBuild:
    """The only place that calls Cloud Build: a regional client per plan."""

    def __init__(self, client_for_region: Any = regional_client) -> None:
        self.client_for_region = client_for_region

    def run_trigger(self, plan: RollbackPlan) -> str:
        request = build_request(plan)
        try:
            client = self.client_for_region(plan.region)
            operation = client.run_build_trigger(request=request)
            return str(operation.metadata.build.id)
        except Exception as exc:  # any client, auth or API error: one line, exit 1
            raise OperationFailed(f"cannot run trigger {request.name}: "
                                  f"{one_line(str(exc))}") from None


def resolve(story: History, ref: str) -> tuple[str, str]:
    """(candidate commit, what it is) for the target ref; BadInput when it resolves to nothing."""
    production, attempts, app = story.production, story.attempts, story.app
    if re.fullmatch(r"-[1-9][0-9]*", ref):
        back = int(ref[1:])
        if back >= len(production):
            raise BadInput(f"--target {ref}: production holds only {len(production)} entries "
                           f"for {app}")
        entry = production[back]
        if entry.promoted_from is None:
            raise BadInput(f"--target {ref}: production entry {entry.commit[:12]} names no "
                           "candidate commit")
        return entry.promoted_from, f"production entry {entry.commit[:12]} ({ref})"
    digest = DIGEST.search(ref)
    if digest:
        prefix = digest.group(1)
        built: dict[str, Attempt] = {}  # full digest -> its newest attempt
        for attempt in attempts:  # newest first
            full = attempt.image.rpartition("@sha256:")[2] if attempt.image else ""
            if full.startswith(prefix):
                built.setdefault(full, attempt)
        if len(built) > 1:
            raise BadInput(f"--target {ref}: ambiguous, {len(built)} images of {app} start "
                           f"with sha256:{prefix}; give more digits")
        if built:
            attempt = next(iter(built.values()))
            return attempt.commit, f"image {short_ref(attempt.image or '')}"
        raise BadInput(f"--target {ref}: no candidate attempt of {app} built sha256:{prefix}")
    if re.fullmatch(r"[0-9a-f]{7,64}", ref):
        matches = [p for p in production if p.commit.startswith(ref)]
        if len(matches) == 1 and matches[0].promoted_from:
            entry, source = matches[0], matches[0].promoted_from
            return source, f"production entry {entry.commit[:12]}"
        if len(matches) > 1:
            raise BadInput(f"--target {ref}: ambiguous, give more digits")
        raise BadInput(f"--target {ref}: not a production entry of {app}")
    raise BadInput(f"--target {ref!r}: give a production commit, an image digest or -N")


def plan_rollback(repo: str, app: str, ref: str, project: str, region: str,
                  trigger: str | None = None, source: str = "candidate",
                  target: str = "production") -> RollbackPlan:
    """Resolve the target from git alone; nothing is run."""
    check_app(app)
    check_branch(source)
    check_branch(target)
    with scratch_repo(repo) as env:
        env.fetch_whole(source, target)
        if app not in apps_on(env, source, target):
            raise BadInput(f"unknown app {app!r}")
        story = collect(env, app, source, target)
    commit, what = resolve(story, ref)
    return RollbackPlan(app=app, commit=commit, what=what, project=project, region=region,
                        trigger=trigger or f"deliver-{app}")


def run_rollback(plan: RollbackPlan, runner: TriggerRunner | None = None) -> RollbackResult:
    build = (runner or CloudBuild()).run_trigger(plan)
    return RollbackResult(
        build_id=build,
        link=(f"https://console.cloud.google.com/cloud-build/builds;region={plan.region}/{build}"
              f"?project={plan.project}"))
