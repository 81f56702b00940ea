"""The Pulumi program under mocks: the real `__main__.py`, its resource graph and its inputs."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from pulumi_harness import (
    CONFIGS,
    DEPLOYER_EMAIL,
    ROOT,
    TRIGGER,
    USER_INFO,
    Graph,
    Resource,
    base_config,
    pipeline_of,
    program_graph,
    run_program,
)

ACCOUNT = "gcp:serviceaccount/account:Account"
SERVICE = "gcp:projects/service:Service"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
CONNECTION = "gcp:cloudbuildv2/connection:Connection"
LINK = "gcp:cloudbuildv2/repository:Repository"
CSR_REPO = "gcp:sourcerepo/repository:Repository"
REGISTRY = "gcp:artifactregistry/repository:Repository"


@pytest.fixture(scope="module", params=list(CONFIGS))
def graph(request: pytest.FixtureRequest) -> Graph:
    graph = program_graph(request.param)
    graph.kind = request.param  # type: ignore[attr-defined]
    return graph


@pytest.fixture(scope="module")
def github() -> Graph:
    return program_graph("github")


@pytest.fixture(scope="module")
def switched_off() -> Graph:
    """Deletion protection and the reconcile schedule off: one run that two tests read."""
    return run_program(base_config(**{"gitops:deletionProtection": "false",
                                      "gitops:reconcileSchedule": "off"}))


@pytest.fixture(scope="module")
def csr() -> Graph:
    return program_graph("csr")


@pytest.fixture(scope="module")
def three_apps() -> Graph:
    return program_graph("three-apps")


def apps_of(graph: Graph) -> list[str]:
    return {"three-apps": ["hello", "shop", "billing"]}.get(graph.kind, ["hello"])  # type: ignore[attr-defined]


def account_emails(graph: Graph) -> dict[str, str]:
    return {a.name: a.outputs["email"] for a in graph.of_type(ACCOUNT)}


# The API each resource type needs enabled first.
API_OF = {
    CLUSTER: "container", NODE_POOL: "container", REGISTRY: "artifactregistry",
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": "artifactregistry",
    TRIGGER: "cloudbuild", CONNECTION: "cloudbuild", LINK: "cloudbuild",
    "gcp:cloudbuildv2/connectionIAMMember:ConnectionIAMMember": "cloudbuild",
    "gcp:projects/serviceIdentity:ServiceIdentity": "cloudbuild",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "secretmanager",
    CSR_REPO: "sourcerepo", "gcp:sourcerepo/repositoryIamMember:RepositoryIamMember":
        "sourcerepo",
    ACCOUNT: "iam", PROJECT_IAM: "cloudresourcemanager",
    "gcp:storage/bucket:Bucket": "storage",
    "gcp:storage/bucketIAMMember:BucketIAMMember": "storage",
    "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember": "cloudkms",
    "gcp:compute/network:Network": "compute", "gcp:compute/subnetwork:Subnetwork": "compute",
    "gcp:secretmanager/secret:Secret": "secretmanager",
    "gcp:binaryauthorization/policy:Policy": "binaryauthorization",
    "gcp:pubsub/schema:Schema": "pubsub", "gcp:pubsub/topic:Topic": "pubsub",
    "gcp:pubsub/topicIAMMember:TopicIAMMember": "pubsub",
    "gcp:cloudscheduler/job:Job": "cloudscheduler",
    "gcp:projects/iAMCustomRole:IAMCustomRole": "iam",
}


class TestResourceGraph:
    """Every config stands up every piece, wired by outputs rather than literals."""

    def test_components(self, graph: Graph) -> None:
        components = sorted(r.typ for r in graph.resources if r.typ.startswith("gitops:index:"))
        assert components == sorted(f"gitops:index:{name}" for name in [
            "ProjectApis", "BuildIdentities", "ClusterNetwork", "GkeCluster", "ImageRegistry",
            "SourceRepositories", "EnvBranches", "AppNamespaces", "StepsImage",
            "StateAccess", "IamPropagation", "DeliveryTriggers", "DeliveryEvents",
            "ReconcileSchedule"])
        for resource in graph.resources:
            if resource.typ not in ("pulumi:providers:kubernetes",) and \
                    not resource.typ.startswith("gitops:index:"):
                assert "$gitops:index:" in resource.urn or \
                    resource.urn.split("::")[2].startswith("gitops:index:"), \
                    f"{resource.name} is not parented to a component"

    def test_one_of_each_shared_piece(self, graph: Graph) -> None:
        assert len(graph.of_type(CLUSTER)) == 1
        assert len(graph.of_type(REGISTRY)) == 1
        assert sorted(account_emails(graph)) == ["ci-builds", "delivery-builds", "nodes",
                                                 "preview-builds", "reconcile-builds"]

    def test_per_app_pieces(self, graph: Graph) -> None:
        apps = apps_of(graph)
        triggers = {t.name: t for t in graph.of_type(TRIGGER)}
        assert sorted(triggers) == sorted([f"ci-{a}" for a in apps] +
                                          [f"deliver-{a}" for a in apps] +
                                          ["preview", "reconcile-production"])
        namespaces = graph.of_type("kubernetes:core/v1:Namespace")
        assert sorted(n.inputs["metadata"]["name"] for n in namespaces) == sorted(apps)
        for app in apps:
            assert triggers[f"deliver-{app}"].inputs["includedFiles"] == [f"apps/{app}/**"]
            assert triggers[f"ci-{app}"].inputs["substitutions"]["_APP"] == app
            assert triggers[f"deliver-{app}"].inputs["substitutions"]["_APP"] == app

    def test_reconcile_ticks_with_and_without_a_schedule(self, github: Graph,
                                                         switched_off: Graph) -> None:
        """The reconcile trigger runs on its topic's ticks; `off` drops only the job."""
        topic = github.one("gcp:pubsub/topic:Topic", name="reconcile-production-ticks")
        path = f"projects/acme-delivery/topics/{topic.inputs['name']}"
        assert topic.inputs["name"] == "gitops-reconcile"
        assert github.named("reconcile-production").inputs["pubsubConfig"] == {"topic": path}
        [job] = github.of_type("gcp:cloudscheduler/job:Job")
        assert (job.inputs["schedule"], job.inputs["pubsubTarget"]["topicName"]) == (
            "*/30 * * * *", path)
        off = switched_off
        assert not off.of_type("gcp:cloudscheduler/job:Job")
        assert off.named("reconcile-production").inputs["pubsubConfig"] == {"topic": path}
        assert off.named("reconcile-production-ticks").inputs["name"] == "gitops-reconcile"

    def test_triggers_carry_wired_values(self, graph: Graph) -> None:
        registry = graph.one(REGISTRY)
        cluster = graph.one(CLUSTER)
        url = f"europe-west1-docker.pkg.dev/acme-delivery/{registry.outputs['repositoryId']}"
        for trigger in graph.of_type(TRIGGER):
            subs = trigger.inputs["substitutions"]
            if trigger.name.startswith("ci-"):
                assert subs["_REGISTRY"] == url
            if "_STEPS_IMAGE" in subs:
                assert subs["_STEPS_IMAGE"].startswith(f"{url}/gitops-steps:")
            if trigger.name.startswith("deliver-"):
                assert subs["_CLUSTER"] == cluster.outputs["name"]
                assert subs["_CLUSTER_LOCATION"] == cluster.outputs["location"]

    def test_stack_outputs(self, graph: Graph) -> None:
        out = graph.outputs
        assert set(out) == {"registry_url", "steps_image", "env_repo_url", "infra_repo_url",
                            "app_repo_urls", "ci_trigger_ids", "delivery_trigger_ids",
                            "preview_trigger_id", "cluster_name", "cluster_location",
                            "service_accounts", "kubeconfig", "reconcile_trigger_id",
                            "reconcile_trigger_ids", "reconcile_topics", "events_topic",
                            "environments"}
        assert sorted(out["ci_trigger_ids"]) == sorted(apps_of(graph))
        triggers = {t.name: t.outputs["triggerId"] for t in graph.of_type(TRIGGER)}
        assert out["preview_trigger_id"] == triggers["preview"]
        # One environment: today's reconcile trigger, under both the old and the new output.
        assert out["reconcile_trigger_ids"] == {
            "production": out["reconcile_trigger_id"]} == {
            "production": triggers["reconcile-production"]}
        assert out["reconcile_topics"] == {
            "production": "projects/acme-delivery/topics/gitops-reconcile"}
        assert out["cluster_name"] == "gitops"
        assert "gke-gcloud-auth-plugin" in out["kubeconfig"]

    def test_kubeconfig_is_a_secret_built_from_the_cluster(self, graph: Graph) -> None:
        assert graph.secret_outputs == {"kubeconfig"}
        provider = graph.one("pulumi:providers:kubernetes")
        # The provider receives it as a secret too, in Pulumi's documented wire form of a
        # secret value (the "4dabf18193072939515e22adb298388d" signature key).
        assert provider.inputs["kubeconfig"] == {
            "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
            "value": graph.outputs["kubeconfig"]}
        assert graph.one(CLUSTER).outputs["endpoint"] in graph.outputs["kubeconfig"]


