"""Cloud Build triggers: per app a CI trigger and a delivery trigger, one preview trigger.

Design decisions:
- Every trigger names its dedicated service account (`projects/{project}/serviceAccounts/...`),
  which new triggers must, and so every build config sets its logging option.
- GitHub (2nd-gen) triggers are regional, in the connection's region, and report build status
  with logs to GitHub (`include_build_logs`, valid on GitHub triggers only).
- The delivery trigger of an app fires only for pushes to `candidate` that touch
  `apps/<app>/**`; its build is the inlined `pipelines/delivery.yaml`, with the rollout timeout,
  the Lease wait and the build timeout derived from one setting (`DeliveryTiming`).
- The preview build runs the pull request's code as the preview identity, which can read and
  decrypt the stack's state. On GitHub a pull request from someone without write access (a fork)
  runs only after a maintainer comments `/gcbrun` (`comment_control`); CSR has no pull requests
  and no forks: only people who may push to the infra repo start previews.
- The preview runs in the preview image (the steps image plus the Pulumi CLI), which has the
  gke-gcloud-auth-plugin and gcloud that the program's kubeconfig executes. With Pulumi Cloud it
  names the stack fully (`org/project/stack`): a bare name would resolve in the access token's
  default organisation.
- One delivery trigger per app and environment, on that environment's candidate branch, run by
  that environment's identity, with its cluster, namespace, branches and rollout timeout as
  substitutions; `_NEXT_CANDIDATE` names the next environment's candidate branch, where a
  success publishes the release (empty for the last environment). An environment with
  approval holds each of its delivery builds until an approver approves it
  (`approval_config`). A configured environment's delivery triggers carry the trigger tag
  `environment-<name>` (the policy pack reads it); the implicit one's carry none.
- Per environment a Pub/Sub trigger `reconcile-<env>` runs the reconcile build
  (`pipelines/reconcile.yaml`) at that environment's production branch (`source_to_build`,
  which Pub/Sub triggers build), as that environment's reconcile identity, on its cluster,
  told its environment (`_ENVIRONMENT`, whose branches and namespace suffix the build reads
  from the env repo's record), whenever a message reaches the environment's tick topic
  (`pubsub_config`; components/reconcile_schedule.py: Cloud Scheduler publishes on the
  schedule, an operator by hand). No substitution reads the message: a publisher starts this
  build and nothing else. Its build timeout covers one heal per app it may heal, at that
  environment's rollout timeout. It was a manual trigger before: the provider updates it in
  place (no field of `pubsub_config` forces a replacement), so its id stays.
- The CI trigger tells the app's pipeline the environments' names in delivery order
  (`_ENVIRONMENTS`, separated by spaces), so it renders each environment's kustomize overlay
  for the same digests and publishes them in one commit. Cloud Build fails a build whose
  trigger sets a substitution its YAML does not use (unless `substitutionOption: ALLOW_LOOSE`,
  which would also hide a mistyped one), so only a stack with `gitops:environments` sets it:
  the sample pipelines default it to `production` in their `substitutions:`, and an app
  pipeline written before it existed keeps running on a stack without environments.
- Delivery and reconcile builds learn the events topic and their environment's name from
  `_EVENTS_TOPIC` and `_ENVIRONMENT`.
- Substitutions carry names and URLs only, never a secret: pushes to GitHub ask the connection
  for a short-lived token at run time (`_ENV_REPO_LINK` names the linked repository).
- With commit signing on, the delivery build reads its own key from Secret Manager
  (`availableSecrets`, components/commit_signing.py) and gets the allowed signers, public keys
  only, in `_ALLOWED_SIGNERS`: deploy refuses a candidate commit whose signature does not verify
  and signs what it records on production. The reconcile build gets the allowed signers too (a
  heal re-applies production only when it verifies) and no key: it never commits. The CI
  trigger runs the app's own pipeline, which signs when it adds the lines docs/supply-chain.md
  shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_gcp as gcp

from components import pipelines
from components.commit_signing import CommitSigning
from components.config import ConfigError, StackConfig
from components.delivery_timing import DeliveryTiming
from components.environments import EnvironmentConfig
from components.repositories import RepoRef
from components.state_access import StateAccess

BUILD_LOGS_ON_GITHUB = "INCLUDE_BUILD_LOGS_WITH_STATUS"
# Pull requests by repository writers run at once; anyone else's wait for a writer's /gcbrun.
FORK_PULL_REQUESTS_NEED_COMMENT = "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
APP_PIPELINE = "cloudbuild.yaml"
RE2_SPECIAL = re.compile(r"([.+*?()\[\]{}|^$\\])")


def branch_regex(branch: str) -> str:
    """The branch as a literal in a trigger's RE2 branch pattern (`.` and friends escaped)."""
    return RE2_SPECIAL.sub(r"\\\1", branch)


