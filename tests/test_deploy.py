"""deploy: what it applies, what it waits for, when it reverts, and the Lease around it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fake_kubectl
from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    SCRIPTS,
    EnvRepoOnDisk,
    FakeClock,
    ScriptedCluster,
    app_tree_hash,
    assert_bad_input,
    cli,
    image_ref,
    publish,
    run_script,
    write_manifests,
)
from gitops import deploy
from gitops.deploy import DeliveryRequest, Outcome, deliver
from gitops.errors import BadInput, OperationFailed
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests

CLUSTER_ARGS = ["--project=acme-delivery", "--cluster=gitops", "--location=europe-west1"]
CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}


WORKLOADS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: fluentbit}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: m, image: migrate}]}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec: {ports: [{port: 80}]}
"""


def deliver_with(env: EnvRepoOnDisk, commit: str, cluster: ScriptedCluster | None = None,
                 build: str = "cd-1", timeout: int = 300) -> tuple[str, ScriptedCluster]:
    """Deliver commit of hello through a scripted cluster; (production tip, the cluster)."""
    used = cluster or ScriptedCluster("kc")

    def factory(kubeconfig: str) -> ScriptedCluster:
        used.kubeconfig = kubeconfig
        return used

    result = deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id=build,
                                     timeout=timeout, **CLUSTER),
                     cluster_factory=factory, clock=used.clock)
    return result.commit, used


class TestDelivery:
    """Success applies, waits for every rollout, then promotes, all under the Lease."""

    def test_kubectl_calls_of_a_successful_delivery(self, env_repo: EnvRepoOnDisk,
                                                    tmp_path: Path) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        tip, cluster = deliver_with(env_repo, commit, timeout=120)
        assert tip == env_repo.tip("production")
        assert env_repo.subject(tip).startswith("Promote hello:")
        calls = cluster.calls
        assert calls[0] == ["gcloud", "container", "clusters", "get-credentials", "gitops",
                            "--location=europe-west1", "--project=acme-delivery"]
        assert calls[1] == ["kubectl", "create", "-f", "-"]
        assert calls[2][:5] == ["kubectl", "apply", "--namespace=hello", "--recursive",
                                "--field-manager=gitops-delivery"]
        assert calls[2][5].startswith("--filename=")
        assert calls[3] == ["kubectl", "rollout", "status", "deployment/hello",
                            "--namespace=hello", "--timeout=120s"]
        assert calls[4:] == [
            ["kubectl", "get", "lease", "gitops-delivery", "--namespace=hello",
             "--output=json"],
            ["kubectl", "delete", "lease", "gitops-delivery", "--namespace=hello",
             "--ignore-not-found"],
        ]
        assert image_ref("hello", DIGEST_A) in cluster.applied[0]["deployment.yaml"]

    def test_lease_holder_and_duration(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        seen: list[dict[str, Any]] = []

        class Spy(ScriptedCluster):
            def run(self, args: Any, stdin: str | None = None) -> tuple[int, str, str]:
                if "create" in args:
                    seen.append(json.loads(stdin or "{}"))
                return super().run(args, stdin)

        deliver_with(env_repo, commit, Spy("kc"), build="build-42", timeout=100)
        lease = seen[0]
        assert lease["metadata"] == {"name": "gitops-delivery", "namespace": "hello"}
        assert lease["spec"]["holderIdentity"] == "build-42"
        assert lease["spec"]["leaseDurationSeconds"] == 2 * 100 + 300

    def test_waits_for_every_rollout_kind_only(self, env_repo: EnvRepoOnDisk,
                                               tmp_path: Path) -> None:
        image = image_ref("hello", DIGEST_A)
        folder = write_manifests(tmp_path / "m", "hello", image, {"more.yaml": WORKLOADS})
        commit = publish_manifests(PublishRequest(repo=env_repo.url, app="hello",
                                                  manifests=folder)).commit
        _, cluster = deliver_with(env_repo, commit)
        waited = [c[3] for c in cluster.calls if c[1] == "rollout"]
        assert waited == ["deployment/hello", "statefulset/db", "daemonset/agent"]

    def test_failed_rollout_reverts_to_production_and_fails(self, env_repo: EnvRepoOnDisk,
                                                            tmp_path: Path) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A)
        deliver_with(env_repo, good)
        production = env_repo.tip("production")
        bad = publish(env_repo, tmp_path, "hello", DIGEST_B)
        cluster = ScriptedCluster("kc", failing=frozenset({DIGEST_B}))
        with pytest.raises(OperationFailed, match="rollout of deployment/hello failed"):
            deliver_with(env_repo, bad, cluster)
        assert env_repo.tip("production") == production
        applies = [c for c in cluster.calls if c[1] == "apply"]
        assert len(applies) == 2
        assert DIGEST_B in cluster.applied[0]["deployment.yaml"]
        assert DIGEST_A in cluster.applied[1]["deployment.yaml"]  # production re-applied
        assert cluster.lease is None  # released even on failure

    def test_outcome_is_typed(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        cluster = ScriptedCluster("kc")
        result = deliver(DeliveryRequest(repo=env_repo.url, app="hello", commit=commit,
                                         build_id="cd-1", **CLUSTER),
                         cluster_factory=lambda kubeconfig: cluster, clock=FakeClock())
        assert result == deploy.DeployResult(env_repo.tip("production") or "", Outcome.PROMOTED)

    def test_failure_with_nothing_in_production_yet(self, env_repo: EnvRepoOnDisk,
                                                    tmp_path: Path) -> None:
        bad = publish(env_repo, tmp_path, "hello", DIGEST_B)
        cluster = ScriptedCluster("kc", failing=frozenset({DIGEST_B}))
        with pytest.raises(OperationFailed):
            deliver_with(env_repo, bad, cluster)
        assert env_repo.tip("production") == env_repo.root
        assert len([c for c in cluster.calls if c[1] == "apply"]) == 1


class TestWithoutACluster:
    """GITOPS_NO_CLUSTER=1 (the local loop with --no-cluster): the manifests are validated,
    nothing reaches a cluster, production records the commit, and the output says so."""

    def test_validated_only(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv(deploy.NO_CLUSTER_ENV, "1")
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)

        def no_cluster(kubeconfig: str) -> ScriptedCluster:
            raise AssertionError("no cluster may be reached")

        result = deliver(DeliveryRequest(repo=env_repo.url, app="hello", commit=commit,
                                         build_id="cd-1"), cluster_factory=no_cluster)
        assert result.outcome is Outcome.VALIDATED
        assert result.commit == env_repo.tip("production")
        assert "validated only, NOT applied" in capsys.readouterr().out

    def test_invalid_manifests_are_refused(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(deploy.NO_CLUSTER_ENV, "1")
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A),
                                 {"bad.yaml": "apiVersion: v1\nkind: Service\nmetadata: "
                                              "{name: x}\nspec: {ports: [{port: nope}]}\n"})
        commit = publish_manifests(PublishRequest(repo=env_repo.url, app="hello",
                                                  manifests=folder)).commit
        production = env_repo.tip("production")
        with pytest.raises(BadInput):
            deliver(DeliveryRequest(repo=env_repo.url, app="hello", commit=commit,
                                    build_id="cd-1"))
        assert env_repo.tip("production") == production


