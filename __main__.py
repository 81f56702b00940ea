"""GitOps-style continuous delivery for GKE with Cloud Build: the whole system in one stack.

This file only reads the stack config and composes the components; each component documents
its own design decisions.
"""

import pulumi

from components.admission_policy import AdmissionPolicy, AdmissionPolicyArgs
from components.apis import ProjectApis, ProjectApisArgs
from components.approvals import ApprovalGates, ApprovalGatesArgs
from components.cluster import GkeCluster, GkeClusterArgs
from components.cluster_access import AppNamespaces, AppNamespacesArgs
from components.commit_signing import CommitSigning, CommitSigningArgs
from components.config import ConfigError, load_config, node_account_id
from components.env_branches import EnvBranches, EnvBranchesArgs
from components.events import DeliveryEvents, DeliveryEventsArgs
from components.identities import BuildIdentities, BuildIdentitiesArgs, EnvironmentIdentity
from components.network import ClusterNetwork, ClusterNetworkArgs
from components.propagation import IamPropagation, IamPropagationArgs
from components.reconcile_schedule import (
    ReconcileSchedule,
    ReconcileScheduleArgs,
    tick_topic_name,
)
from components.registry import ImageRegistry, ImageRegistryArgs
from components.repositories import SourceRepositories, SourceRepositoriesArgs
from components.state_access import StateAccess, StateAccessArgs
from components.steps_image import StepsImage, StepsImageArgs
from components.triggers import DeliveryTriggers, DeliveryTriggersArgs

# Config is validated before any resource is registered.
try:
    config = load_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

# APIs first: everything below depends on the ones it uses.
# The state backend's own API: Secret Manager for a Pulumi Cloud token, Cloud KMS otherwise.
state_api = "secretmanager.googleapis.com" if config.pulumi_cloud else "cloudkms.googleapis.com"
# Signing keys live in Secret Manager; Binary Authorization has its own API.
supply_chain_apis = (*(("secretmanager.googleapis.com",) if config.signing else ()),
                     *(("binaryauthorization.googleapis.com",)
                       if config.binary_authorization else ()))
apis = ProjectApis("apis", ProjectApisArgs(project=config.project,
                                           source_provider=config.source_provider,
                                           extra=(state_api, "pubsub.googleapis.com",
                                                  "cloudscheduler.googleapis.com",
                                                  *supply_chain_apis)))

environments = config.environments
# The clusters the environments deploy to, in order; the stack's own keeps today's names.
cluster_names = list(dict.fromkeys(env.cluster_name for env in environments))
extra_clusters = [name for name in cluster_names if name != config.cluster_name]


def cluster_path(name: str) -> str:
    return f"projects/{config.project}/locations/{config.region}/clusters/{name}"


# One identity per build kind, and per environment a delivery and a reconcile identity that
# reach that environment's cluster only; the deployer (from config) may attach them to triggers.
identities = BuildIdentities("identities", BuildIdentitiesArgs(
    project=config.project,
    source_provider=config.source_provider,
    deployer=config.deployer,
    api_dependencies=apis.depends_on("iam", "cloudresourcemanager"),
    deliveries=tuple(EnvironmentIdentity(
        env.identity, env.account_id, env.name,
        None if env.implicit else cluster_path(env.cluster_name)) for env in environments),
    reconcilers=tuple(EnvironmentIdentity(
        env.reconcile_identity, env.reconcile_account_id, env.name,
        None if env.implicit else cluster_path(env.cluster_name), builds="reconcile")
        for env in environments),
))
deliveries = {env.identity: identities.member(env.identity) for env in environments}
reconcilers = {env.reconcile_identity: identities.member(env.reconcile_identity)
               for env in environments}

# The cluster's own VPC and subnet (or existing ones from config), never `default`.
network = ClusterNetwork("network", ClusterNetworkArgs(
    project=config.project,
    region=config.region,
    pods_range=config.pods_range,
    services_range=config.services_range,
    existing_network=config.network,
    existing_subnetwork=config.subnetwork,
    api_dependencies=apis.depends_on("compute"),
    extra_clusters=extra_clusters,
))