@dataclass(frozen=True)
class NamedTrigger:
    name_suffix: str  # the trigger name without `deliver-`: APP, or APP-ENV
    resource: gcp.cloudbuild.Trigger


@dataclass
class DeliveryTriggersArgs:
    config: StackConfig
    stack: str
    organization: str  # the Pulumi organization of the stack (Pulumi Cloud)
    pulumi_project: str
    app_repos: dict[str, RepoRef]
    env_repo: RepoRef
    infra_repo: RepoRef
    service_accounts: dict[str, pulumi.Input[str]]  # build kind -> account resource name
    registry_url: pulumi.Input[str]
    steps_image: pulumi.Input[str]
    preview_image: pulumi.Input[str]
    clusters: dict[str, tuple[pulumi.Input[str], pulumi.Input[str]]]  # env -> (name, location)
    api_dependencies: list[pulumi.Resource]
    # env -> the topic whose messages start its reconcile build (projects/P/topics/T)
    reconcile_topics: Mapping[str, pulumi.Input[str]]
    events_topic: pulumi.Input[str] = ""  # projects/P/topics/T
    signing: CommitSigning | None = None  # None: commits are not signed


class DeliveryTriggers(pulumi.ComponentResource):
    """The triggers that turn pushes into builds."""

    def __init__(self, name: str, args: DeliveryTriggersArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:DeliveryTriggers", name, None, opts)
        self.args = args
        cfg = args.config
        self.ci: dict[str, gcp.cloudbuild.Trigger] = {}
        self.delivery: dict[str, gcp.cloudbuild.Trigger] = {}
        env_link: pulumi.Input[str] = (args.env_repo.link or "") if cfg.github else ""
        environments = cfg.environments
        first = environments[0]
        try:  # every environment's timing, before any trigger is registered
            self.timings = {env.name: DeliveryTiming.from_setting(env.rollout_timeout)
                            for env in environments}
        except ConfigError as error:
            raise pulumi.RunError(str(error)) from None
        for app, repo in args.app_repos.items():
            self.ci[app] = self._trigger(
                f"ci-{app}", repo, "ci", branch="^main$",
                description=f"{app}: test, build, push, render and publish to "
                            f"{first.candidate_branch}",
                filename=APP_PIPELINE,
                substitutions={
                    "_APP": app,
                    "_APP_REPO": repo.url,
                    "_REGISTRY": args.registry_url,
                    "_ENV_REPO": args.env_repo.url,
                    "_ENV_REPO_LINK": env_link,
                    "_STEPS_IMAGE": args.steps_image,
                    "_CANDIDATE_BRANCH": first.candidate_branch,
                    # The samples default it to `production`: a stack without environments
                    # does not set it, so a pipeline written before it existed still runs.
                    **({} if first.implicit else
                       {"_ENVIRONMENTS": " ".join(env.name for env in environments)}),
                },
            )
        for index, env in enumerate(environments):
            following = environments[index + 1] if index + 1 < len(environments) else None
            for app in args.app_repos:
                trigger = self._delivery(app, env, following, env_link)
                self.delivery[trigger.name_suffix] = trigger.resource
        # Drift is reported for every environment, each by its own trigger and identity.
        self.reconcile: dict[str, gcp.cloudbuild.Trigger] = {
            env.name: self._reconcile_trigger(env, env_link) for env in environments}
        # GitHub has pull requests; CSR does not, so there previews run on non-main branches.
        self.preview = self._trigger(
            "preview", args.infra_repo, "preview", branch="^main$", review=True,
            description="Infra change review: tests, pulumi preview and the policy pack",
            filename=StateAccess.pipeline(cfg),
            substitutions={**StateAccess.substitutions(cfg, self.preview_stack()),
                           "_PREVIEW_IMAGE": args.preview_image},
        )
        self.register_outputs({
            "ci": {app: t.trigger_id for app, t in self.ci.items()},
            "delivery": {app: t.trigger_id for app, t in self.delivery.items()},
            "preview": self.preview.trigger_id,
            "reconcile": {env: t.trigger_id for env, t in self.reconcile.items()},
        })

    def _delivery(self, app: str, env: EnvironmentConfig, following: EnvironmentConfig | None,
                  env_link: pulumi.Input[str]) -> NamedTrigger:
        """The delivery trigger of app in env (following: the next environment, or None)."""
        args = self.args
        timing = self.timings[env.name]
        delivery_yaml = pipelines.load("delivery.yaml")
        signing_substitutions: dict[str, pulumi.Input[str]] = {}
        if args.signing is not None:  # the environment's own key signs its commits
            delivery_yaml = pipelines.with_signing(delivery_yaml, ("deliver",),
                                                   args.signing.version(env.identity),
                                                   verify=True)
            signing_substitutions[pipelines.ALLOWED_SIGNERS_SUBSTITUTION] = \
                args.signing.allowed_signers_substitution
        build = cast(gcp.cloudbuild.TriggerBuildArgsDict,
                     {**pipelines.trigger_build(delivery_yaml),
                      "timeout": f"{timing.build_timeout}s"})
        cluster_name, cluster_location = args.clusters[env.name]
        name = env.trigger_name(app)
        where = "" if env.implicit else f"{env.name} "
        then = f", then publish to {following.candidate_branch}" if following else ""
        resource = self._trigger(
            name, args.env_repo, env.identity, branch=f"^{branch_regex(env.candidate_branch)}$",
            description=f"{app}: apply {where}candidate to GKE, verify, promote to "
                        f"{where}production{then}"[:100],
            build=build,
            included_files=[f"apps/{app}/**"],
            substitutions={
                "_APP": app,
                "_ENV_REPO": args.env_repo.url,
                "_ENV_REPO_LINK": env_link,
                "_CLUSTER": cluster_name,
                "_CLUSTER_LOCATION": cluster_location,
                **timing.substitutions(),
                **signing_substitutions,
                "_STEPS_IMAGE": args.steps_image,
                "_ENVIRONMENT": env.name,
                "_CANDIDATE_BRANCH": env.candidate_branch,
                "_PRODUCTION_BRANCH": env.production_branch,
                "_NAMESPACE": env.namespace(app),
                "_NEXT_ENVIRONMENT": following.name if following else "",
                "_NEXT_CANDIDATE": following.candidate_branch if following else "",
                "_APPROVAL": "true" if env.approval_required else "false",
                "_EVENTS_TOPIC": args.events_topic,
            },
            approval=env.approval_required,
            tags=None if env.implicit else [f"environment-{env.name}"],
        )
        return NamedTrigger(name.removeprefix("deliver-"), resource)

    def _reconcile_trigger(self, env: EnvironmentConfig,
                           env_link: pulumi.Input[str]) -> gcp.cloudbuild.Trigger:
        """The environment's reconcile trigger: a tick on its topic builds production's tip."""
        args, cfg = self.args, self.args.config
        timing = self.timings[env.name]
        heal = cfg.heal_apps
        reconcile_yaml = pipelines.load("reconcile.yaml")
        signing_substitutions: dict[str, pulumi.Input[str]] = {}
        if args.signing is not None:  # a heal applies only verified commits; it signs nothing
            reconcile_yaml = pipelines.with_signing(reconcile_yaml, ("reconcile",), None,
                                                    verify=True)
            signing_substitutions[pipelines.ALLOWED_SIGNERS_SUBSTITUTION] = \
                args.signing.allowed_signers_substitution
        build = cast(gcp.cloudbuild.TriggerBuildArgsDict, {
            **pipelines.trigger_build(reconcile_yaml),
            "timeout": f"{min(timing.build_timeout * max(1, len(heal)), 86400)}s"})
        source: gcp.cloudbuild.TriggerSourceToBuildArgsDict = {
            "ref": f"refs/heads/{env.production_branch}", "repo_type": "GITHUB",
            "repository": args.env_repo.link or ""} if cfg.github else {
            "ref": f"refs/heads/{env.production_branch}",
            "repo_type": "CLOUD_SOURCE_REPOSITORIES", "uri": args.env_repo.url}
        cluster_name, cluster_location = args.clusters[env.name]
        name = env.reconcile_trigger_name
        return gcp.cloudbuild.Trigger(
            name,
            project=cfg.project,
            location=cfg.region,
            name=name,
            description=f"{env.name}: compare app namespaces with the env repo, "
                        f"report drift" + (f", heal {', '.join(heal)}" if heal else ""),
            service_account=args.service_accounts[env.reconcile_identity],
            build=build,
            pubsub_config=gcp.cloudbuild.TriggerPubsubConfigArgs(
                topic=args.reconcile_topics[env.name]),
            source_to_build=source,
            substitutions={
                "_ENV_REPO": args.env_repo.url,
                "_ENV_REPO_LINK": env_link,
                "_CLUSTER": cluster_name,
                "_CLUSTER_LOCATION": cluster_location,
                "_HEAL_APPS": ",".join(heal),
                **timing.substitutions(),
                **signing_substitutions,
                "_STEPS_IMAGE": args.steps_image,
                "_EVENTS_TOPIC": args.events_topic,
                "_ENVIRONMENT": env.name,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
        )

    def preview_stack(self) -> str:
        """The stack as `pulumi preview --stack` must name it for the configured backend."""
        if self.args.config.pulumi_cloud:
            return f"{self.args.organization}/{self.args.pulumi_project}/{self.args.stack}"
        return self.args.stack

    def _trigger(self, name: str, repo: RepoRef, kind: str, branch: str, description: str,
                 substitutions: Mapping[str, pulumi.Input[str]], filename: str | None = None,
                 build: gcp.cloudbuild.TriggerBuildArgsDict | None = None,
                 included_files: list[str] | None = None,
                 review: bool = False, approval: bool = False,
                 tags: list[str] | None = None) -> gcp.cloudbuild.Trigger:
        """A trigger for pushes to branch, or with review=True for changes proposed to it."""
        cfg = self.args.config
        source: dict = {}
        if cfg.github:
            event = {"pull_request": {"branch": branch,
                                      "comment_control": FORK_PULL_REQUESTS_NEED_COMMENT}} \
                if review else {"push": {"branch": branch}}
            source["repository_event_config"] = {"repository": repo.link, **event}
            source["include_build_logs"] = BUILD_LOGS_ON_GITHUB
        else:
            source["trigger_template"] = {
                "project_id": cfg.project,
                "repo_name": repo.name,
                "branch_name": branch,
                # CSR has no pull requests: a review runs for pushes to any other branch.
                "invert_regex": review,
            }
        return gcp.cloudbuild.Trigger(
            name,
            project=cfg.project,
            location=cfg.region,
            name=name,
            description=description,
            service_account=self.args.service_accounts[kind],
            filename=filename,
            build=build,
            included_files=included_files,
            substitutions=substitutions,
            # Cloud Build holds each build until someone with the approver role approves it.
            approval_config=gcp.cloudbuild.TriggerApprovalConfigArgs(approval_required=True)
            if approval else None,
            tags=tags,
            **source,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.args.api_dependencies),
        )
