"""Drift: the reconcile run compares each namespace with production through `kubectl diff`
(the dry run of delivery's own apply) and an external differ, reports, heals when allowed, and
publishes events.

The cluster is the stand-in kubectl (tests/fake_kubectl.py), whose diff hands LIVE and MERGED
folders to KUBECTL_EXTERNAL_DIFF as kubectl does, so gitops.objdiff runs as it does for real.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import fake_kubectl
from conftest import (
    DIGEST_A,
    DIGEST_B,
    EnvRepoOnDisk,
    EventsTopic,
    Keys,
    cli,
    image_ref,
    signing_as,
    write_manifests,
)
from gitops import drift, events, objdiff
from gitops.branches import init_branches
from gitops.deploy import Cluster, DeliveryRequest, deliver
from gitops.drift import AppState, ReconcileRequest, reconcile
from gitops.environments import Environment
from gitops.errors import OperationFailed
from gitops.events import DriftedObject, ObjectState
from gitops.freeze import set_freeze
from gitops.promote import PromoteRequest, promote
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests

FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {greeting: hi}\n"
# A live ConfigMap some field manager wrote (as the API server records it in managedFields).
MANAGED_CONFIGMAP = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"
                     "  managedFields: [{manager: %s, operation: Update}]\n"
                     "data: {greeting: hi}\n")
IMAGE_FIELD = "spec.template.spec.containers[0].image"


@dataclass
class StandIn(Cluster):
    """The stand-in kubectl called in this process (its diff still runs the external differ
    as a process, as kubectl does): the same answers as the script, without a process each."""

    def run(self, args: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        assert args[0] == "kubectl", args
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err), \
                pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stdin", io.StringIO(stdin or ""))
            code = fake_kubectl.main(list(args[1:]))
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cluster_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in's state; its kubectl is also first on PATH for the commands run whole."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    state = tmp_path / "cluster"
    # The state folder is set here, not inherited: kubectl gets an allowlisted environment.
    kubectl.write_text(f"#!/bin/sh\nFAKE_CLUSTER_DIR={state} exec {sys.executable} "
                       f"{FAKE_KUBECTL} \"$@\"\n")
    kubectl.chmod(0o755)
    monkeypatch.setattr(fake_kubectl, "STATE", state)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLUSTER_DIR", str(state))
    monkeypatch.setenv("GITOPS_KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("GITOPS_LEASE_POLL", "0.1")
    return state


def delivered(env: EnvRepoOnDisk, tmp_path: Path, extra: dict[str, str] | None = None) -> str:
    """hello delivered once (with extra files) to the stand-in; the candidate commit."""
    folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A), extra)
    commit = publish_manifests(PublishRequest(
        repo=env.url, app="hello", manifests=folder, images=(image_ref("hello", DIGEST_A),),
        source_repo="https://github.com/acme/hello", source_commit="5" * 40,
        build_id="ci-5")).commit
    deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id="cd-1"),
            cluster_factory=StandIn)
    return commit


def hand_edit(cluster: Path, image: str) -> None:
    """Someone changes the Deployment's image in the cluster by hand."""
    path = cluster / "applied" / "hello" / "deployment.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
    path.write_text(yaml.safe_dump(doc))


def run(env: EnvRepoOnDisk, heal: frozenset[str] = frozenset(),
        lock_timeout: int = 60) -> list[drift.AppDrift]:
    return reconcile(ReconcileRequest(repo=env.url, build_id="rc-1", heal=heal,
                                      lock_timeout=lock_timeout), StandIn("kubeconfig"))