class TestRealCloudConstraints:
    """One test per real-cloud rule that `pulumi preview` would not catch."""

    def test_user_specified_service_account_needs_logging_option(self, graph: Graph) -> None:
        for trigger in graph.of_type(TRIGGER):
            logging = pipeline_of(trigger).get("options", {}).get("logging")
            assert logging in ("CLOUD_LOGGING_ONLY", "NONE"), trigger.name

    def test_build_accounts_can_write_logs_and_deployer_can_act_as_them(
            self, graph: Graph) -> None:
        emails = account_emails(graph)
        log_writers = {g.inputs["member"] for g in graph.of_type(PROJECT_IAM)
                       if g.inputs["role"] == "roles/logging.logWriter"}
        act_as = [g for g in graph.of_type("gcp:serviceaccount/iAMMember:IAMMember")]
        for kind in ("ci", "delivery", "preview"):
            email = emails[f"{kind}-builds"]
            assert f"serviceAccount:{email}" in log_writers
            grants = [g for g in act_as if email in g.inputs["serviceAccountId"]]
            assert [(g.inputs["role"], g.inputs["member"]) for g in grants] == [
                ("roles/iam.serviceAccountUser", f"user:{DEPLOYER_EMAIL}")]

    def test_new_triggers_must_name_a_service_account(self, graph: Graph) -> None:
        emails = account_emails(graph)
        expected = {"ci": "ci-builds", "deliver": "delivery-builds", "preview": "preview-builds",
                    "reconcile": "reconcile-builds"}
        for trigger in graph.of_type(TRIGGER):
            kind = trigger.name.split("-")[0]
            email = emails[expected[kind]]
            assert trigger.inputs["serviceAccount"] == \
                f"projects/acme-delivery/serviceAccounts/{email}"

    def test_second_gen_repositories_need_regional_triggers_in_connection_region(
            self, github: Graph) -> None:
        connection = github.one(CONNECTION)
        links = {link.id for link in github.of_type(LINK)}
        for link in github.of_type(LINK):
            assert link.inputs["location"] == connection.inputs["location"] == "europe-west1"
            assert link.inputs["parentConnection"] == connection.inputs["name"]
        for trigger in github.of_type(TRIGGER):
            assert trigger.inputs["location"] == connection.inputs["location"]
            source = trigger.inputs.get("repositoryEventConfig") or \
                trigger.inputs["sourceToBuild"]  # the Pub/Sub reconcile trigger
            assert source["repository"] in links
            assert "triggerTemplate" not in trigger.inputs

    def test_include_build_logs_is_valid_on_github_triggers_only(
            self, github: Graph, csr: Graph) -> None:
        # Status with logs goes to GitHub for pushes and pull requests; a manual trigger has
        # no commit status to report.
        assert all(t.inputs["includeBuildLogs"] == "INCLUDE_BUILD_LOGS_WITH_STATUS"
                   for t in github.of_type(TRIGGER) if "repositoryEventConfig" in t.inputs)
        assert all("includeBuildLogs" not in t.inputs for t in csr.of_type(TRIGGER))
        assert all("triggerTemplate" in t.inputs or "sourceToBuild" in t.inputs
                   for t in csr.of_type(TRIGGER))

    def test_service_agent_reads_the_token_secret_before_the_connection_exists(
            self, github: Graph) -> None:
        agent = github.one("gcp:projects/serviceIdentity:ServiceIdentity")
        grant = github.one("gcp:secretmanager/secretIamMember:SecretIamMember")
        connection = github.one(CONNECTION)
        assert agent.inputs["service"] == "cloudbuild.googleapis.com"
        assert grant.inputs["member"] == agent.outputs["member"]
        assert grant.inputs["role"] == "roles/secretmanager.secretAccessor"
        assert grant.inputs["secretId"] == "github-oauth-token"
        assert grant.urn in connection.dependencies
        assert connection.inputs["githubConfig"]["authorizerCredential"][
            "oauthTokenSecretVersion"] == \
            "projects/acme-delivery/secrets/github-oauth-token/versions/latest"
        assert connection.inputs["githubConfig"]["appInstallationId"] == 48151623

    def test_cluster_deletion_protection_is_a_config_value(self, graph: Graph,
                                                           switched_off: Graph) -> None:
        assert graph.one(CLUSTER).inputs["deletionProtection"] is True
        assert switched_off.one(CLUSTER).inputs["deletionProtection"] is False


    def test_every_resource_that_needs_an_api_depends_on_it(self, graph: Graph) -> None:
        services = {s.inputs["service"].split(".")[0]: s for s in graph.of_type(SERVICE)}
        assert all(s.inputs["disableOnDestroy"] is False for s in services.values())
        checked = 0
        for resource in graph.resources:
            api = API_OF.get(resource.typ)
            if api is None:
                continue
            assert services[api].urn in graph.depends_on(resource), \
                f"{resource.typ} {resource.name} does not depend on the {api} API"
            checked += 1
        assert checked > 15

    def test_gke_auth_plugin_is_what_the_kubeconfig_runs(self, graph: Graph) -> None:
        kubeconfig = yaml.safe_load(graph.outputs["kubeconfig"])
        user = kubeconfig["users"][0]["user"]["exec"]
        assert user["command"] == "gke-gcloud-auth-plugin"
        assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://34.78.120.15"

    def test_kubeconfig_uses_the_providers_identity(self, graph: Graph) -> None:
        """The plugin runs with the application-default credentials, as Pulumi's Google
        provider does, so the act-as and RBAC grants to gitops:deployer are the ones used."""
        kubeconfig = yaml.safe_load(graph.outputs["kubeconfig"])
        args = kubeconfig["users"][0]["user"]["exec"]["args"]
        assert args == ["--use_application_default_credentials"]
        # The installed plugin knows the flag (it is on this machine, as on the operator's).
        usage = subprocess.run(["gke-gcloud-auth-plugin", "--help"], capture_output=True,
                               text=True, check=False)
        assert "--use_application_default_credentials" in usage.stdout + usage.stderr


