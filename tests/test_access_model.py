"""The access model: every operation a build, a node or the deployer performs is granted.

Operations come from the pipelines, the step scripts and the app's manifests (see
access_model.py); grants from the resource graph under mocks; roles are expanded with Google's
role data (a snapshot, tests/data/README.md). Mocks cannot prove that Google enforces these
permissions as documented: only a real build can.
"""

from __future__ import annotations

import copy
import re

import pytest

from access_model import (
    GOOGLE_GRANT,
    SERVICE_AGENT_ROLES,
    KubeOperation,
    Operation,
    covers,
    grants,
    kube_operations,
    manifest_kinds,
    missing,
    operations,
    permissions_of,
    rbac_allows,
    role_permissions,
    unknown_script_calls,
)
from components.config import parse_config
from pulumi_harness import CONFIGS, TRIGGER, Graph, pipeline_of, program_graph

EMAIL = "{}@acme-delivery.iam.gserviceaccount.com"
CI, DELIVERY, PREVIEW, NODES = (f"serviceAccount:{EMAIL.format(a)}" for a in
                                ("gitops-ci", "gitops-delivery", "gitops-preview",
                                 "gitops-nodes"))
STEPS_REPO = "projects/acme-delivery/locations/europe-west1/repositories/apps"
BUILDS_CREATE = "cloudbuild.builds.create"
# Grants no current pipeline needs, kept on purpose (their permissions are read-only, which
# TestPreviewChangesNothing checks): the preview identity's read-only project views let
# `pulumi preview --refresh` read what the stack manages, and its registry read lets a preview
# step run in an image of this registry.
KEPT_WITHOUT_AN_OPERATION = {
    "preview-browser", "preview-iam-securityReviewer", "preview-iam-serviceAccountViewer",
    "preview-serviceusage-serviceUsageViewer", "preview-cloudbuild-builds-viewer",
    "preview-cloudbuild-connectionViewer", "preview-secretmanager-viewer",
    "images-reader-preview",
}


def config_of(kind: str):  # type: ignore[no-untyped-def]
    return parse_config(CONFIGS[kind])


