"""GitOps-style continuous delivery for GKE with Cloud Build: the whole system in one stack.

This file only reads the stack config and composes the components; each component documents
its own design decisions.
"""

import pulumi

from components.admission_policy import AdmissionPolicy, AdmissionPolicyArgs
from components.apis import ProjectApis, ProjectApisArgs
from components.cluster import GkeCluster, GkeClusterArgs
from components.cluster_access import AppNamespaces, AppNamespacesArgs
from components.commit_signing import CommitSigning, CommitSigningArgs
from components.config import ConfigError, load_config
from components.env_branches import EnvBranches, EnvBranchesArgs
from components.events import DeliveryEvents, DeliveryEventsArgs
from components.identities import BuildIdentities, BuildIdentitiesArgs
from components.network import ClusterNetwork, ClusterNetworkArgs
from components.propagation import IamPropagation, IamPropagationArgs
from components.reconcile_schedule import ReconcileSchedule, ReconcileScheduleArgs
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

# One identity per build kind; the deployer (from config) may attach them to triggers.
identities = BuildIdentities("identities", BuildIdentitiesArgs(
    project=config.project,
    source_provider=config.source_provider,
    deployer=config.deployer,
    api_dependencies=apis.depends_on("iam", "cloudresourcemanager"),
))

# The cluster's own VPC and subnet (or existing ones from config), never `default`.
network = ClusterNetwork("network", ClusterNetworkArgs(
    project=config.project,
    region=config.region,
    pods_range=config.pods_range,
    services_range=config.services_range,
    existing_network=config.network,
    existing_subnetwork=config.subnetwork,
    api_dependencies=apis.depends_on("compute"),
))

# The cluster, with its own node identity.
cluster = GkeCluster("gke", GkeClusterArgs(
    project=config.project,
    location=config.region,
    name=config.cluster_name,
    node_account_id=config.node_account_id,
    mode=config.cluster_mode,
    release_channel=config.release_channel,
    deletion_protection=config.deletion_protection,
    machine_type=config.node_machine_type,
    node_count=config.node_count,
    network=network.network,
    subnetwork=network.subnetwork,
    pods_range=network.pods_range,
    services_range=network.services_range,
    binary_authorization=config.binary_authorization,
    api_dependencies=[*apis.depends_on("container", "iam", "cloudresourcemanager"), network,
                      *apis.depends_on(*(["binaryauthorization"]
                                         if config.binary_authorization else []))],
))

# Images: CI writes; every other build identity pulls the steps image; nodes pull app images.
registry = ImageRegistry("registry", ImageRegistryArgs(
    project=config.project,
    location=config.region,
    repository_id=config.registry_name,
    keep_images=config.keep_images,
    image_retention_days=config.image_retention_days,
    untagged_retention_days=config.untagged_retention_days,
    writers={"ci": identities.member("ci")},
    readers={"delivery": identities.member("delivery"),
             "preview": identities.member("preview"),
             "reconcile": identities.member("reconcile"),
             "nodes": cluster.node_account.member},
    api_dependencies=apis.depends_on("artifactregistry"),
))

# Repositories: CI pushes candidate, delivery pushes production, the deployer creates both.
repositories = SourceRepositories("repos", SourceRepositoriesArgs(
    config=config,
    pushers={"ci": identities.member("ci"), "delivery": identities.member("delivery")},
    deployer=config.deployer,
    readers={
        "ci": ([f"app-{app.name}" for app in config.apps], identities.member("ci")),
        "preview": (["infra"], identities.member("preview")),
        "reconcile": (["env"], identities.member("reconcile")),
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

# Signed commits (gitops:signers): a key secret per committing identity, read by it alone.
signing = CommitSigning("commit-signing", CommitSigningArgs(
    project=config.project,
    members={"ci": identities.member("ci"), "delivery": identities.member("delivery")},
    allowed_signers=config.allowed_signers(),
    api_dependencies=apis.depends_on("secretmanager"),
)) if config.signing else None

# One JSON event per delivery outcome, on a topic with a schema; delivery and reconcile publish.
events = DeliveryEvents("events", DeliveryEventsArgs(
    project=config.project,
    topic_name=config.events_topic,
    publishers={kind: identities.member(kind) for kind in ("delivery", "reconcile")},
    api_dependencies=apis.depends_on("pubsub"),
))

# Every grant above propagates before anything acts on it.
grants = IamPropagation("iam-propagation", IamPropagationArgs(
    grants=[*identities.grants, cluster.node_role, *registry.grants, *repositories.grants,
            *state_access.grants, *events.grants, *(signing.grants if signing else [])],
    seconds=config.iam_propagation_seconds,
))

# The env repo's two branches exist before any build needs them.
branches = EnvBranches("env-branches", EnvBranchesArgs(
    env_repo_url=repositories.env.url,
    env_repo_link=repositories.env.link,
    source_provider=config.source_provider,
    depends_on=[repositories, grants.ready],
))

# Per app: a namespace the delivery identity may change, and nothing else.
namespaces = AppNamespaces("apps", AppNamespacesArgs(
    kubeconfig=cluster.kubeconfig,
    apps=[app.name for app in config.apps],
    delivery_email=identities.accounts["delivery"].email,
    reconcile_email=identities.accounts["reconcile"].email,
    heal_apps=config.heal_apps,
))

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
    cluster_name=cluster.cluster.name,
    cluster_location=cluster.cluster.location,
    api_dependencies=[*apis.depends_on("cloudbuild"), branches, steps.build, grants.ready,
                      *([signing] if signing else [])],
    events_topic=events.topic_path,
    signing=signing,
))

# Cloud Scheduler runs the reconcile trigger, as an identity that may do nothing else.
schedule = ReconcileSchedule("reconcile-schedule", ReconcileScheduleArgs(
    project=config.project,
    region=config.region,
    schedule=config.reconcile_schedule,
    environment="production",
    trigger_id=triggers.reconcile.trigger_id,
    reconcile_account=identities.resource_name("reconcile"),
    deployer=config.deployer,
    api_dependencies=apis.depends_on("cloudscheduler", "iam", "cloudresourcemanager"),
    iam_propagation_seconds=config.iam_propagation_seconds,
))

pulumi.export("registry_url", registry.url)
pulumi.export("steps_image", steps.image)
pulumi.export("env_repo_url", repositories.env.url)
pulumi.export("infra_repo_url", repositories.infra.url)
pulumi.export("app_repo_urls", {app: ref.url for app, ref in repositories.apps.items()})
pulumi.export("ci_trigger_ids", {app: t.trigger_id for app, t in triggers.ci.items()})
pulumi.export("delivery_trigger_ids", {app: t.trigger_id for app, t in triggers.delivery.items()})
pulumi.export("preview_trigger_id", triggers.preview.trigger_id)
pulumi.export("reconcile_trigger_id", triggers.reconcile.trigger_id)
pulumi.export("events_topic", events.topic_path)
pulumi.export("cluster_name", cluster.cluster.name)
pulumi.export("cluster_location", cluster.cluster.location)
pulumi.export("service_accounts", {k: a.email for k, a in identities.accounts.items()})
pulumi.export("kubeconfig", cluster.kubeconfig)
if signing:
    pulumi.export("allowed_signers", signing.allowed_signers)
    pulumi.export("signing_key_secrets", {k: s.secret_id for k, s in signing.secrets.items()})
if admission:
    pulumi.export("binary_authorization_attestor", admission.attestor)
