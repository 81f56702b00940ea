"""The schedule of the reconcile builds: Cloud Scheduler runs each environment's manual trigger.

Design decisions:
- Cloud Build runs a scheduled build through a manual trigger that Cloud Scheduler invokes:
  an HTTP job POSTs to the trigger's regional `:run` endpoint with an OAuth token of its own
  identity (`oauth_token`, scope cloud-platform: Google APIs take OAuth access tokens, not the
  OIDC tokens Cloud Run takes).
- One job per environment (`reconcile-<env>`, today's name for a stack without environments),
  each running that environment's `reconcile-<env>` trigger.
- One scheduler identity runs them all: it may run those triggers and nothing else, as far as
  Cloud Build's IAM can say it. Cloud Build has no per-trigger IAM, so it gets a custom role
  holding only `cloudbuild.builds.create` (not Cloud Build Editor, which also reads, updates
  and cancels builds), and actAs on the environments' reconcile identities only. Whatever it
  starts therefore runs as a reconcile identity, which reads the env repo, never pushes, and
  may change only the namespaces of its own environment's apps that are allowed to
  self-heal. Sharing it costs nothing: each build's rights are its trigger's identity's.
- gitops:reconcileSchedule `off` creates no job; the triggers can still be run by hand.
- The deployer gets actAs on the scheduler identity: creating a job that runs as an account
  requires it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.propagation import wait_for_grants

RUN_BUILDS = "cloudbuild.builds.create"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class ScheduledReconcile:
    """One environment's reconcile trigger and the identity its builds run as."""

    environment: str
    identity: str  # the build kind: `reconcile` or `reconcile-<env>` (names the actAs grant)
    trigger_id: pulumi.Input[str]
    reconcile_account: pulumi.Input[str]  # projects/P/serviceAccounts/EMAIL


@dataclass
class ReconcileScheduleArgs:
    project: str
    region: str
    schedule: str  # cron, or "off"
    runs: tuple[ScheduledReconcile, ...]
    deployer: str
    api_dependencies: list[pulumi.Resource]
    iam_propagation_seconds: int = 120


def run_body(project: str, trigger_id: str) -> str:
    """The RunBuildTrigger request body, base64 as Cloud Scheduler wants it."""
    body = json.dumps({"projectId": project, "triggerId": trigger_id})
    return base64.b64encode(body.encode()).decode()


class ReconcileSchedule(pulumi.ComponentResource):
    """The scheduler identity, what it may do, and per environment the job that runs its
    reconcile trigger."""

    def __init__(self, name: str, args: ReconcileScheduleArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ReconcileSchedule", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
        self.account = gcp.serviceaccount.Account(
            "scheduler",
            project=args.project,
            account_id="gitops-scheduler",
            display_name="GitOps reconcile schedule",
            description="Runs the reconcile trigger on schedule, nothing else",
            opts=child,
        )
        self.role = gcp.projects.IAMCustomRole(
            "run-builds",
            project=args.project,
            role_id="gitopsRunBuilds",
            title="GitOps: run builds",
            description="Start a build (run a trigger); nothing else",
            permissions=[RUN_BUILDS],
            opts=child,
        )
        self.grants: list[pulumi.CustomResource] = [
            gcp.projects.IAMMember(
                "scheduler-runs-builds",
                project=args.project,
                role=self.role.name,
                member=self.account.member,
                opts=pulumi.ResourceOptions(parent=self),
            ),
            # A build started through a trigger runs as the trigger's account.
            *(gcp.serviceaccount.IAMMember(
                f"scheduler-acts-as-{run.identity}",
                service_account_id=run.reconcile_account,
                role="roles/iam.serviceAccountUser",
                member=self.account.member,
                opts=pulumi.ResourceOptions(parent=self),
            ) for run in args.runs),
            gcp.serviceaccount.IAMMember(
                "scheduler-deployer-act-as",
                service_account_id=self.account.name,
                role="roles/iam.serviceAccountUser",
                member=args.deployer,
                opts=pulumi.ResourceOptions(parent=self),
            ),
        ]
        self.jobs: dict[str, gcp.cloudscheduler.Job] = {}
        if args.schedule != "off":
            # The jobs' first runs must not meet grants that have not propagated yet.
            ready = wait_for_grants("scheduler-grants-propagation", self.grants,
                                    args.iam_propagation_seconds, parent=self)
            for run in args.runs:
                self.jobs[run.environment] = self._job(args, run, [*self.grants, ready])
        self.register_outputs({"scheduler": self.account.email,
                               "jobs": {env: job.name for env, job in self.jobs.items()}})

    def _job(self, args: ReconcileScheduleArgs, run: ScheduledReconcile,
             after: list[pulumi.Resource]) -> gcp.cloudscheduler.Job:
        """The job that runs one environment's reconcile trigger on the schedule."""
        endpoint = pulumi.Output.concat(
            "https://cloudbuild.googleapis.com/v1/projects/", args.project, "/locations/",
            args.region, "/triggers/", run.trigger_id, ":run")
        return gcp.cloudscheduler.Job(
            f"reconcile-{run.environment}-schedule",
            project=args.project,
            region=args.region,
            name=f"reconcile-{run.environment}",
            description=f"Run the reconcile build of {run.environment}",
            schedule=args.schedule,
            time_zone="Etc/UTC",
            http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                uri=endpoint,
                http_method="POST",
                body=pulumi.Output.from_input(run.trigger_id).apply(
                    lambda trigger: run_body(args.project, trigger)),
                headers={"Content-Type": "application/json"},
                oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                    service_account_email=self.account.email, scope=CLOUD_PLATFORM),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                *args.api_dependencies, *after]),
        )