# The clusters, each with its own node identity: the stack's, and environments' own.
clusters: dict[str, GkeCluster] = {}
for cluster_name in cluster_names:
    own = cluster_name != config.cluster_name
    pods_range, services_range = network.ranges_for(cluster_name if own else None)
    clusters[cluster_name] = GkeCluster(f"gke-{cluster_name}" if own else "gke", GkeClusterArgs(
        project=config.project,
        location=config.region,
        name=cluster_name,
        node_account_id=node_account_id(cluster_name),
        mode=config.cluster_mode,
        release_channel=config.release_channel,
        deletion_protection=config.deletion_protection,
        machine_type=config.node_machine_type,
        node_count=config.node_count,
        network=network.network,
        subnetwork=network.subnetwork,
        pods_range=pods_range,
        services_range=services_range,
        binary_authorization=config.binary_authorization,
        api_dependencies=[*apis.depends_on("container", "iam", "cloudresourcemanager"), network,
                          *apis.depends_on(*(["binaryauthorization"]
                                             if config.binary_authorization else []))],
        name_prefix=f"{cluster_name}-" if own else "",
    ))
# Operators' default: the cluster of the last environment (production).
cluster = clusters[environments[-1].cluster_name]
node_readers = {("nodes" if name == config.cluster_name else f"nodes-{name}"):
                c.node_account.member for name, c in clusters.items()}

# Images: CI writes; every other build identity pulls the steps image; nodes pull app images.
registry = ImageRegistry("registry", ImageRegistryArgs(
    project=config.project,
    location=config.region,
    repository_id=config.registry_name,
    keep_images=config.keep_images,
    image_retention_days=config.image_retention_days,
    untagged_retention_days=config.untagged_retention_days,
    writers={"ci": identities.member("ci")},
    readers={**deliveries,
             "preview": identities.member("preview"),
             **reconcilers,
             **node_readers},
    api_dependencies=apis.depends_on("artifactregistry"),
))

# Repositories: CI pushes candidate, delivery pushes production, the deployer creates both.
repositories = SourceRepositories("repos", SourceRepositoriesArgs(
    config=config,
    pushers={"ci": identities.member("ci"), **deliveries},
    deployer=config.deployer,
    readers={
        "ci": ([f"app-{app.name}" for app in config.apps], identities.member("ci")),
        "preview": (["infra"], identities.member("preview")),
        **{kind: (["env"], member) for kind, member in reconcilers.items()},
    },
    api_dependencies=apis.depends_on("cloudbuild", "secretmanager" if config.github
                                     else "sourcerepo"),
))

# The preview identity reads this stack's state, and changes nothing.
state_access = StateAccess("state-access", StateAccessArgs(
    config=config,
    reader=identities.member("preview"),
    api_dependencies=apis.depends_on(state_api.split(".")[0], "storage"),
))

# Signed commits (gitops:signers): a key secret per committing identity (CI and each
# environment's delivery identity), read by it alone.
signing = CommitSigning("commit-signing", CommitSigningArgs(
    project=config.project,
    members={kind: identities.member(kind) for kind in config.signing_identities},
    allowed_signers=config.allowed_signers(),
    api_dependencies=apis.depends_on("secretmanager"),
)) if config.signing else None

# One JSON event per delivery outcome, on a topic with a schema; every delivery identity and
# every reconcile identity publish.
events = DeliveryEvents("events", DeliveryEventsArgs(
    project=config.project,
    topic_name=config.events_topic,
    publishers={**deliveries, **reconcilers},
    api_dependencies=apis.depends_on("pubsub"),
))

# Approval gates: approvers may approve, the gated environment's builds read their approval.
gates = {env.name: (env.approvers, identities.member(env.identity))
         for env in environments if env.approval_required}
approval_grants = ApprovalGates("approvals", ApprovalGatesArgs(
    project=config.project, gates=gates,
    api_dependencies=apis.depends_on("cloudresourcemanager", "cloudbuild"),
)).grants if gates else []

# Every grant above propagates before anything acts on it.
grants = IamPropagation("iam-propagation", IamPropagationArgs(
    grants=[*identities.grants, *(c.node_role for c in clusters.values()), *registry.grants,
            *repositories.grants, *state_access.grants, *events.grants, *approval_grants,
            *(signing.grants if signing else [])],
    seconds=config.iam_propagation_seconds,
))

# The env repo's branches exist before any build needs them.
branches = EnvBranches("env-branches", EnvBranchesArgs(
    env_repo_url=repositories.env.url,
    env_repo_link=repositories.env.link,
    source_provider=config.source_provider,
    depends_on=[repositories, grants.ready],
    environments=None if environments[0].implicit else environments,
))

