"""GitOps-style continuous delivery for GKE with Cloud Build: the whole system in one stack.

This file only reads the stack config and composes the components; each component documents
its own design decisions.
"""

import pulumi
import pulumi_gcp as gcp

from components.apis import ProjectApis, ProjectApisArgs
from components.cluster import GkeCluster, GkeClusterArgs
from components.cluster_access import AppNamespaces, AppNamespacesArgs
from components.config import ConfigError, load_config
from components.env_branches import EnvBranches, EnvBranchesArgs
from components.identities import BuildIdentities, BuildIdentitiesArgs
from components.registry import ImageRegistry, ImageRegistryArgs
from components.repositories import SourceRepositories, SourceRepositoriesArgs
from components.state_access import StateAccess, StateAccessArgs
from components.steps_image import StepsImage, StepsImageArgs
from components.triggers import DeliveryTriggers, DeliveryTriggersArgs


def deployer_member(configured: str | None) -> pulumi.Input[str]:
    """The IAM member running `pulumi up`: from config, or the current gcloud identity."""
    if configured:
        return configured
    email = gcp.organizations.get_client_open_id_user_info().email
    kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{email}"


# Config is validated before any resource is registered.
try:
    config = load_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

# APIs first: everything below depends on the ones it uses.
# The state backend's own API: Secret Manager for a Pulumi Cloud token, Cloud KMS otherwise.
state_api = "secretmanager.googleapis.com" if config.pulumi_cloud else "cloudkms.googleapis.com"
apis = ProjectApis("apis", ProjectApisArgs(project=config.project,
                                           source_provider=config.source_provider,
                                           extra=(state_api,)))

# One identity per build kind.
identities = BuildIdentities("identities", BuildIdentitiesArgs(
    project=config.project,
    source_provider=config.source_provider,
    deployer=deployer_member(config.deployer),
    api_dependencies=apis.depends_on("iam", "cloudresourcemanager"),
))

# The cluster, with its own node identity.
cluster = GkeCluster("gke", GkeClusterArgs(
    project=config.project,
    location=config.region,
    name=config.cluster_name,
    mode=config.cluster_mode,
    release_channel=config.release_channel,
    deletion_protection=config.deletion_protection,
    machine_type=config.node_machine_type,
    node_count=config.node_count,
    api_dependencies=apis.depends_on("container", "iam", "cloudresourcemanager"),
))

# Images: CI writes, nodes read.
registry = ImageRegistry("registry", ImageRegistryArgs(
    project=config.project,
    location=config.region,
    repository_id=config.registry_name,
    keep_images=config.keep_images,
    untagged_retention_days=config.untagged_retention_days,
    writers={"ci": identities.member("ci")},
    readers={"nodes": cluster.node_account.member},
    api_dependencies=apis.depends_on("artifactregistry"),
))

# Repositories: CI pushes candidate, delivery pushes production.
repositories = SourceRepositories("repos", SourceRepositoriesArgs(
    config=config,
    pushers={"ci": identities.member("ci"), "delivery": identities.member("delivery")},
    readers={
        "ci": ([f"app-{app.name}" for app in config.apps], identities.member("ci")),
        "preview": (["infra"], identities.member("preview")),
    },
    api_dependencies=apis.depends_on("cloudbuild", "secretmanager" if config.github
                                     else "sourcerepo"),
))

# The preview identity reads this stack's state, and changes nothing.
StateAccess("state-access", StateAccessArgs(
    config=config,
    reader=identities.member("preview"),
    api_dependencies=apis.depends_on(state_api.split(".")[0], "storage"),
))

# The env repo's two branches exist before any build needs them.
branches = EnvBranches("env-branches", EnvBranchesArgs(
    env_repo_url=repositories.env.url,
    source_provider=config.source_provider,
    depends_on=[repositories],
))

# Per app: a namespace the delivery identity may change, and nothing else.
namespaces = AppNamespaces("apps", AppNamespacesArgs(
    kubeconfig=cluster.kubeconfig,
    apps=[app.name for app in config.apps],
    delivery_email=identities.accounts["delivery"].email,
))

# The image the build steps run in, built from scripts/ and tagged by its content hash.
steps = StepsImage("steps-image", StepsImageArgs(
    project=config.project,
    region=config.region,
    registry_url=registry.url,
    builder_account=identities.resource_name("ci"),
    builder_member=identities.member("ci"),
    depends_on=[registry, *apis.depends_on("cloudbuild", "storage")],
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
    cluster_name=cluster.cluster.name,
    cluster_location=cluster.cluster.location,
    api_dependencies=[*apis.depends_on("cloudbuild"), branches, steps.build],
))

pulumi.export("registry_url", registry.url)
pulumi.export("steps_image", steps.image)
pulumi.export("env_repo_url", repositories.env.url)
pulumi.export("infra_repo_url", repositories.infra.url)
pulumi.export("app_repo_urls", {app: ref.url for app, ref in repositories.apps.items()})
pulumi.export("ci_trigger_ids", {app: t.trigger_id for app, t in triggers.ci.items()})
pulumi.export("delivery_trigger_ids", {app: t.trigger_id for app, t in triggers.delivery.items()})
pulumi.export("preview_trigger_id", triggers.preview.trigger_id)
pulumi.export("cluster_name", cluster.cluster.name)
pulumi.export("cluster_location", cluster.cluster.location)
pulumi.export("service_accounts", {k: a.email for k, a in identities.accounts.items()})
pulumi.export("kubeconfig", cluster.kubeconfig)