@pytest.fixture(scope="module", params=list(CONFIGS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def report(ops: list[Operation]) -> str:
    return "\n".join(f"{op.member} lacks {op.permission} on {op.resource} ({op.why})"
                     for op in ops)


class TestDerivation:
    """The operations are read from the code, and everything found can be translated."""

    def test_scripts_hold_nothing_the_model_cannot_translate(self) -> None:
        assert unknown_script_calls() == []

    def test_operations_found_in_pipelines_scripts_and_commands(self) -> None:
        derived = operations(program_graph("github"), config_of("github"))
        found = {(op.member, op.permission, op.resource) for op in derived.operations}
        link = "projects/acme-delivery/locations/europe-west1/connections/github/repositories/"
        for expected in [
            (DELIVERY, "artifactregistry.repositories.downloadArtifacts", STEPS_REPO),
            (CI, "artifactregistry.repositories.uploadArtifacts", STEPS_REPO),
            (CI, "artifactregistry.repositories.downloadArtifacts", STEPS_REPO),
            (DELIVERY, "container.clusters.get",
             "projects/acme-delivery/locations/europe-west1/clusters/gitops"),
            (DELIVERY, "cloudbuild.repositories.accessReadWriteToken", link + "gitops-env"),
            (CI, "cloudbuild.repositories.accessReadWriteToken", link + "gitops-env"),
            (PREVIEW, "storage.objects.get", "buckets/acme-delivery-pulumi-state"),
            (PREVIEW, "cloudkms.cryptoKeyVersions.useToDecrypt",
             "projects/acme-delivery/locations/europe-west1/keyRings/pulumi/cryptoKeys/state"),
            (NODES, "artifactregistry.repositories.downloadArtifacts", STEPS_REPO),
            ("user:platform-admin@acme.example", "cloudbuild.repositories.accessReadWriteToken",
             link + "gitops-env"),
            ("user:platform-admin@acme.example", "iam.serviceAccounts.actAs",
             f"projects/acme-delivery/serviceAccounts/{EMAIL.format('gitops-delivery')}"),
            (CI, "storage.objects.get", "buckets/acme-delivery-gitops-build-sources"),
            # The preview runs in the project's preview image (gcloud, auth plugin, Pulumi CLI).
            (PREVIEW, "artifactregistry.repositories.downloadArtifacts", STEPS_REPO),
        ]:
            assert expected in found, expected

    def test_csr_operations(self) -> None:
        derived = operations(program_graph("csr"), config_of("csr"))
        found = {(op.member, op.permission, op.resource) for op in derived.operations}
        for expected in [
            (CI, "source.repos.update", "projects/acme-delivery/repos/gitops-env"),
            (DELIVERY, "source.repos.update", "projects/acme-delivery/repos/gitops-env"),
            (CI, "source.repos.get", "projects/acme-delivery/repos/hello"),
            (PREVIEW, "source.repos.get", "projects/acme-delivery/repos/gitops-infra"),
            ("user:platform-admin@acme.example", "source.repos.update",
             "projects/acme-delivery/repos/gitops-env"),
        ]:
            assert expected in found, expected
        assert not [op for op in derived.operations if "accessReadWriteToken" in op.permission]

    def test_every_registry_step_image_in_the_pipelines_is_an_operation(self) -> None:
        """Cross-check with the YAML: each step `name:` of the registry is pulled by its
        trigger's identity."""
        graph = program_graph("github")
        derived = operations(graph, config_of("github"))
        for trigger in graph.of_type(TRIGGER):
            subs: dict[str, str] = trigger.inputs["substitutions"]
            for step in pipeline_of(trigger)["steps"]:
                image = re.sub(r"\$\{(\w+)\}", lambda m, s=subs: s.get(m[1], m[0]),
                               step["name"])
                if "-docker.pkg.dev/" in image:
                    member = "serviceAccount:" + trigger.inputs["serviceAccount"].split("/")[-1]
                    assert Operation(member, "artifactregistry.repositories.downloadArtifacts",
                                     STEPS_REPO, f"trigger {trigger.name}: step "
                                     f"{step.get('id')} runs in {image}") in derived.operations

    def test_delivery_kubectl_verbs_cover_every_kind_of_the_app(self) -> None:
        """Both sample apps' kinds (the shop's kustomize overlays hydrated), each with the verbs
        of apply, rollout status and pruning."""
        derived = operations(program_graph("github"), config_of("github"))
        found = {(k.resource, k.verb) for k in derived.kube}
        assert set(manifest_kinds()) == {
            ("apps", "Deployment"), ("", "Service"), ("autoscaling", "HorizontalPodAutoscaler"),
            ("", "ConfigMap"), ("", "ServiceAccount"), ("policy", "PodDisruptionBudget"),
            ("networking.k8s.io", "Ingress"), ("networking.k8s.io", "NetworkPolicy")}
        for needed in [("deployments", "patch"), ("deployments", "create"),
                       ("horizontalpodautoscalers", "patch"), ("configmaps", "create"),
                       ("deployments", "watch"), ("services", "patch"), ("leases", "create"),
                       ("leases", "update"), ("leases", "delete"), ("leases", "get"),
                       ("configmaps", "delete"), ("poddisruptionbudgets", "get"),
                       ("networkpolicies", "delete"), ("ingresses", "patch")]:
            assert needed in found, needed


# The namespaced kinds a typical app holds (the delivery Role covers them all).
TYPICAL_KINDS = [
    ("", "ConfigMap"), ("", "Secret"), ("", "ServiceAccount"), ("", "Service"),
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("batch", "Job"),
    ("batch", "CronJob"), ("networking.k8s.io", "Ingress"),
    ("autoscaling", "HorizontalPodAutoscaler"), ("policy", "PodDisruptionBudget"),
    ("networking.k8s.io", "NetworkPolicy"), ("", "PersistentVolumeClaim")]


class TestDeliveryRole:
    """The delivery Role lets deploy.py apply, watch and prune what apps hold, in the app's own
    namespace, and grants nothing that would let it escalate (docs/architecture.md)."""

    def test_typical_kinds_and_the_app_s_custom_resources(self) -> None:
        graph = program_graph("three-apps")
        kube = [op for app in ("hello", "shop", "billing")
                for op in kube_operations(DELIVERY, "deploy", app, "typical app",
                                          kinds=TYPICAL_KINDS)]
        assert {op.verb for op in kube if op.resource != "leases"} == {
            "get", "create", "patch", "delete", "list", "watch"}
        assert [op for op in kube if not rbac_allows(graph, op)] == []
        custom = [("monitoring.googleapis.com", "PodMonitoring")]
        shop, hello = ([op for op in kube_operations(DELIVERY, "deploy", app, "config",
                                                     kinds=custom)
                        if op.resource == "podmonitorings"] for app in ("shop", "hello"))
        assert {op.verb for op in shop} == {"get", "create", "patch", "delete"}
        assert all(rbac_allows(graph, op) for op in shop)
        assert hello and not any(rbac_allows(graph, op) for op in hello)

    @pytest.mark.parametrize("group,resource,verb", [
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
        ("", "pods/exec", "create"), ("", "pods/attach", "create"),
        ("", "pods/portforward", "create"), ("", "serviceaccounts/token", "create"),
        ("", "serviceaccounts", "impersonate"), ("", "secrets", "list"),
        ("", "secrets", "watch"), ("", "namespaces", "create"), ("", "pods", "create"),
        ("", "configmaps", "deletecollection"),
    ])
    def test_nothing_to_escalate_with(self, group: str, resource: str, verb: str) -> None:
        graph = program_graph("three-apps")
        for app in ("hello", "shop", "billing"):
            assert not rbac_allows(graph, KubeOperation(DELIVERY.split(":")[1], app, group,
                                                        resource, verb, "escalation"))

    def test_prune_verb_removed_from_the_role_fails(self) -> None:
        graph = copy.deepcopy(program_graph("github"))
        for role in graph.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role"):
            for rule in role.inputs["rules"]:
                if "configmaps" in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != "delete"]
        kube = operations(graph, config_of("github")).kube
        denied = {(k.resource, k.verb) for k in kube if not rbac_allows(graph, k)}
        assert ("configmaps", "delete") in denied
        assert {resource for resource, _ in denied} <= {
            "configmaps", "secrets", "serviceaccounts", "services", "persistentvolumeclaims"}


class TestEveryOperationIsGranted:
    """Each identity's roles, on the resources they are granted on, allow what it does."""

    def test_google_cloud_operations(self, kind: str) -> None:
        graph = program_graph(kind)
        lacking = missing(operations(graph, config_of(kind)).operations, grants(graph))
        assert lacking == [], report(lacking)

    def test_kubernetes_operations(self, kind: str) -> None:
        graph = program_graph(kind)
        kube = operations(graph, config_of(kind)).kube
        assert kube and {k.namespace for k in kube} == {
            a.name for a in config_of(kind).apps}
        denied = [k for k in kube if not rbac_allows(graph, k)]
        assert denied == [], denied

    def test_every_granted_role_is_vendored(self, kind: str) -> None:
        for grant in grants(program_graph(kind)):
            assert permissions_of(grant.role), grant.role


class TestRemovingAGrantFails:
    """Every grant is needed by a derived operation, except the few kept on purpose."""

    def test_each_needed_grant_is_detected(self, kind: str) -> None:
        graph = program_graph(kind)
        ops = operations(graph, config_of(kind)).operations
        granted = grants(graph)
        unneeded = {g.name for g in granted
                    if not missing(ops, [other for other in granted if other != g])}
        assert unneeded <= KEPT_WITHOUT_AN_OPERATION, unneeded - KEPT_WITHOUT_AN_OPERATION

    def test_delivery_without_registry_read_cannot_pull_its_steps_image(self) -> None:
        graph = program_graph("github")
        granted = [g for g in grants(graph) if g.name != "images-reader-delivery"]
        lacking = missing(operations(graph, config_of("github")).operations, granted)
        assert {(op.member, op.permission) for op in lacking} == {
            (DELIVERY, "artifactregistry.repositories.downloadArtifacts")}

    def test_deployment_verbs_removed_from_the_role_fail(self) -> None:
        graph = copy.deepcopy(program_graph("github"))
        for role in graph.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role"):
            for rule in role.inputs["rules"]:
                if "deployments" in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v not in ("update", "patch")]
        kube = operations(graph, config_of("github")).kube
        denied = {(k.resource, k.verb) for k in kube if not rbac_allows(graph, k)}
        assert denied == {("deployments", "patch")}


