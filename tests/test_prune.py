"""Prune: the namespace holds exactly the objects of the tree delivered last, and only objects
the delivery applied are ever deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    ScriptedCluster,
    image_ref,
    write_manifests,
)
from fake_api import Objects
from gitops.deploy import DeliveryRequest, DeployResult, deliver
from gitops.errors import OperationFailed
from gitops.prune import ObjectRef, applied_by_delivery, leftovers, objects, removed
from gitops.publish import PublishRequest, publish

CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}
MANIFEST = {
    "configmap": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n",
    "service": ("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n"
                "  selector:\n    app: hello\n  ports:\n    - port: 80\n"),
    "podmonitoring.monitoring.googleapis.com": (
        "apiVersion: monitoring.googleapis.com/v1\nkind: PodMonitoring\nmetadata:\n"
        "  name: {name}\nspec:\n  endpoints:\n    - port: 8080\n"),
    "poddisruptionbudget.policy": (
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {name}\n"
        "spec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: hello\n"),
}
DEPLOYMENT = "deployment.apps/hello"


def release(env: EnvRepoOnDisk, tmp_path: Path, digest: str, *names: str) -> str:
    """Publish hello: its Deployment (image at digest) and the named objects; the commit."""
    extra = {}
    for printed in names:
        kind, name = printed.split("/")
        extra[f"{kind.split('.')[0]}-{name}.yaml"] = MANIFEST[kind].format(name=name)
    folder = write_manifests(tmp_path / f"m-{len(list(tmp_path.iterdir()))}", "hello",
                             image_ref("hello", digest), extra)
    return publish(PublishRequest(repo=env.url, app="hello", manifests=folder,
                                  images=(image_ref("hello", digest),))).commit


def deliver_on(env: EnvRepoOnDisk, cluster: ScriptedCluster, commit: str,
               build: str = "cd") -> DeployResult:
    return deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id=build,
                                   **CLUSTER),
                   cluster_factory=lambda kubeconfig: cluster, clock=cluster.clock)


def live(cluster: ScriptedCluster) -> set[str]:
    return cluster.namespace("hello").names()


def deleted_since(cluster: ScriptedCluster, mark: int) -> list[str]:
    return cluster.deleted[mark:]


class TestDeliveryRollbackRevert:
    """Delivered commits, rollbacks and reverts delete exactly what their tree no longer
    holds: the names deleted are exactly the ones removed."""

    def test_delivery_then_rollback(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        cluster = ScriptedCluster("kc")
        c1 = release(env_repo, tmp_path, DIGEST_A, "configmap/a", "configmap/b",
                     "service/hello", "poddisruptionbudget.policy/hello")
        c2 = release(env_repo, tmp_path, DIGEST_B, "configmap/a", "configmap/c",
                     "poddisruptionbudget.policy/hello")
        assert deliver_on(env_repo, cluster, c1).pruned == ()
        assert cluster.deleted == []

        result = deliver_on(env_repo, cluster, c2)
        assert cluster.deleted == ["configmap/b", "service/hello"]
        assert [str(ref) for ref in result.pruned] == cluster.deleted
        assert live(cluster) == {DEPLOYMENT, "configmap/a", "configmap/c",
                                 "poddisruptionbudget.policy/hello"}

        mark = len(cluster.deleted)
        tip = deliver_on(env_repo, cluster, c1, build="cd-rerun").commit
        assert env_repo.subject(tip).startswith("Rollback hello:")
        assert deleted_since(cluster, mark) == ["configmap/c"]
        assert live(cluster) == {DEPLOYMENT, "configmap/a", "configmap/b", "service/hello",
                                 "poddisruptionbudget.policy/hello"}

    def test_revert_after_a_failed_rollout_restores_productions_set(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        cluster = ScriptedCluster("kc", failing=frozenset({DIGEST_C}))
        c1 = release(env_repo, tmp_path, DIGEST_A, "configmap/a", "service/hello")
        deliver_on(env_repo, cluster, c1)
        production = env_repo.tip("production")
        bad = release(env_repo, tmp_path, DIGEST_C, "configmap/d", "configmap/e")
        with pytest.raises(OperationFailed, match="rollout of deployment/hello failed"):
            deliver_on(env_repo, cluster, bad)
        # Nothing bad removed was deleted (it never succeeded); what it added is gone.
        assert cluster.deleted == ["configmap/d", "configmap/e"]
        assert live(cluster) == {DEPLOYMENT, "configmap/a", "service/hello"}
        assert env_repo.tip("production") == production
        assert DIGEST_A in cluster.applied[-1]["deployment.yaml"]

    def test_a_failed_first_delivery_leaves_nothing_behind(self, env_repo: EnvRepoOnDisk,
                                                          tmp_path: Path) -> None:
        cluster = ScriptedCluster("kc", failing=frozenset({DIGEST_C}))
        bad = release(env_repo, tmp_path, DIGEST_C, "configmap/a")
        with pytest.raises(OperationFailed):
            deliver_on(env_repo, cluster, bad)
        assert cluster.deleted == ["configmap/a", DEPLOYMENT]
        assert live(cluster) == set()
        assert env_repo.tip("production") == env_repo.root

    def test_a_failed_delete_fails_the_delivery_and_reverts(self, env_repo: EnvRepoOnDisk,
                                                            tmp_path: Path) -> None:
        cluster = ScriptedCluster("kc", failing_deletes=frozenset({"service/hello"}))
        c1 = release(env_repo, tmp_path, DIGEST_A, "configmap/b", "service/hello")
        deliver_on(env_repo, cluster, c1)
        production = env_repo.tip("production")
        c2 = release(env_repo, tmp_path, DIGEST_B, "configmap/c")
        with pytest.raises(OperationFailed, match="cannot delete service/hello"):
            deliver_on(env_repo, cluster, c2)
        assert env_repo.tip("production") == production
        # configmap/b was deleted before the failure; the revert re-applied it and deleted
        # what c2 added.
        assert cluster.deleted == ["configmap/b", "configmap/c"]
        assert live(cluster) == {DEPLOYMENT, "configmap/b", "service/hello"}


    def test_production_refusing_the_record_reverts_too(self, env_repo: EnvRepoOnDisk,
                                                        tmp_path: Path) -> None:
        """Applied and pruned, but production cannot record it: the namespace goes back to
        what production records, so the next delivery's prune set is right."""
        cluster = ScriptedCluster("kc")
        c1 = release(env_repo, tmp_path, DIGEST_A, "configmap/a", "configmap/b")
        deliver_on(env_repo, cluster, c1)
        production = env_repo.tip("production")
        hook = env_repo.path / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\ngrep -q refs/heads/production && "
                        "{ echo 'production is protected' >&2; exit 1; }\nexit 0\n")
        hook.chmod(0o755)
        c2 = release(env_repo, tmp_path, DIGEST_B, "configmap/a", "configmap/c")
        with pytest.raises(OperationFailed):
            deliver_on(env_repo, cluster, c2)
        assert env_repo.tip("production") == production
        assert cluster.deleted == ["configmap/b", "configmap/c"]
        assert live(cluster) == {DEPLOYMENT, "configmap/a", "configmap/b"}
        assert DIGEST_A in cluster.applied[-1]["deployment.yaml"]