class TestLeastPrivilege:
    """No default accounts, no broad roles, grants on the narrowest resource."""

    BROAD = ("roles/owner", "roles/editor", "roles/viewer", "roles/container.developer",
             "roles/container.admin", "roles/iam.serviceAccountAdmin",
             "roles/resourcemanager.projectIamAdmin")

    def grants(self, graph: Graph) -> list[Resource]:
        return [r for r in graph.resources if "member" in r.inputs and "role" in r.inputs]

    def test_no_primitive_or_admin_role(self, graph: Graph) -> None:
        for grant in self.grants(graph):
            role = grant.inputs["role"]
            assert role not in self.BROAD and not role.endswith(".admin"), grant.name

    def test_no_default_service_account(self, graph: Graph) -> None:
        for resource in graph.resources:
            text = str(resource.inputs)
            assert "-compute@developer.gserviceaccount.com" not in text, resource.name
            assert "@cloudbuild.gserviceaccount.com" not in text, resource.name

    def test_registry_write_for_ci_only_read_for_the_others(self, graph: Graph) -> None:
        """Every build identity pulls its step images; nodes pull app images; CI pushes."""
        emails = account_emails(graph)
        registry = graph.one(REGISTRY)
        grants = graph.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
        reader, writer = "roles/artifactregistry.reader", "roles/artifactregistry.writer"
        assert sorted((g.inputs["role"], g.inputs["member"]) for g in grants) == sorted([
            (reader, f"serviceAccount:{emails['delivery-builds']}"),
            (reader, f"serviceAccount:{emails['preview-builds']}"),
            (reader, f"serviceAccount:{emails['reconcile-builds']}"),
            (reader, f"serviceAccount:{emails['nodes']}"),
            (writer, f"serviceAccount:{emails['ci-builds']}"),
        ])
        assert all(g.inputs["repository"] == registry.outputs["name"] for g in grants)
        project_roles = {g.inputs["role"] for g in graph.of_type(PROJECT_IAM)}
        assert not {r for r in project_roles if r.startswith("roles/artifactregistry.")}

    def test_project_roles_per_identity(self, graph: Graph) -> None:
        emails = account_emails(graph)
        by_member: dict[str, set[str]] = {}
        for grant in graph.of_type(PROJECT_IAM):
            by_member.setdefault(grant.inputs["member"], set()).add(grant.inputs["role"])
        assert by_member[f"serviceAccount:{emails['ci-builds']}"] == {"roles/logging.logWriter"}
        assert by_member[f"serviceAccount:{emails['delivery-builds']}"] == {
            "roles/logging.logWriter", "roles/container.clusterViewer"}
        assert by_member[f"serviceAccount:{emails['nodes']}"] == {
            "roles/container.defaultNodeServiceAccount"}
        preview = by_member[f"serviceAccount:{emails['preview-builds']}"]
        assert all(r.endswith(("viewer", "Viewer", "reader", "Reviewer", "logWriter", "browser"))
                   for r in preview), preview

    def test_env_repo_push_access(self, github: Graph, csr: Graph) -> None:
        emails = account_emails(github)
        connection = github.one(CONNECTION)
        grants = github.of_type("gcp:cloudbuildv2/connectionIAMMember:ConnectionIAMMember")
        [reads] = [g for g in grants if g.inputs["role"] == "roles/cloudbuild.readTokenAccessor"]
        assert reads.inputs["member"] == f"serviceAccount:{emails['reconcile-builds']}"
        grants = [g for g in grants if g is not reads]  # reconcile reads, never pushes
        assert sorted(g.inputs["member"] for g in grants) == sorted(
            [f"serviceAccount:{emails[k]}" for k in ("ci-builds", "delivery-builds")] +
            [f"user:{DEPLOYER_EMAIL}"])
        assert {g.inputs["role"] for g in grants} == {"roles/cloudbuild.tokenAccessor"}
        assert {g.inputs["name"] for g in grants} == {connection.inputs["name"]}
        writers = [g for g in csr.of_type("gcp:sourcerepo/repositoryIamMember:RepositoryIamMember")
                   if g.inputs["role"] == "roles/source.writer"]
        assert {g.inputs["repository"] for g in writers} == {"gitops-env"}
        assert sorted(g.inputs["member"] for g in writers) == sorted(
            [f"serviceAccount:{account_emails(csr)[k]}" for k in ("ci-builds", "delivery-builds")]
            + [f"user:{DEPLOYER_EMAIL}"])

    def test_delivery_may_change_its_app_namespaces_only(self, three_apps: Graph) -> None:
        email = account_emails(three_apps)["delivery-builds"]
        bindings = [b for b in three_apps.of_type(
            "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
            if b.name.startswith("deployer-")]
        roles = [r for r in three_apps.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
                 if r.name.startswith("deployer-")]
        assert not [r for r in three_apps.resources if "ClusterRole" in r.typ]
        assert sorted(b.inputs["metadata"]["namespace"] for b in bindings) == \
            ["billing", "hello", "shop"]
        for binding in bindings:
            assert binding.inputs["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io",
                                                   "kind": "User", "name": email}]
            assert binding.inputs["roleRef"]["kind"] == "Role"
        provider = three_apps.one("pulumi:providers:kubernetes")
        for role in roles:
            assert role.provider.startswith(provider.urn)
            groups = {g for rule in role.inputs["rules"] for g in rule["apiGroups"]}
            assert "coordination.k8s.io" in groups  # the delivery lock