class TestDeadline:
    """All rollouts share one deadline: each waits only for what remains of the timeout."""

    def test_each_rollout_gets_what_remains(self, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A),
                                 {"more.yaml": WORKLOADS})
        cluster = ScriptedCluster("kc", rollout_seconds=50)
        assert deploy.apply_and_wait(cluster, "hello", folder, 120, cluster.clock) is None
        timeouts = [c[-1] for c in cluster.calls if c[1] == "rollout"]
        assert timeouts == ["--timeout=120s", "--timeout=70s", "--timeout=20s"]

    def test_a_spent_deadline_still_asks_for_one_second(self, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A),
                                 {"more.yaml": WORKLOADS})
        cluster = ScriptedCluster("kc", rollout_seconds=200)
        deploy.apply_and_wait(cluster, "hello", folder, 120, cluster.clock)
        timeouts = [c[-1] for c in cluster.calls if c[1] == "rollout"]
        assert timeouts == ["--timeout=120s", "--timeout=1s", "--timeout=1s"]


class TestLease:
    """Another delivery's live Lease blocks; an expired one is taken over safely."""

    def test_held_lease_blocks(self) -> None:
        cluster = ScriptedCluster("kc")
        cluster.lease = json.loads(deploy.lease_manifest("hello", "other-build", 600, None))
        cluster.lease["metadata"]["resourceVersion"] = "3"
        with pytest.raises(OperationFailed, match="locked by build other-build"):
            deploy.acquire_lease(cluster, "hello", "me", 600, wait=0, poll=0)
        assert [c[1] for c in cluster.calls] == ["create", "get"]
        assert cluster.lease["spec"]["holderIdentity"] == "other-build"

    def test_expired_lease_is_taken_over_with_its_resource_version(self) -> None:
        cluster = ScriptedCluster("kc")
        stale = json.loads(deploy.lease_manifest("hello", "dead-build", 60, None))
        stale["spec"]["renewTime"] = "2026-01-01T00:00:00.000000Z"
        stale["metadata"]["resourceVersion"] = "9"
        cluster.lease = stale
        deploy.acquire_lease(cluster, "hello", "me", 600, wait=0, poll=0)
        assert cluster.lease["spec"]["holderIdentity"] == "me"
        assert cluster.lease["metadata"]["resourceVersion"] == "9"
        assert [c[1] for c in cluster.calls] == ["create", "get", "replace"]

    def test_release_leaves_another_holders_lease(self) -> None:
        cluster = ScriptedCluster("kc")
        cluster.lease = json.loads(deploy.lease_manifest("hello", "other", 600, None))
        deploy.release_lease(cluster, "hello", "me")
        assert cluster.lease is not None
        assert [c[1] for c in cluster.calls] == ["get"]


