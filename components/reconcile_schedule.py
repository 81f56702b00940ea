"""The schedule of the reconcile builds: a tick topic per environment, and the job that ticks it.

Design decisions:
- Each environment's reconcile trigger is a Pub/Sub trigger on that environment's tick topic
  (`gitops-reconcile-<env>`; a stack without environments: `gitops-reconcile`, the names of
  the reconcile identities). A message on the topic starts that one trigger, whose build,
  identity, source (the environment's production branch) and substitutions are fixed in the
  trigger: nothing in the message reaches the build, so a publisher can start the reconcile
  and nothing else.
- Cloud Scheduler publishes the ticks: one job per environment (`reconcile-<env>`) with a
  Pub/Sub target on its topic, whose message is a small JSON naming the environment (for
  people reading the topic; the build ignores it). Cloud Scheduler publishes as its own
  service agent, whose Google-granted role (`roles/cloudscheduler.serviceAgent`) holds
  `pubsub.topics.publish`: no account of ours is involved and nothing is granted.
- Why not a job that calls the trigger's `:run` endpoint: that needs an identity with
  `cloudbuild.builds.create` in the project, which lets it create any build, and a build
  that names no service account runs as the project's default Cloud Build account. With
  ticks, no identity of ours holds `cloudbuild.builds.create`; Cloud Build's own service agent
  turns a message into the trigger's build. Earlier versions had such an identity
  (`gitops-scheduler`, a custom role `gitopsRunBuilds`, actAs grants): `pulumi up` deletes
  them.
- Who can start a reconcile: whoever may publish to a tick topic (the scheduler's service
  agent; project owners and editors, and anyone granted Pub/Sub publishing project-wide) and
  whoever may create Cloud Scheduler jobs in the project (Google documents that such a job may
  publish to any topic of the project). The topics get no IAM grant of ours.
- gitops:reconcileSchedule `off` creates no job; the topics stay, so the triggers still run
  on a message published by hand (`gcloud pubsub topics publish`).
- The jobs' names and Pulumi names are those of the HTTP jobs they replace, so an existing
  stack updates them in place.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.environments import EnvironmentConfig


def tick_topic_name(env: EnvironmentConfig) -> str:
    """The environment's tick topic, named like its reconcile identity."""
    return env.reconcile_account_id


def tick_message(environment: str) -> str:
    """A tick's payload, base64 as Cloud Scheduler wants it: JSON naming the environment."""
    body = json.dumps({"environment": environment, "reconcile": "scheduled"})
    return base64.b64encode(body.encode()).decode()


@dataclass
class ReconcileScheduleArgs:
    project: str
    region: str
    schedule: str  # cron, or "off"
    environments: tuple[EnvironmentConfig, ...]
    api_dependencies: list[pulumi.Resource]  # Pub/Sub's API
    scheduler_dependencies: list[pulumi.Resource]  # Cloud Scheduler's API


class ReconcileSchedule(pulumi.ComponentResource):
    """Per environment the tick topic its reconcile trigger listens to, and the job that
    publishes to it on the schedule."""

    def __init__(self, name: str, args: ReconcileScheduleArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ReconcileSchedule", name, None, opts)
        self.topics: dict[str, gcp.pubsub.Topic] = {
            env.name: gcp.pubsub.Topic(
                f"reconcile-{env.name}-ticks",
                project=args.project,
                name=tick_topic_name(env),
                labels={"gitops": "reconcile-ticks"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
            ) for env in args.environments}
        # The full names the triggers and jobs take: projects/P/topics/T.
        self.topic_paths: dict[str, pulumi.Output[str]] = {
            env: pulumi.Output.concat("projects/", args.project, "/topics/", topic.name)
            for env, topic in self.topics.items()}
        self.jobs: dict[str, gcp.cloudscheduler.Job] = {}
        if args.schedule != "off":
            for env in args.environments:
                self.jobs[env.name] = gcp.cloudscheduler.Job(
                    f"reconcile-{env.name}-schedule",
                    project=args.project,
                    region=args.region,
                    name=f"reconcile-{env.name}",
                    description=f"Tick the reconcile build of {env.name}",
                    schedule=args.schedule,
                    time_zone="Etc/UTC",
                    pubsub_target=gcp.cloudscheduler.JobPubsubTargetArgs(
                        topic_name=self.topic_paths[env.name],
                        data=tick_message(env.name)),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[
                        *args.scheduler_dependencies, self.topics[env.name]]),
                )
        self.register_outputs({"topics": self.topic_paths,
                               "jobs": {env: job.name for env, job in self.jobs.items()}})