class TestComparison:
    """Each app is reported in sync, drifted (objects and fields) or missing."""

    def test_in_sync_after_a_delivery(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                      cluster_dir: Path) -> None:
        delivered(env_repo, tmp_path)
        [result] = run(env_repo)
        assert (result.app, result.state, result.objects) == ("hello", AppState.IN_SYNC, ())
        assert result.production_commit == env_repo.tip("production")

    def test_a_hand_edit_is_drift_with_its_field(self, env_repo: EnvRepoOnDisk,
                                                 tmp_path: Path, cluster_dir: Path) -> None:
        delivered(env_repo, tmp_path)
        hand_edit(cluster_dir, image_ref("hello", DIGEST_B))
        [result] = run(env_repo)
        assert result.state is AppState.DRIFTED and not result.healed
        assert result.objects == (DriftedObject("Deployment/hello", ObjectState.CHANGED,
                                                (IMAGE_FIELD,)),)
        live = (cluster_dir / "applied" / "hello" / "deployment.yaml").read_text()
        assert DIGEST_B in live  # only reported: healing was not asked for

    def test_missing_objects(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                             cluster_dir: Path) -> None:
        delivered(env_repo, tmp_path, {"config.yaml": CONFIGMAP % "settings"})
        (cluster_dir / "applied" / "hello" / "config.yaml").unlink()
        [result] = run(env_repo)
        assert result.state is AppState.DRIFTED
        assert result.objects == (DriftedObject("ConfigMap/settings", ObjectState.MISSING),)
        for path in (cluster_dir / "applied" / "hello").iterdir():
            path.unlink()
        assert run(env_repo)[0].state is AppState.MISSING

    def test_extra_is_exactly_what_pruning_would_delete(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, cluster_dir: Path) -> None:
        """One rule for both (gitops.prune.applied_by_delivery): a leftover the delivery
        applied is extra; one applied by hand (kubectl's last-applied annotation, its own
        field manager) or created otherwise is not, and pruning keeps both."""
        from gitops.prune import ObjectRef, prune

        delivered(env_repo, tmp_path)
        applied = cluster_dir / "applied" / "hello"
        (applied / "old.yaml").write_text(MANAGED_CONFIGMAP % ("old", "gitops-delivery"))
        (applied / "hand.yaml").write_text(MANAGED_CONFIGMAP % ("hand",
                                                               "kubectl-client-side-apply"))
        created = cluster_dir / "created" / "hello"
        created.mkdir(parents=True)
        (created / "theirs.yaml").write_text(CONFIGMAP % "theirs")  # not applied by kubectl
        [result] = run(env_repo)
        assert result.objects == (DriftedObject("ConfigMap/old", ObjectState.EXTRA),)
        candidates = [ObjectRef("", "ConfigMap", name) for name in ("hand", "old", "theirs")]
        pruned = prune(StandIn("kubeconfig"), "hello", candidates, "not in production",
                       log=lambda _: None)
        assert ([str(r) for r in pruned.deleted], [str(r) for r in pruned.kept]) == (
            ["configmap/old"], ["configmap/hand", "configmap/theirs"])

    def test_frozen_apps_are_not_compared(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                          cluster_dir: Path) -> None:
        delivered(env_repo, tmp_path)
        hand_edit(cluster_dir, image_ref("hello", DIGEST_B))
        set_freeze(env_repo.url, "hello", True, "incident")
        [result] = run(env_repo, heal=frozenset({"hello"}))
        assert result.state is AppState.FROZEN and not result.healed
        calls = (cluster_dir / "calls.log").read_text()
        assert '"diff"' not in calls