class TestClusterModes:
    """Autopilot by default; Standard with a dedicated pool, Workload Identity, GKE_METADATA."""

    def test_autopilot_default(self, github: Graph) -> None:
        cluster = github.one(CLUSTER)
        nodes = account_emails(github)["nodes"]
        assert cluster.inputs["enableAutopilot"] is True
        assert cluster.inputs["releaseChannel"] == {"channel": "REGULAR"}
        assert cluster.inputs["clusterAutoscaling"]["autoProvisioningDefaults"][
            "serviceAccount"] == nodes
        assert not github.of_type(NODE_POOL)

    def test_standard_node_pool(self) -> None:
        graph = program_graph("standard")
        cluster, pool = graph.one(CLUSTER), graph.one(NODE_POOL)
        nodes = account_emails(graph)["nodes"]
        assert "enableAutopilot" not in cluster.inputs
        assert cluster.inputs["removeDefaultNodePool"] is True
        assert cluster.inputs["workloadIdentityConfig"] == {
            "workloadPool": "acme-delivery.svc.id.goog"}
        assert cluster.inputs["nodeConfig"]["serviceAccount"] == nodes
        assert pool.inputs["cluster"] == cluster.outputs["name"]
        assert pool.inputs["nodeCount"] == 2
        assert pool.inputs["nodeConfig"]["serviceAccount"] == nodes
        assert pool.inputs["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}


class TestRepositories:
    """GitHub links or CSR repositories, and env branches created by the program."""

    def test_github_links(self, three_apps: Graph) -> None:
        links = {link.inputs["name"]: link.inputs["remoteUri"]
                 for link in three_apps.of_type(LINK)}
        assert links == {name: f"https://github.com/acme/{name}.git" for name in
                         ["hello", "shop-svc", "billing", "gitops-env", "gitops-infra"]}
        ci_shop = three_apps.named("ci-shop")
        shop_link = next(r for r in three_apps.of_type(LINK) if r.inputs["name"] == "shop-svc")
        assert ci_shop.inputs["repositoryEventConfig"] == {
            "repository": shop_link.id, "push": {"branch": "^main$"}}
        preview = three_apps.named("preview")
        assert preview.inputs["repositoryEventConfig"]["pullRequest"] == {
            "branch": "^main$", "commentControl": "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"}

    def test_csr_repositories_and_triggers(self, csr: Graph) -> None:
        repos = sorted(r.inputs["name"] for r in csr.of_type(CSR_REPO))
        assert repos == ["gitops-env", "gitops-infra", "hello"]
        assert not csr.of_type(CONNECTION)
        templates = {t.name: t.inputs["triggerTemplate"] for t in csr.of_type(TRIGGER)
                     if "triggerTemplate" in t.inputs}  # not the Pub/Sub reconcile trigger
        assert csr.named("reconcile-production").inputs["sourceToBuild"] == {
            "ref": "refs/heads/production", "repoType": "CLOUD_SOURCE_REPOSITORIES",
            "uri": "https://source.developers.google.com/p/acme-delivery/r/gitops-env"}
        assert templates["deliver-hello"] == {"projectId": "acme-delivery",
                                              "repoName": "gitops-env",
                                              "branchName": "^candidate$",
                                              "invertRegex": False}
        assert templates["preview"]["invertRegex"] is True  # CSR: every branch but main
        assert templates["preview"]["branchName"] == "^main$"

    def test_env_branches_created_after_the_repository(self, github: Graph, csr: Graph) -> None:
        for graph in (github, csr):
            command = graph.named("init-env-branches")
            env_url = graph.outputs["env_repo_url"]
            assert command.inputs["create"].endswith(f"--repo {env_url}")
            assert "scripts/init_branches.py" in command.inputs["create"]
            assert command.inputs["triggers"] == [env_url]
            repos = graph.one("gitops:index:SourceRepositories")
            assert repos.urn in graph.depends_on(command)
            for trigger in graph.of_type(TRIGGER):
                assert command.urn in graph.depends_on(trigger)
        assert csr.named("init-env-branches").inputs["environment"][
            "GIT_CONFIG_VALUE_0"] == "gcloud.sh"

    def test_github_branches_use_the_connection_token_not_local_credentials(
            self, github: Graph) -> None:
        """`pulumi up` pushes with the env repo's connection token, granted to the deployer."""
        command = github.named("init-env-branches")
        env_link = next(r for r in github.of_type(LINK) if r.inputs["name"] == "gitops-env")
        assert command.inputs["environment"] == {"GITOPS_GIT_TOKEN_REPOSITORY": env_link.id}
        accessor = github.named("deployer-token-accessor")
        assert (accessor.inputs["role"], accessor.inputs["member"]) == (
            "roles/cloudbuild.tokenAccessor", f"user:{DEPLOYER_EMAIL}")
        assert accessor.urn in github.depends_on(command)
        assert github.named("grants-propagated").urn in github.depends_on(command)


class TestStepsImage:
    """The steps image is built by `pulumi up`, as the CI identity, before any trigger uses it."""

    def test_built_from_scripts_and_tagged_by_content(self, graph: Graph) -> None:
        from components.pipelines import steps_image_tag

        build = graph.named("build-steps-image")
        emails = account_emails(graph)
        bucket = graph.one("gcp:storage/bucket:Bucket")
        image = graph.outputs["steps_image"]
        assert image == f"europe-west1-docker.pkg.dev/acme-delivery/apps/gitops-steps:" \
                        f"{steps_image_tag()}"
        assert build.inputs["triggers"] == [steps_image_tag()]
        submit = next(line for line in build.inputs["create"].splitlines()
                      if "builds submit" in line)
        preview_image = image.replace("/gitops-steps:", "/gitops-preview:")
        assert shlex.split(submit.removeprefix("build=$(").removesuffix(")")) == [
            "gcloud", "builds", "submit", "scripts", "--config=pipelines/steps-image.yaml",
            f"--substitutions=_IMAGE={image},_PREVIEW_IMAGE={preview_image}",
            "--project=acme-delivery", "--region=europe-west1",
            f"--service-account=projects/acme-delivery/serviceAccounts/{emails['ci-builds']}",
            f"--gcs-source-staging-dir=gs://{bucket.inputs['name']}/source",
            "--async", "--format=value(id)"]
        reader = graph.named("builder-reads-sources")
        assert (reader.inputs["bucket"], reader.inputs["role"], reader.inputs["member"]) == (
            bucket.inputs["name"], "roles/storage.objectViewer",
            f"serviceAccount:{emails['ci-builds']}")
        for trigger in graph.of_type(TRIGGER):
            if "_STEPS_IMAGE" in trigger.inputs["substitutions"]:
                assert trigger.inputs["substitutions"]["_STEPS_IMAGE"] == image
                assert build.urn in graph.depends_on(trigger)

    def test_tag_changes_with_any_script(self, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        from components import pipelines

        (tmp_path / "a.py").write_text("print(1)\n")
        monkeypatch.setattr(pipelines, "SCRIPTS", tmp_path)
        first = pipelines.steps_image_tag()
        (tmp_path / "a.py").write_text("print(2)\n")
        assert pipelines.steps_image_tag() != first


class TestStateAccess:
    """The preview identity can read the state and decrypt its secrets, and change nothing."""

    def test_gcs_backend_with_kms(self, github: Graph) -> None:
        preview = f"serviceAccount:{account_emails(github)['preview-builds']}"
        bucket = github.named("preview-reads-state")
        key = github.named("preview-decrypts-secrets")
        assert (bucket.inputs["bucket"], bucket.inputs["role"], bucket.inputs["member"]) == (
            "acme-delivery-pulumi-state", "roles/storage.objectViewer", preview)
        assert (key.inputs["cryptoKeyId"], key.inputs["role"], key.inputs["member"]) == (
            "projects/acme-delivery/locations/europe-west1/keyRings/pulumi/cryptoKeys/state",
            "roles/cloudkms.cryptoKeyDecrypter", preview)
        trigger = github.named("preview")
        assert trigger.inputs["filename"] == "pipelines/preview.yaml"
        assert trigger.inputs["substitutions"] == {
            "_STACK": "dev", "_STATE_BACKEND": "gs://acme-delivery-pulumi-state",
            "_PREVIEW_IMAGE": github.outputs["steps_image"].replace("/gitops-steps:",
                                                                    "/gitops-preview:")}

    def test_pulumi_cloud_token_from_secret_manager(self) -> None:
        graph = program_graph("pulumi-cloud")
        preview = f"serviceAccount:{account_emails(graph)['preview-builds']}"
        grant = graph.named("preview-reads-pulumi-token")
        assert (grant.inputs["secretId"], grant.inputs["role"], grant.inputs["member"]) == (
            "pulumi-token", "roles/secretmanager.secretAccessor", preview)
        trigger = graph.named("preview")
        assert trigger.inputs["filename"] == "pipelines/preview-pulumi-cloud.yaml"
        assert trigger.inputs["substitutions"]["_PULUMI_TOKEN_SECRET"] == \
            "projects/acme-delivery/secrets/pulumi-token/versions/latest"
        assert not graph.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
        pipeline = yaml.safe_load((ROOT / trigger.inputs["filename"]).read_text())
        assert pipeline["availableSecrets"]["secretManager"] == [
            {"versionName": "${_PULUMI_TOKEN_SECRET}", "env": "PULUMI_ACCESS_TOKEN"}]
        preview_step = next(s for s in pipeline["steps"] if s["id"] == "preview")
        assert preview_step["secretEnv"] == ["PULUMI_ACCESS_TOKEN"]
        assert "PULUMI_ACCESS_TOKEN" not in " ".join(preview_step["args"])

    def test_preview_identity_writes_nothing(self, graph: Graph) -> None:
        """Apart from its own build logs."""
        preview = f"serviceAccount:{account_emails(graph)['preview-builds']}"
        roles = {g.inputs["role"] for g in graph.resources
                 if g.inputs.get("member") == preview} - {"roles/logging.logWriter"}
        writing = [r for r in roles if re.search(r"admin|editor|writer|owner|developer|user$",
                                                  r, re.I)]
        assert not writing, writing


BAD_CONFIGS = [
    ({"gcp:project": None}, "missing config gcp:project",
     "pulumi config set gcp:project"),
    ({"gcp:project": "9acme-delivery"}, "config gcp:project '9acme-delivery' is not a project "
     "id", "pulumi config set gcp:project my-project-id"),
    ({"gcp:region": None}, "missing config gcp:region", "pulumi config set gcp:region"),
    ({"gitops:deployer": None}, "missing config gitops:deployer",
     "pulumi config set gitops:deployer user:you@example.com"),
    ({"gitops:deployer": "platform-admin@acme.example"}, "is not an IAM member",
     "pulumi config set gitops:deployer"),
    ({"gitops:apps": ["hello", "Bad_Name"]}, "config gitops:apps[1] 'Bad_Name' is not a DNS",
     "pulumi config set --path 'gitops:apps[1]'"),
    ({"gitops:apps": ["hello", "hello"]}, "names app 'hello' twice", ""),
    ({"gitops:apps": ["a" * 57]}, "its trigger deliver-" + "a" * 57 + " would have 65 "
     "characters, Cloud Build allows 64", "pulumi config set --path 'gitops:apps[0].name'"),
    ({"gitops:apps": [{"name": "shop", "repo": ".shop"}]}, "gitops:apps[0].repo '.shop' is not "
     "a repository name", "pulumi config set --path 'gitops:apps[0].repo' shop"),
    ({"gitops:apps": [{"name": "shop", "customResources": [
        {"group": "rbac.authorization.k8s.io", "resources": ["roles"]}]}]},
     "gitops:apps[0].customResources[0].group 'rbac.authorization.k8s.io' is served by "
     "Kubernetes itself", "pulumi config set --path 'gitops:apps[0].customResources[0].group'"),
    ({"gitops:apps": [{"name": "shop", "customResources": [{"group": "monitoring",
                                                             "resources": ["podmonitorings"]}]}]},
     "customResources[0].group 'monitoring' is not a custom resource API group", ""),
    ({"gitops:apps": [{"name": "shop", "customResources": [
        {"group": "monitoring.googleapis.com", "resources": ["*"]}]}]},
     "customResources[0].resources ['*'] must list resource names",
     "pulumi config set --path 'gitops:apps[0].customResources[0].resources[0]'"),
    ({"gitops:apps": [{"name": "shop", "customResources": {"group": "ray.io"}}]},
     "config gitops:apps[0].customResources must be a list", ""),
    ({"gitops:envRepo": "env repo"}, "config gitops:envRepo 'env repo' is not a repository",
     "pulumi config set gitops:envRepo gitops-env"),
    ({"gitops:infraRepo": "hello"}, "repository 'hello' is named twice", ""),
    ({"gitops:sourceProvider": "gitlab"}, "config gitops:sourceProvider must be one of github, csr",
     "pulumi config set gitops:sourceProvider github"),
    ({"gitops:githubAppInstallationId": None}, "missing config gitops:githubAppInstallationId",
     "pulumi config set gitops:githubAppInstallationId"),
    ({"gitops:githubTokenSecret": None}, "missing config gitops:githubTokenSecret",
     "pulumi config set gitops:githubTokenSecret"),
    ({"gitops:clusterMode": "serverless"}, "config gitops:clusterMode must be one of "
     "autopilot, standard", "pulumi config set gitops:clusterMode autopilot"),
    ({"gitops:clusterName": "1gitops"}, "config gitops:clusterName '1gitops' is not a GKE "
     "cluster name", "pulumi config set gitops:clusterName gitops"),
    ({"gitops:clusterName": "g" * 41}, "is not a GKE cluster name", ""),
    ({"gitops:registryName": "1apps"}, "config gitops:registryName '1apps' is not an Artifact "
     "Registry repository id", "pulumi config set gitops:registryName apps"),
    ({"gitops:network": "shared-vpc"}, "gitops:network and gitops:subnetwork go together",
     "pulumi config set gitops:subnetwork"),
    ({"gitops:podsRange": "Pods"}, "config gitops:podsRange 'Pods' is not a secondary range",
     "pulumi config set gitops:podsRange pods"),
    ({"gitops:deletionProtection": "maybe"}, "must be true or false", ""),
    ({"gitops:imageRetentionDays": "0"}, "config gitops:imageRetentionDays must be at least 1",
     "pulumi config set gitops:imageRetentionDays 90"),
    ({"gitops:rolloutTimeout": "5m"}, "must be seconds like 300s", ""),
    ({"gitops:stateBackend": "s3://bucket"}, "config gitops:stateBackend must be gs://BUCKET",
     "pulumi config set gitops:stateBackend gs://acme-delivery-pulumi-state"),
    ({"gitops:stateBackend": "https://api.pulumi.com"}, "missing config gitops:pulumiTokenSecret",
     "pulumi config set gitops:pulumiTokenSecret"),
]


class TestConfigValidation:
    """Each bad value fails the run with Google's rule and its fix, and registers nothing."""

    @pytest.mark.parametrize("override,message,fix", BAD_CONFIGS)
    def test_bad_config(self, override: dict, message: str, fix: str) -> None:
        graph = Graph()
        with pytest.raises(Exception) as caught:
            run_program(base_config(**override), graph=graph)
        text = str(caught.value)
        assert message in text and fix in text, text
        assert "\n" not in text  # one problem, one line
        assert graph.resources == []

    def test_every_bad_key_in_one_message(self) -> None:
        graph = Graph()
        with pytest.raises(Exception) as caught:
            run_program(base_config(**{"gcp:project": "Acme", "gitops:deployer": None,
                                       "gitops:registryName": "9apps",
                                       "gitops:apps": ["x" * 60]}), graph=graph)
        lines = str(caught.value).splitlines()
        assert lines[0].endswith("4 stack config problems:"), lines
        keys = ["gcp:project", "gitops:deployer", "gitops:apps[0]", "gitops:registryName"]
        assert len(lines) == 5 and all(line.startswith("- ") for line in lines[1:])
        for key, line in zip(keys, lines[1:], strict=True):
            assert key in line and "pulumi config set" in line, line
        assert graph.resources == []

    @pytest.mark.parametrize("length", [1, 5, 23, 24, 25, 29, 30, 39, 40])
    def test_node_account_id_follows_googles_rule_for_every_cluster_name(
            self, length: int) -> None:
        from components.config import ACCOUNT_ID, node_account_id

        for name in ("g" * length, ("g" * 23 + "-" * 17)[:length].rstrip("-") or "g"):
            assert ACCOUNT_ID.match(node_account_id(name)), (name, node_account_id(name))

    def test_node_account_id_is_derived_from_the_cluster_name(self, github: Graph) -> None:
        nodes = github.named("nodes")
        assert nodes.inputs["accountId"] == "gitops-nodes"
        long_name = run_program(base_config(**{"gitops:clusterName": "platform-delivery-"
                                                                      "cluster-europe"}))
        assert long_name.named("nodes").inputs["accountId"] == "platform-delivery-cluste-nodes"

    def test_csr_needs_no_github_keys(self, csr: Graph) -> None:
        """A CSR stack without any GitHub key links nothing to GitHub."""
        assert "gitops:githubOwner" not in CONFIGS["csr"]
        assert not csr.of_type(CONNECTION) and not csr.of_type(LINK)
        assert not csr.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        assert all(url.startswith("https://source.developers.google.com/p/acme-delivery/r/")
                   for url in [csr.outputs["env_repo_url"], csr.outputs["infra_repo_url"],
                               *csr.outputs["app_repo_urls"].values()])


def graph_shape(graph: Graph) -> list[tuple]:
    """Everything a plan compares: type, name, inputs, parent, dependencies, provider."""
    return sorted((r.typ, r.name, repr(sorted(r.inputs.items())), r.parent,
                   tuple(sorted(r.dependencies)), r.provider) for r in graph.resources)


class TestSameGraphWhoeverRunsIt:
    """A preview build or a second operator plans exactly what the deployer's `up` made."""

    def test_two_callers_register_identical_graphs(self, github: Graph) -> None:
        preview = run_program(CONFIGS["github"],
                              caller="preview-builds@acme-delivery.iam.gserviceaccount.com")
        colleague = run_program(CONFIGS["github"], caller="someone-else@acme.example")
        assert graph_shape(preview) == graph_shape(colleague) == graph_shape(github)
        assert USER_INFO not in github.calls + preview.calls + colleague.calls

    def test_act_as_goes_to_the_configured_deployer(self) -> None:
        ops = "serviceAccount:ops-deployer@acme-ops.iam.gserviceaccount.com"
        graph = run_program(base_config(**{"gitops:deployer": ops}), caller="anyone@acme.example")
        act_as = graph.of_type("gcp:serviceaccount/iAMMember:IAMMember")
        assert len(act_as) == 4 and {g.inputs["member"] for g in act_as} == {ops}


class TestNetwork:
    """The cluster is VPC-native on the stack's own subnet, or on one named in config."""

    def test_created_vpc_and_subnet_with_secondary_ranges(self, graph: Graph) -> None:
        vpc = graph.one("gcp:compute/network:Network")
        subnet = graph.one("gcp:compute/subnetwork:Subnetwork")
        cluster = graph.one(CLUSTER)
        assert vpc.inputs["autoCreateSubnetworks"] is False
        assert (subnet.inputs["network"], subnet.inputs["region"]) == (vpc.id, "europe-west1")
        assert subnet.inputs["privateIpGoogleAccess"] is True
        assert subnet.inputs["secondaryIpRanges"] == [
            {"rangeName": "pods", "ipCidrRange": "10.4.0.0/14"},
            {"rangeName": "services", "ipCidrRange": "10.8.0.0/20"}]
        assert (cluster.inputs["network"], cluster.inputs["subnetwork"]) == (vpc.id, subnet.id)
        assert cluster.inputs["ipAllocationPolicy"] == {
            "clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"}
        assert "default" not in (cluster.inputs["network"], cluster.inputs["subnetwork"])

    def test_existing_network_by_config(self) -> None:
        graph = run_program(base_config(**{
            "gitops:network": "projects/acme-net/global/networks/shared",
            "gitops:subnetwork": "projects/acme-net/regions/europe-west1/subnetworks/gke",
            "gitops:podsRange": "gke-pods", "gitops:servicesRange": "gke-services"}))
        cluster = graph.one(CLUSTER)
        assert not graph.of_type("gcp:compute/network:Network")
        assert not graph.of_type("gcp:compute/subnetwork:Subnetwork")
        assert cluster.inputs["network"] == "projects/acme-net/global/networks/shared"
        assert cluster.inputs["subnetwork"] == \
            "projects/acme-net/regions/europe-west1/subnetworks/gke"
        assert cluster.inputs["ipAllocationPolicy"] == {
            "clusterSecondaryRangeName": "gke-pods",
            "servicesSecondaryRangeName": "gke-services"}


class TestRegistryCleanup:
    """Old versions go whether tagged or not; the newest N of each image always stay."""

    def test_policies_in_days(self, github: Graph) -> None:
        policies = {p["id"]: p for p in github.one(REGISTRY).inputs["cleanupPolicies"]}
        assert policies == {
            "delete-old": {"id": "delete-old", "action": "DELETE",
                           "condition": {"tagState": "ANY", "olderThan": "7776000s"}},
            "delete-old-untagged": {"id": "delete-old-untagged", "action": "DELETE",
                                    "condition": {"tagState": "UNTAGGED",
                                                  "olderThan": "1209600s"}},
            "keep-newest": {"id": "keep-newest", "action": "KEEP",
                            "mostRecentVersions": {"keepCount": 10}},
        }
        assert github.one(REGISTRY).inputs["cleanupPolicyDryRun"] is False

    def test_configured_ages_and_count(self) -> None:
        graph = run_program(base_config(**{"gitops:imageRetentionDays": "30",
                                           "gitops:untaggedRetentionDays": "2",
                                           "gitops:keepImages": "25"}))
        policies = {p["id"]: p for p in graph.one(REGISTRY).inputs["cleanupPolicies"]}
        assert policies["delete-old"]["condition"]["olderThan"] == "2592000s"  # 30 * 86400
        assert policies["delete-old-untagged"]["condition"]["olderThan"] == "172800s"
        assert policies["keep-newest"]["mostRecentVersions"] == {"keepCount": 25}


class TestOrderAndPropagation:
    """Nothing uses a grant before the grant exists and Google's propagation time has passed."""

    def grants(self, graph: Graph) -> list[Resource]:
        return [r for r in graph.resources if "member" in r.inputs and "role" in r.inputs]

    def test_one_wait_follows_every_grant(self, graph: Graph) -> None:
        sleep = graph.named("grants-propagated")
        assert sleep.typ == "time:index/sleep:Sleep"
        assert sleep.inputs["createDuration"] == "120s"
        before = graph.depends_on(sleep)
        # Waited for inside its component: StepsImage's.
        inside = {"builder-reads-sources"}
        late = [g.name for g in self.grants(graph) if g.urn not in before and
                g.name not in inside]
        assert late == []
        assert sorted(sleep.inputs["triggers"].values()) == sorted(
            g.id for g in self.grants(graph) if g.name not in inside)

    def test_users_of_grants_wait(self, graph: Graph) -> None:
        sleep = graph.named("grants-propagated")
        users = [*graph.of_type(TRIGGER), graph.named("build-steps-image"),
                 graph.named("init-env-branches")]
        for user in users:
            assert sleep.urn in graph.depends_on(user), user.name
        build = graph.named("build-steps-image")
        sources_wait = graph.named("builder-reads-sources-propagation")
        assert graph.named("builder-reads-sources").urn in graph.depends_on(sources_wait)
        assert sources_wait.urn in graph.depends_on(build)

    def test_each_trigger_waits_for_the_act_as_grant_on_its_identity(self, graph: Graph) -> None:
        act_as = {g.inputs["serviceAccountId"]: g for g in
                  graph.of_type("gcp:serviceaccount/iAMMember:IAMMember")
                  if g.inputs["member"] == f"user:{DEPLOYER_EMAIL}"}
        for trigger in graph.of_type(TRIGGER):
            grant = act_as[trigger.inputs["serviceAccount"]]
            assert grant.urn in graph.depends_on(trigger), trigger.name
            member = f"serviceAccount:{trigger.inputs['serviceAccount'].rsplit('/', 1)[1]}"
            for role in (g for g in graph.of_type(PROJECT_IAM) if g.inputs["member"] == member):
                assert role.urn in graph.depends_on(trigger), (trigger.name, role.name)

    def test_connection_waits_for_the_agents_secret_grant(self, github: Graph) -> None:
        connection = github.one(CONNECTION)
        grant = github.one("gcp:secretmanager/secretIamMember:SecretIamMember")
        wait = github.named("github-token-grant-propagation")
        assert grant.urn in github.depends_on(wait)
        assert wait.urn in connection.dependencies
        assert wait.inputs["createDuration"] == "120s"

    def test_wait_is_configurable(self) -> None:
        graph = run_program(base_config(**{"gitops:iamPropagationSeconds": "420"}))
        assert {s.inputs["createDuration"] for s in graph.of_type("time:index/sleep:Sleep")} == \
            {"420s"}


class TestKubernetesProvider:
    """The provider keeps unreachable-cluster handling to the operator (docs/operations.md)."""

    def test_delete_unreachable_left_to_the_environment(self, graph: Graph) -> None:
        provider = graph.one("pulumi:providers:kubernetes")
        # Set here (even to false), it would override PULUMI_K8S_DELETE_UNREACHABLE, the
        # documented one-off switch for a cluster that is gone.
        assert "deleteUnreachable" not in provider.inputs
        assert "skipUpdateUnreachable" not in provider.inputs