class TestStepImages:
    """A step image its identity cannot pull fails the model."""

    def with_step(self, graph: Graph, trigger_name: str, image: str) -> Graph:
        changed = copy.deepcopy(graph)
        trigger = changed.named(trigger_name)
        trigger.inputs["build"]["steps"].append({"id": "extra", "name": image})
        return changed

    def test_image_from_another_repository_is_refused(self) -> None:
        graph = self.with_step(program_graph("github"), "deliver-hello",
                               "europe-west1-docker.pkg.dev/acme-delivery/tools/kubeval:1")
        lacking = missing(operations(graph, config_of("github")).operations, grants(graph))
        assert [(op.member, op.resource) for op in lacking] == [
            (DELIVERY, "projects/acme-delivery/locations/europe-west1/repositories/tools")]

    def test_image_of_an_unknown_registry_is_refused(self) -> None:
        graph = self.with_step(program_graph("github"), "deliver-hello", "quay.io/acme/tool:1")
        with pytest.raises(ValueError, match=re.escape("quay.io/acme/tool:1")):
            operations(graph, config_of("github"))

    def test_public_and_own_registry_images_are_pulled(self) -> None:
        for image in ("gcr.io/cloud-builders/kubectl", "python:3.12-slim",
                      "europe-west1-docker.pkg.dev/acme-delivery/apps/gitops-steps:tag"):
            graph = self.with_step(program_graph("github"), "deliver-hello", image)
            assert missing(operations(graph, config_of("github")).operations,
                           grants(graph)) == []