class TestHeal:
    """Healing re-applies production and deletes leftovers, under the delivery Lease (the heal
    of a drifted namespace itself: TestPerEnvironment)."""

    def test_with_signing_on_an_unsigned_production_is_not_healed(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, cluster_dir: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Someone pushes unsigned manifests to production: the heal refuses to apply them
        and says why; a signed production is healed as before."""
        signing_as(monkeypatch, keys, "ci")
        delivered(env_repo, tmp_path)
        signing_as(monkeypatch, keys, None)
        folder = write_manifests(tmp_path / "planted", "hello", image_ref("hello", DIGEST_B))
        planted = publish_manifests(PublishRequest(repo=env_repo.url, app="hello",
                                                   manifests=folder)).commit
        promote(PromoteRequest(repo=env_repo.url, app="hello", commit=planted))
        signing_as(monkeypatch, keys, None, verify=True)
        [result] = run(env_repo, heal=frozenset({"hello"}))
        assert result.state is AppState.DRIFTED and not result.healed
        assert result.detail.startswith("not healed: commit ") and "is UNSIGNED" in result.detail
        assert DIGEST_A in (cluster_dir / "applied" / "hello" / "deployment.yaml").read_text()

    def test_heal_waits_for_a_delivery_holding_the_lease(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, cluster_dir: Path) -> None:
        from gitops.deploy import lease_manifest

        delivered(env_repo, tmp_path)
        hand_edit(cluster_dir, image_ref("hello", DIGEST_B))
        lease = cluster_dir / "leases" / "hello" / "gitops-delivery"
        held = json.loads(lease_manifest("hello", "cd-9", 600, None))
        held["metadata"]["resourceVersion"] = "1"
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text(json.dumps(held))
        with pytest.raises(OperationFailed, match="locked by build cd-9"):
            run(env_repo, heal=frozenset({"hello"}), lock_timeout=0)
        assert DIGEST_B in (cluster_dir / "applied" / "hello" / "deployment.yaml").read_text()

    def test_reconcile_script_exit_codes(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                         cluster_dir: Path) -> None:
        delivered(env_repo, tmp_path)
        hand_edit(cluster_dir, image_ref("hello", DIGEST_B))
        found = cli("reconcile", "--repo", env_repo.url, "--build-id", "rc-2")
        assert found.code == 0 and "hello: drifted" in found.stdout  # drift is a finding
        bad = cli("reconcile", "--repo", env_repo.url, "--heal", "Hello;rm")
        assert bad.code == 2 and bad.stderr.startswith("error: --heal")


STAGING = Environment("staging", "staging-candidate", "staging-production", "gitops", "-staging")
PRODUCTION = Environment("production", "production-candidate", "production-production",
                         "gitops-prod")


class TestPerEnvironment:
    """A reconcile run (and `status --drift`) works on one environment: its production branch,
    its freezes, its namespaces (suffix included) and its name on the events; nothing of
    another environment is read or touched."""

    def test_drift_and_heal_in_a_suffixed_namespace(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, cluster_dir: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        init_branches(env_repo.url, environments=[STAGING, PRODUCTION])
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        commit = publish_manifests(PublishRequest(
            repo=env_repo.url, app="hello", manifests=folder, branch=STAGING.candidate,
            images=(image_ref("hello", DIGEST_A),), build_id="ci-7")).commit
        deliver(DeliveryRequest(repo=env_repo.url, app="hello", commit=commit, build_id="cd-7",
                                source=STAGING.candidate, target=STAGING.production,
                                namespace="hello-staging", environment="staging"),
                cluster_factory=StandIn)
        live = cluster_dir / "applied" / "hello-staging"
        doc = yaml.safe_load((live / "deployment.yaml").read_text())
        doc["spec"]["template"]["spec"]["containers"][0]["image"] = image_ref("hello", DIGEST_B)
        (live / "deployment.yaml").write_text(yaml.safe_dump(doc))
        (live / "old.yaml").write_text(MANAGED_CONFIGMAP % ("old", "gitops-delivery"))
        (cluster_dir / "calls.log").unlink()
        # The operator's view first (their kubeconfig): reported, not healed.
        shown = cli("status", "--repo", env_repo.url, "--drift", "--environment", "staging",
                    "--json")
        assert shown.code == 0, shown.stderr
        [found] = json.loads(shown.stdout)
        assert (found["namespace"], found["state"], found["healed"], found["objects"]) == (
            "hello-staging", "drifted", False,
            [{"object": "Deployment/hello", "state": "changed", "fields": [IMAGE_FIELD]},
             {"object": "ConfigMap/old", "state": "extra", "fields": []}])
        assert DIGEST_B in (live / "deployment.yaml").read_text()
        assert cli("status", "--repo", env_repo.url, "--drift").stdout.strip() == \
            "no apps in production yet"  # the last environment's production holds nothing
        announced: list[events.Event] = []
        monkeypatch.setattr(drift.events, "emit", lambda event: announced.append(event))
        [result] = reconcile(ReconcileRequest(repo=env_repo.url, build_id="rc-7",
                                              environment="staging",
                                              heal=frozenset({"hello"})), StandIn("kc"))
        assert (result.namespace, result.state, result.healed) == (
            "hello-staging", AppState.DRIFTED, True)
        assert result.production_commit == env_repo.tip(STAGING.production)
        assert [(e.kind.value, e.environment) for e in announced] == [
            ("drift_found", "staging"), ("drift_healed", "staging")]
        assert sorted(p.name for p in live.iterdir()) == ["deployment.yaml"]
        assert DIGEST_A in (live / "deployment.yaml").read_text()
        calls = [json.loads(line) for line in
                 (cluster_dir / "calls.log").read_text().splitlines()]
        assert {a.split("=", 1)[1] for call in calls for a in call
                if a.startswith("--namespace=")} == {"hello-staging"}
        # The diff dry-runs the apply a heal makes: the same field manager, client-side.
        managers = {call[0]: {a for a in call if a.startswith("--field-manager=")}
                    for call in calls if call[0] in ("diff", "apply")}
        assert managers == {"diff": {"--field-manager=gitops-delivery"},
                            "apply": {"--field-manager=gitops-delivery"}}
        assert not [call for call in calls if "--server-side" in call]
        assert not (cluster_dir / "leases" / "hello-staging" / "gitops-delivery").exists()
        [again] = reconcile(ReconcileRequest(repo=env_repo.url, build_id="rc-8",
                                             environment="staging"), StandIn("kc"))
        assert (again.state, again.objects) == (AppState.IN_SYNC, ())
        env_repo.fsck()


class TestDriftEvents:
    """A drift run publishes drift_found per drifted app and drift_healed per healed one."""

    def test_drift_run_publishes_exactly_these(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                               cluster_dir: Path,
                                               events_topic: EventsTopic) -> None:
        candidate = delivered(env_repo, tmp_path)
        events_topic.received()  # the delivery's own event
        assert run(env_repo)[0].state is AppState.IN_SYNC
        assert events_topic.received() == []  # in sync: nothing to say
        hand_edit(cluster_dir, image_ref("hello", DIGEST_B))
        run(env_repo, heal=frozenset({"hello"}))
        found, healed = events_topic.received()
        production = env_repo.tip("production")
        for event in (found, healed):
            assert event["app"] == "hello" and event["environment"] == "production"
            assert event["images"] == [image_ref("hello", DIGEST_A)]
            assert event["source_commit"] == "5" * 40
            assert event["candidate_commit"] == candidate
            assert event["env_repo_commit"] == production and event["build_id"] == "rc-1"
            assert event["drift"] == [{"object": "Deployment/hello", "state": "changed",
                                       "fields": [IMAGE_FIELD]}]
        assert (found["kind"], healed["kind"]) == ("drift_found", "drift_healed")


class TestObjectDiff:
    """The external differ names changed fields and ignores what every dry run changes."""

    def test_fields(self) -> None:
        live = {"metadata": {"name": "a", "resourceVersion": "1", "labels": {"x": "1"}},
                "spec": {"replicas": 2, "ports": [{"port": 80}]}, "status": {"ready": 1}}
        merged = {"metadata": {"name": "a", "resourceVersion": "2", "labels": {"x": "2"}},
                  "spec": {"replicas": 2, "ports": [{"port": 81}]}, "status": {"ready": 0}}
        assert objdiff.changed_fields(live, merged) == ["metadata.labels.x",
                                                        "spec.ports[0].port"]

    def test_exit_codes(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        live, merged = tmp_path / "LIVE", tmp_path / "MERGED"
        live.mkdir()
        merged.mkdir()
        (merged / "v1.ConfigMap.hello.a").write_text(CONFIGMAP % "a")
        assert objdiff.main([str(live), str(merged)]) == 1
        assert json.loads(capsys.readouterr().out) == {"object": "ConfigMap/a",
                                                       "state": "missing", "fields": []}
        (live / "v1.ConfigMap.hello.a").write_text(CONFIGMAP % "a")
        assert objdiff.main([str(live), str(merged)]) == 0

    def test_managed_kinds_are_what_delivery_may_change(self) -> None:
        from components.cluster_access import DELIVERY_RULES

        allowed = {f"{r}.{rule.api_groups[0]}".rstrip(".")  # type: ignore[index]
                   for rule in DELIVERY_RULES for r in rule.resources  # type: ignore[union-attr]
                   if "delete" in rule.verbs}  # type: ignore[operator]
        # Secrets apart: listing them returns every value (delivery's prune deletes a Secret
        # removed from Git; docs/architecture.md).
        assert set(drift.MANAGED_RESOURCES) == allowed - {"replicasets.apps", "secrets",
                                                          "leases.coordination.k8s.io"}