# Per environment and app: a namespace that environment's delivery identity may change, and
# nothing else; that environment's reconcile identity reads it (and may heal it).
namespaces = {env.name: AppNamespaces(
    "apps" if env.implicit else f"apps-{env.name}", AppNamespacesArgs(
        kubeconfig=clusters[env.cluster_name].kubeconfig,
        apps=config.apps,
        delivery_email=identities.accounts[env.identity].email,
        namespaces={app.name: env.namespace(app.name) for app in config.apps},
        name_prefix=env.resource_prefix,
        reconcile_email=identities.accounts[env.reconcile_identity].email,
        heal_apps=config.heal_apps,
        # Before every environment had drift, the last one's reconcile RBAC had no prefix.
        reconciler_alias_prefix="" if env is environments[-1] and not env.implicit else None,
    )) for env in environments}

# The image the build steps run in, built from scripts/ and tagged by its content hash.
steps = StepsImage("steps-image", StepsImageArgs(
    project=config.project,
    region=config.region,
    registry_url=registry.url,
    builder_account=identities.resource_name("ci"),
    builder_member=identities.member("ci"),
    depends_on=[registry, grants.ready, *apis.depends_on("cloudbuild", "storage")],
    iam_propagation_seconds=config.iam_propagation_seconds,
))

# Binary Authorization (gitops:binaryAuthorization): once a build has made images, Cloud
# Build's attestor exists and the policy can require it.
admission = AdmissionPolicy("admission-policy", AdmissionPolicyArgs(
    project=config.project,
    allowlist=config.binary_authorization_allowlist,
    depends_on=[*apis.depends_on("binaryauthorization"), steps.build],
)) if config.binary_authorization else None

# Per environment a topic of reconcile ticks, which Cloud Scheduler publishes to on the
# schedule; each environment's reconcile trigger runs on its ticks.
schedule = ReconcileSchedule("reconcile-schedule", ReconcileScheduleArgs(
    project=config.project,
    region=config.region,
    schedule=config.reconcile_schedule,
    environments=environments,
    api_dependencies=apis.depends_on("pubsub"),
    scheduler_dependencies=apis.depends_on("cloudscheduler"),
))

triggers = DeliveryTriggers("triggers", DeliveryTriggersArgs(
    config=config,
    stack=pulumi.get_stack(),
    organization=pulumi.get_organization(),
    pulumi_project=pulumi.get_project(),
    app_repos=repositories.apps,
    env_repo=repositories.env,
    infra_repo=repositories.infra,
    service_accounts={kind: identities.resource_name(kind) for kind in identities.accounts},
    registry_url=registry.url,
    steps_image=steps.image,
    preview_image=steps.preview_image,
    clusters={env.name: (clusters[env.cluster_name].cluster.name,
                         clusters[env.cluster_name].cluster.location) for env in environments},
    api_dependencies=[*apis.depends_on("cloudbuild"), branches, steps.build, grants.ready,
                      *([signing] if signing else [])],
    events_topic=events.topic_path,
    reconcile_topics=schedule.topic_paths,
    signing=signing,
))

pulumi.export("registry_url", registry.url)
pulumi.export("steps_image", steps.image)
pulumi.export("env_repo_url", repositories.env.url)
pulumi.export("infra_repo_url", repositories.infra.url)
pulumi.export("app_repo_urls", {app: ref.url for app, ref in repositories.apps.items()})
pulumi.export("ci_trigger_ids", {app: t.trigger_id for app, t in triggers.ci.items()})
pulumi.export("delivery_trigger_ids", {app: t.trigger_id for app, t in triggers.delivery.items()})
pulumi.export("preview_trigger_id", triggers.preview.trigger_id)
# The last environment's (production's), as before environments; every environment's by name.
pulumi.export("reconcile_trigger_id", triggers.reconcile[environments[-1].name].trigger_id)
pulumi.export("reconcile_trigger_ids", {env: t.trigger_id for env, t in triggers.reconcile.items()})
pulumi.export("reconcile_topics", schedule.topic_paths)
pulumi.export("events_topic", events.topic_path)
pulumi.export("cluster_name", cluster.cluster.name)
pulumi.export("cluster_location", cluster.cluster.location)
pulumi.export("service_accounts", {k: a.email for k, a in identities.accounts.items()})
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("environments", [{
    **env.to_json(),
    "delivery_triggers": {app.name: env.trigger_name(app.name) for app in config.apps},
    "service_account": identities.accounts[env.identity].email,
    "reconcile_trigger": env.reconcile_trigger_name,
    "reconcile_service_account": identities.accounts[env.reconcile_identity].email,
    "reconcile_topic": tick_topic_name(env),
    "approvers": list(env.approvers),
} for env in environments])
if signing:
    pulumi.export("allowed_signers", signing.allowed_signers)
    pulumi.export("signing_key_secrets", {k: s.secret_id for k, s in signing.secrets.items()})
if admission:
    pulumi.export("binary_authorization_attestor", admission.attestor)