class TestOrdering:
    """Re-running an older delivery is a rollback; an older build that lost the race is not."""

    def test_rerun_of_an_older_build_is_a_rollback(self, env_repo: EnvRepoOnDisk,
                                                   tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A)
        c2 = publish(env_repo, tmp_path, "hello", DIGEST_B)
        deliver_with(env_repo, c1)
        deliver_with(env_repo, c2)
        tip, cluster = deliver_with(env_repo, c1, build="cd-1-rerun")
        assert env_repo.subject(tip).startswith("Rollback hello:")
        assert DIGEST_A in cluster.applied[0]["deployment.yaml"]

    def test_stale_build_is_skipped(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A)
        c2 = publish(env_repo, tmp_path, "hello", DIGEST_B)
        deliver_with(env_repo, c2)
        before = env_repo.snapshot()
        tip, cluster = deliver_with(env_repo, c1, build="cd-1-late")
        assert tip == env_repo.tip("production")
        assert env_repo.snapshot() == before
        assert not [c for c in cluster.calls if c[1] == "apply"]
        assert cluster.lease is None


class TestRefusals:
    """Bad input: exit 2, nothing run against the cluster, nothing committed."""

    def test_commit_not_on_candidate(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        before = env_repo.snapshot()
        result = cli("deploy", "--repo", env_repo.url, "--app", "hello", "--commit",
                            "e" * 40, *CLUSTER_ARGS)
        assert_bad_input(result, "is not on branch 'candidate'")
        assert env_repo.snapshot() == before

    @pytest.mark.parametrize("args,fragment", [
        (["--timeout=5m"], "--timeout '5m' must be whole seconds"),
        (["--cluster="], "--project, --cluster and --location are required"),
        (["--app=Hello"], "not a DNS label"),
    ])
    def test_refused(self, env_repo: EnvRepoOnDisk, tmp_path: Path, args: list[str],
                     fragment: str) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        before = env_repo.snapshot()
        base = {"--repo": env_repo.url, "--app": "hello", "--commit": commit,
                "--project": "acme-delivery", "--cluster": "gitops",
                "--location": "europe-west1"}
        for arg in args:
            key, value = arg.split("=", 1)
            base[key] = value
        result = cli("deploy", *[f"{k}={v}" for k, v in base.items()])
        assert_bad_input(result, fragment)
        assert env_repo.snapshot() == before


class TestOverlappingDeliveries:
    """Production only holds trees that were applied; its tip is the last one applied."""

    def test_overlapping_out_of_order_deliveries(self, env_repo: EnvRepoOnDisk,
                                                 tmp_path: Path,
                                                 fake_cluster: dict[str, str]) -> None:
        commits = [publish(env_repo, tmp_path, "hello", f"sha256:{n:064x}",
                           build=f"ci-{n}") for n in range(6)]
        order = commits[:]
        random.Random(7).shuffle(order)
        procs = [subprocess.Popen(
            [sys.executable, str(SCRIPTS / "deploy.py"), "--repo", env_repo.url,
             "--app", "hello", "--commit", commit, "--build-id", f"cd-{n}"],
            env={**os.environ, **fake_cluster}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) for n, commit in enumerate(order)]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err

        cluster = Path(fake_cluster["FAKE_CLUSTER_DIR"])
        applied = (cluster / "applied.log").read_text().split()[1::2]
        assert applied, "nothing was applied"
        # every production tree was applied (the root commit holds no app)
        for commit in env_repo.log("production", "apps/hello"):
            assert app_tree_hash(env_repo, commit) in applied
        # production's tip is exactly what the cluster applied last
        assert app_tree_hash(env_repo, env_repo.tip("production")) == applied[-1]
        env_repo.assert_history_clean("production")
        assert not (cluster / "leases" / "hello" / "gitops-delivery").exists()

    def test_failed_rollout_leaves_cluster_and_production_agreeing(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path,
            fake_cluster: dict[str, str]) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A)
        extra = {"extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n"}
        bad = publish_manifests(PublishRequest(
            repo=env_repo.url, app="hello", manifests=write_manifests(
                tmp_path / "bad", "hello", image_ref("hello", DIGEST_C), extra))).commit
        env = fake_cluster
        cluster = Path(fake_cluster["FAKE_CLUSTER_DIR"])
        cluster.mkdir()
        (cluster / "fail-marker").write_text(DIGEST_C)
        assert run_script("deploy", "--repo", env_repo.url, "--app", "hello", "--commit",
                          good, env=env).code == 0
        result = run_script("deploy", "--repo", env_repo.url, "--app", "hello", "--commit",
                            bad, env=env)
        assert result.code == 1
        assert result.stderr.startswith("error: hello at ") and "rollout" in result.stderr
        applied = (cluster / "applied.log").read_text().split()[1::2]
        assert len(applied) == 3  # good, bad, good again
        assert app_tree_hash(env_repo, env_repo.tip("production")) == applied[-1] == applied[0]
        # The object bad added is deleted again: the namespace holds production's objects.
        assert (cluster / "deleted.log").read_text().splitlines() == ["hello configmap/extra"]
        assert fake_kubectl.live(cluster, "hello") == {"deployment.apps/hello"}