class TestNoIdentityOfOursStartsBuilds:
    """No grant of the program lets any member create a build (with `builds.create` one could
    start any build, as the project's default Cloud Build account if it names none). A
    reconcile starts from a tick on its environment's topic, which the program lets no one
    publish to: Cloud Scheduler's service agent publishes by Google's own grant, and Cloud
    Build's service agent turns the tick into that trigger's fixed build."""

    def test_no_member_is_granted_builds_create(self, kind: str) -> None:
        ours = [g for g in grants(program_graph(kind)) if not g.name.startswith(GOOGLE_GRANT)]
        assert ours and not [g for g in ours if BUILDS_CREATE in permissions_of(g.role)]
        # Google's agent is the one that does create them.
        assert BUILDS_CREATE in permissions_of(SERVICE_AGENT_ROLES["cloudbuild"])

    def test_only_google_agents_may_publish_ticks(self, kind: str) -> None:
        graph = program_graph(kind)
        topics = {t.inputs["pubsubConfig"]["topic"] for t in graph.of_type(TRIGGER)
                  if "pubsubConfig" in t.inputs}
        assert topics == {j.inputs["pubsubTarget"]["topicName"]
                          for j in graph.of_type("gcp:cloudscheduler/job:Job")}
        for topic in topics:
            publishers = {g.name for g in grants(graph) if covers(g.resource, topic)
                          and "pubsub.topics.publish" in permissions_of(g.role)}
            assert publishers == {f"{GOOGLE_GRANT}cloudscheduler-service-agent",
                                  f"{GOOGLE_GRANT}cloudbuild-service-agent"}, topic


# Permission verbs that change something. The preview identity runs pull-request code.
WRITES = re.compile(r"^(create|update|patch|delete|undelete|set.*|upload.*|actAs|sign.*|"
                    r"getAccessToken|getOpenIdToken|implicitDelegation|import.*|run.*|"
                    r"accessReadWriteToken|accessReadToken|cancel|approve)$")
PREVIEW_MAY_WRITE = {"logging.logEntries.create",  # its own build log
                     "container.tokenReviews.create"}  # asks who a token belongs to


class TestPreviewChangesNothing:
    """The preview identity's permissions are read-only (by Google's role data), and it has
    no Kubernetes binding: a dry run that would need a write verb is refused and the provider
    previews client-side (cluster_access.py)."""

    def test_read_only_permissions(self, kind: str) -> None:
        graph = program_graph(kind)
        permissions = {p for g in grants(graph) if g.member == PREVIEW
                       for p in permissions_of(g.role)}
        writes = sorted(p for p in permissions if WRITES.match(p.rsplit(".", 1)[-1])
                        and p not in PREVIEW_MAY_WRITE)
        assert writes == []

    def test_no_kubernetes_binding(self, kind: str) -> None:
        graph = program_graph(kind)
        for app in config_of(kind).apps:
            for verb in ("create", "patch", "update"):
                for resource, group in (("namespaces", ""), ("roles", "rbac.authorization.k8s.io"),
                                        ("rolebindings", "rbac.authorization.k8s.io")):
                    assert not rbac_allows(graph, KubeOperation(
                        PREVIEW.split(":")[1], app.name, group, resource, verb, "dry run"))

    def test_role_data_is_a_snapshot_of_predefined_roles(self) -> None:
        roles = role_permissions()
        assert "iam.serviceAccounts.actAs" in roles["roles/iam.serviceAccountUser"]
        assert "artifactregistry.repositories.downloadArtifacts" in \
            roles["roles/artifactregistry.reader"]
        assert "artifactregistry.repositories.uploadArtifacts" not in \
            roles["roles/artifactregistry.reader"]