class TestOnlyWhatTheAppApplied:
    """An object the app did not create is never deleted, whatever Git says."""

    def test_foreign_and_taken_over_objects_are_kept(self, env_repo: EnvRepoOnDisk,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        cluster = ScriptedCluster("kc")
        namespace = cluster.namespace("hello")
        namespace.seed({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key"}},
                       "kubectl-create")
        c1 = release(env_repo, tmp_path, DIGEST_A, "configmap/a", "configmap/b")
        deliver_on(env_repo, cluster, c1)
        # Someone replaced configmap/b with their own object of the same name.
        namespace.state["configmap/b"]["metadata"]["managedFields"] = [{"manager": "helm"}]
        c2 = release(env_repo, tmp_path, DIGEST_B)
        result = deliver_on(env_repo, cluster, c2)
        assert cluster.deleted == ["configmap/a"]
        assert [str(r) for r in result.pruned] == ["configmap/a"]
        assert live(cluster) == {DEPLOYMENT, "configmap/b", "secret/api-key"}
        assert f"configmap/b kept: not in {c2[:12]}, but not applied by the delivery " \
               "(field managers: helm)" in capsys.readouterr().out

    def test_ownership_is_read_with_managed_fields(self, env_repo: EnvRepoOnDisk,
                                                   tmp_path: Path) -> None:
        """kubectl hides managedFields unless asked: the check must ask, or it keeps all."""
        cluster = ScriptedCluster("kc")
        deliver_on(env_repo, cluster, release(env_repo, tmp_path, DIGEST_A, "configmap/a"))
        deliver_on(env_repo, cluster, release(env_repo, tmp_path, DIGEST_B))
        reads = [c for c in cluster.calls if c[1] == "get" and c[2] != "lease"]
        assert reads == [["kubectl", "get", "configmap", "a", "--namespace=hello",
                          "--output=json", "--show-managed-fields", "--ignore-not-found"]]
        deletes = [c for c in cluster.calls if c[1] == "delete" and c[2] != "lease"]
        assert deletes == [["kubectl", "delete", "configmap", "a", "--namespace=hello",
                            "--ignore-not-found", "--wait=false"]]


class TestGoneTypes:
    """A custom resource whose CRD was removed cannot exist: nothing to delete, no failure."""

    def test_type_no_longer_served(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        cluster = ScriptedCluster("kc")
        deliver_on(env_repo, cluster, release(env_repo, tmp_path, DIGEST_A, "configmap/a",
                                              "podmonitoring.monitoring.googleapis.com/hello"))
        cluster.objects["hello"] = Objects(cluster.namespace("hello").state,
                                           frozenset({"podmonitoring.monitoring.googleapis.com"}))
        result = deliver_on(env_repo, cluster, release(env_repo, tmp_path, DIGEST_B))
        assert [str(r) for r in result.pruned] == ["configmap/a"]
        assert env_repo.subject(result.commit).startswith("Promote hello:")


class TestInventory:
    """What a folder declares: every file kind, List items, one identity per object."""

    def test_lists_json_and_other_namespaces(self, tmp_path: Path) -> None:
        (tmp_path / "list.yaml").write_text(
            "apiVersion: v1\nkind: List\nitems:\n"
            "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
            "  - {apiVersion: apps/v1, kind: Deployment, metadata: {name: web}}\n")
        (tmp_path / "hpa.json").write_text(json.dumps({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "hello"}}, indent="\t"))
        (tmp_path / "elsewhere.yml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n")
        (tmp_path / "README.md").write_text("kind: ConfigMap\n")
        assert objects(tmp_path, "hello") == [
            ObjectRef("autoscaling", "HorizontalPodAutoscaler", "web"),
            ObjectRef("", "ConfigMap", "a"), ObjectRef("apps", "Deployment", "web")]

    def test_identity_ignores_the_version_and_survives_a_group_move(self) -> None:
        hpa_v1 = ObjectRef("autoscaling", "HorizontalPodAutoscaler", "web")
        old_ingress = ObjectRef("extensions", "Ingress", "web")
        new_ingress = ObjectRef("networking.k8s.io", "Ingress", "web")
        gone = ObjectRef("", "ConfigMap", "old")
        assert removed([hpa_v1, old_ingress, gone], [hpa_v1, new_ingress]) == [gone]
        assert str(new_ingress) == "ingress.networking.k8s.io/web"

    def test_leftovers_in_a_listing_follow_the_same_rule(self) -> None:
        """Drift's "extra" (gitops.prune.leftovers over a live listing): only objects whose
        managedFields name the delivery, and that the tree no longer declares by group, kind
        and name (a group move is the same object)."""
        def live(api_version: str, kind: str, name: str, *managers: str) -> dict[str, object]:
            return {"apiVersion": api_version, "kind": kind, "metadata": {
                "name": name, "managedFields": [{"manager": m} for m in managers]}}

        listing = [
            live("v1", "ConfigMap", "old", "gitops-delivery", "kubectl-edit"),
            live("v1", "ConfigMap", "by-hand", "kubectl-client-side-apply"),
            live("v1", "ConfigMap", "no-owner"),
            live("extensions/v1beta1", "Ingress", "web", "gitops-delivery"),
            live("apps/v1", "Deployment", "hello", "gitops-delivery"),
        ]
        keep = [ObjectRef("apps", "Deployment", "hello"),
                ObjectRef("networking.k8s.io", "Ingress", "web")]
        assert leftovers(listing, keep) == [ObjectRef("", "ConfigMap", "old")]
        assert [applied_by_delivery(item) for item in listing] == [True, False, False, True,
                                                                    True]
