"""The schedule of the reconcile build: Cloud Scheduler runs the environment's manual trigger.

Design decisions:
- Cloud Build runs a scheduled build through a manual trigger that Cloud Scheduler invokes:
  an HTTP job POSTs to the trigger's regional `:run` endpoint with an OAuth token of its own
  identity (`oauth_token`, scope cloud-platform: Google APIs take OAuth access tokens, not the
  OIDC tokens Cloud Run takes).
- The scheduler identity may run that trigger and nothing else, as far as Cloud Build's IAM
  can say it: Cloud Build has no per-trigger IAM, so it gets a custom role holding only
  `cloudbuild.builds.create` (not Cloud Build Editor, which also reads, updates and cancels
  builds), and actAs on the reconcile identity only. Whatever it starts therefore runs as the
  reconcile identity, which reads the env repo, never pushes, and may change only the
  namespaces of the apps allowed to self-heal.
- gitops:reconcileSchedule `off` creates no job; the trigger can still be run by hand.
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


@dataclass
class ReconcileScheduleArgs:
    project: str
    region: str
    schedule: str  # cron, or "off"
    environment: str
    trigger_id: pulumi.Input[str]
    reconcile_account: pulumi.Input[str]  # projects/P/serviceAccounts/EMAIL
    deployer: str
    api_dependencies: list[pulumi.Resource]
    iam_propagation_seconds: int = 120


def run_body(project: str, trigger_id: str) -> str:
    """The RunBuildTrigger request body, base64 as Cloud Scheduler wants it."""
    body = json.dumps({"projectId": project, "triggerId": trigger_id})
    return base64.b64encode(body.encode()).decode()


class ReconcileSchedule(pulumi.ComponentResource):
    """The scheduler identity, what it may do, and the job that runs the reconcile trigger."""

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
            gcp.serviceaccount.IAMMember(
                "scheduler-acts-as-reconcile",
                service_account_id=args.reconcile_account,
                role="roles/iam.serviceAccountUser",
                member=self.account.member,
                opts=pulumi.ResourceOptions(parent=self),
            ),
            gcp.serviceaccount.IAMMember(
                "scheduler-deployer-act-as",
                service_account_id=self.account.name,
                role="roles/iam.serviceAccountUser",
                member=args.deployer,
                opts=pulumi.ResourceOptions(parent=self),
            ),
        ]
        self.job: gcp.cloudscheduler.Job | None = None
        if args.schedule != "off":
            # The job's first run must not meet grants that have not propagated yet.
            ready = wait_for_grants("scheduler-grants-propagation", self.grants,
                                    args.iam_propagation_seconds, parent=self)
            endpoint = pulumi.Output.concat(
                "https://cloudbuild.googleapis.com/v1/projects/", args.project, "/locations/",
                args.region, "/triggers/", args.trigger_id, ":run")
            self.job = gcp.cloudscheduler.Job(
                f"reconcile-{args.environment}-schedule",
                project=args.project,
                region=args.region,
                name=f"reconcile-{args.environment}",
                description=f"Run the reconcile build of {args.environment}",
                schedule=args.schedule,
                time_zone="Etc/UTC",
                http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    uri=endpoint,
                    http_method="POST",
                    body=pulumi.Output.from_input(args.trigger_id).apply(
                        lambda trigger: run_body(args.project, trigger)),
                    headers={"Content-Type": "application/json"},
                    oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                        service_account_email=self.account.email, scope=CLOUD_PLATFORM),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[
                    *args.api_dependencies, *self.grants, ready]),
            )
        self.register_outputs({"scheduler": self.account.email,
                               "job": self.job.name if self.job else None})
