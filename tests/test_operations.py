"""Operator commands: status, rollback and freeze, on real local repositories."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    FakeClock,
    ScriptedCluster,
    assert_bad_input,
    cli,
    image_ref,
    promoted,
    publish,
)
from gitops import rollback
from gitops.deploy import DeliveryRequest, Outcome, deliver
from gitops.errors import OperationFailed
from gitops.freeze import set_freeze
from gitops.status import DIFFERS, IN_SYNC, status

CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}
BUILD_ID = "5b1f3c1e-7d2a-4e43-9a0e-8c2f7e1d9b44"


def deliver_to(env: EnvRepoOnDisk, commit: str, cluster: ScriptedCluster | None = None
               ) -> tuple[Outcome, ScriptedCluster]:
    used = cluster or ScriptedCluster("kc")
    result = deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id="cd",
                                     **CLUSTER),
                     cluster_factory=lambda kubeconfig: used, clock=FakeClock())
    return result.outcome, used


@pytest.fixture(scope="module")
def fleet_repo(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[EnvRepoOnDisk, dict[str, str]]]:
    """hello: 3 attempts, promotes of 1 and 2, rollback to 1; shop: 1 promoted, 1 pending.

    Built once, shared by the tests of this module, which only read it.
    """
    tmp_path = tmp_path_factory.mktemp("fleet")
    env_repo = EnvRepoOnDisk(tmp_path / "env.git")
    c: dict[str, str] = {}
    c["h1"] = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-h1")
    c["s1"] = publish(env_repo, tmp_path, "shop", DIGEST_A, build="ci-s1")
    c["h2"] = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-h2")
    c["p1"] = promoted(env_repo, "hello", c["h1"], "cd-h1")
    c["ps1"] = promoted(env_repo, "shop", c["s1"], "cd-s1")
    c["p2"] = promoted(env_repo, "hello", c["h2"], "cd-h2")
    c["h3"] = publish(env_repo, tmp_path, "hello", DIGEST_C, build="ci-h3")
    c["p3"] = promoted(env_repo, "hello", c["h1"], "cd-h1-rerun")
    c["s2"] = publish(env_repo, tmp_path, "shop", DIGEST_B, build="ci-s2")
    yield env_repo, c
    env_repo.fsck()


@pytest.fixture
def env_repo_fleet(fleet_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> EnvRepoOnDisk:
    return fleet_repo[0]


@pytest.fixture
def fleet(fleet_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> dict[str, str]:
    return fleet_repo[1]


class TestStatus:
    """Production beside the newest attempt, per app, from git alone."""

    def test_json(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str]) -> None:
        result = cli("status", "--repo", env_repo_fleet.url, "--json")
        assert result.code == 0, result.stderr
        statuses = {s["app"]: s for s in json.loads(result.stdout)}
        assert sorted(statuses) == ["hello", "shop"]
        hello, shop = statuses["hello"], statuses["shop"]
        assert hello["production"]["commit"] == fleet["p3"]
        assert hello["production"]["kind"] == "rollback"
        assert hello["production"]["image"] == image_ref("hello", DIGEST_A)
        assert hello["production"]["build_id"] == "cd-h1-rerun"
        assert hello["production"]["candidate"] == fleet["h1"]
        assert hello["newest_attempt"]["commit"] == fleet["h3"]
        assert hello["state"].startswith("differs")
        assert shop["production"]["image"] == image_ref("shop", DIGEST_A)
        assert shop["newest_attempt"]["image"] == image_ref("shop", DIGEST_B)
        assert shop["state"].startswith("differs") and not shop["frozen"]

    def test_typed_status(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str]) -> None:
        hello, shop = status(env_repo_fleet.url)
        assert (hello.app, hello.state, hello.frozen) == ("hello", DIFFERS, False)
        assert hello.production is not None and hello.production.promoted_from == fleet["h1"]
        assert hello.newest_attempt is not None and hello.newest_attempt.commit == fleet["h3"]
        assert (shop.app, shop.state) == ("shop", DIFFERS)

    def test_in_sync_and_table(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A)
        promoted(env_repo, "hello", c1, "cd-1")
        result = cli("status", "--repo", env_repo.url, "--app", "hello")
        assert result.code == 0, result.stderr
        header, row = result.stdout.strip().splitlines()
        assert header.split()[:3] == ["APP", "PRODUCTION", "IMAGE"]
        assert row.startswith("hello") and row.endswith(IN_SYNC)
        assert f"hello@{DIGEST_A[:19]}" in row and "cd-1" in row

    def test_unknown_app(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str]) -> None:
        assert_bad_input(cli("status", "--repo", env_repo_fleet.url, "--app", "nope"),
                         "unknown app 'nope'", "hello, shop")


class RecordingRunner:
    def __init__(self) -> None:
        self.plans: list[rollback.RollbackPlan] = []

    def run_trigger(self, plan: rollback.RollbackPlan) -> str:
        self.plans.append(plan)
        return BUILD_ID


class TestRollback:
    """The target resolves to the candidate commit that produced it; the trigger runs there."""

    @pytest.mark.parametrize("ref,expected", [
        ("-1", "h2"),  # the entry before the current rollback: promote of h2
        ("-2", "h1"),
        ("p2", "h2"),  # a production commit
        (f"sha256:{'b' * 64}", "h2"),  # an image digest
        (f"{image_ref('hello', DIGEST_C)}", "h3"),  # a full reference, never promoted
    ])
    def test_resolution(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str],
                        ref: str, expected: str) -> None:
        ref = fleet[ref][:10] if ref in fleet else ref
        plan = rollback.plan_rollback(env_repo_fleet.url, "hello", ref, "acme-delivery",
                                      "europe-west1")
        assert (plan.commit, plan.trigger) == (fleet[expected], "deliver-hello")
        runner = RecordingRunner()
        result = rollback.run_rollback(plan, runner)
        assert runner.plans == [plan]
        assert result.link == ("https://console.cloud.google.com/cloud-build/builds;region="
                               f"europe-west1/{BUILD_ID}?project=acme-delivery")

    def test_request_names_the_regional_trigger(self) -> None:
        plan = rollback.RollbackPlan(app="hello", commit="a" * 40, what="-1",
                                     project="acme-delivery", region="europe-west1",
                                     trigger="deliver-hello")
        request = rollback.build_request(plan)
        assert request.name == \
            "projects/acme-delivery/locations/europe-west1/triggers/deliver-hello"
        assert request.project_id == "acme-delivery"
        assert request.trigger_id == "deliver-hello"
        assert request.source.commit_sha == "a" * 40

    def test_client_uses_the_regional_endpoint(self) -> None:
        client = rollback.regional_client("europe-west1", AnonymousCredentials())
        assert client.api_endpoint == "europe-west1-cloudbuild.googleapis.com"

    def test_cloud_build_calls_the_trigger_region(self) -> None:
        """The API is reached through a client made for the plan's region, with its request."""
        made: list[tuple[str, Any]] = []

        class Operation:
            class metadata:  # noqa: N801  (the shape of the API's operation)
                class build:  # noqa: N801
                    id = BUILD_ID

        class Client:
            def __init__(self, region: str) -> None:
                self.region = region

            def run_build_trigger(self, request: Any) -> type[Operation]:
                made.append((self.region, request))
                return Operation

        plan = rollback.RollbackPlan(app="hello", commit="b" * 40, what="-1",
                                     project="acme-delivery", region="us-east4",
                                     trigger="deliver-hello")
        assert rollback.CloudBuild(Client).run_trigger(plan) == BUILD_ID
        ((region, request),) = made
        assert region == "us-east4"
        assert request == rollback.build_request(plan)

    def test_api_errors_are_one_operational_line(self) -> None:
        def failing(region: str) -> Any:
            raise RuntimeError("403 Permission 'cloudbuild.builds.create' denied\non trigger")

        plan = rollback.RollbackPlan(app="hello", commit="b" * 40, what="-1",
                                     project="acme-delivery", region="us-east4",
                                     trigger="deliver-hello")
        with pytest.raises(OperationFailed,
                           match=r"cannot run trigger projects/acme-delivery/locations/us-east4/"
                                 r"triggers/deliver-hello: 403 .* denied on trigger"):
            rollback.CloudBuild(failing).run_trigger(plan)

    def test_dry_run_runs_nothing(self, env_repo_fleet: EnvRepoOnDisk,
                                  fleet: dict[str, str]) -> None:
        result = cli("rollback", "--repo", env_repo_fleet.url, "--app", "hello",
                            "--target", "-1", "--project", "acme-delivery",
                            "--region", "europe-west1", "--dry-run",
                            "--trigger", "deliver-hello-eu")
        assert result.code == 0, result.stderr
        out = result.last_line
        assert out.startswith("dry run, nothing started:")
        assert f"at candidate commit {fleet['h2']}" in out and "deliver-hello-eu" in out

    def test_branch_options_mean_branches(self, env_repo_fleet: EnvRepoOnDisk,
                                          fleet: dict[str, str]) -> None:
        """--to names the production branch here as everywhere; the target is --target."""
        result = cli("rollback", "--repo", env_repo_fleet.url, "--app", "hello",
                            "--target", "-1", "--to", "nope", "--project", "acme-delivery",
                            "--region", "europe-west1", "--dry-run")
        assert_bad_input(result, "--target -1: production holds only 0 entries for hello")

    @pytest.mark.parametrize("args,fragment", [
        (["--app", "ghost", "--target", "-1"], "unknown app 'ghost'"),
        (["--app", "hello", "--target", "-9"], "production holds only 3 entries"),
        (["--app", "hello", "--target", "sha256:" + "f" * 64], "no candidate attempt"),
        (["--app", "hello", "--target", "abcdef0"], "not a production entry"),
        (["--app", "hello", "--target", "latest"], "give a production commit"),
        (["--app", "hello", "--to", "-1"], "the following arguments are required: --target"),
    ])
    def test_refused_and_nothing_run(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str],
                                     args: list[str], fragment: str) -> None:
        before = env_repo_fleet.snapshot()
        result = cli("rollback", "--repo", env_repo_fleet.url, "--project", "acme-delivery",
                            "--region", "europe-west1", *args)
        assert_bad_input(result, fragment)
        assert env_repo_fleet.snapshot() == before


class TestFreeze:
    """A frozen app's delivery makes no cluster call and no production commit."""

    def test_frozen_delivery_does_nothing(self, env_repo: EnvRepoOnDisk,
                                          tmp_path: Path) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A)
        deliver_to(env_repo, good)
        frozen = cli("freeze", "--repo", env_repo.url, "--app", "hello", "--reason",
                            "incident 42")
        assert frozen.code == 0, frozen.stderr
        assert env_repo.files(frozen.last_line)[".gitops/frozen/hello"] == "incident 42"
        (hello,) = status(env_repo.url, "hello")
        assert (hello.frozen, hello.frozen_reason) == (True, "incident 42")
        pending = publish(env_repo, tmp_path, "hello", DIGEST_B)
        production = env_repo.tip("production")
        outcome, cluster = deliver_to(env_repo, pending)
        assert outcome is Outcome.FROZEN
        assert cluster.calls == []
        assert env_repo.tip("production") == production

        thawed = cli("unfreeze", "--repo", env_repo.url, "--app", "hello")
        assert thawed.code == 0, thawed.stderr
        assert ".gitops/frozen/hello" not in env_repo.files(thawed.last_line)
        outcome, cluster = deliver_to(env_repo, pending)
        assert outcome is Outcome.PROMOTED and cluster.calls
        assert env_repo.subject(env_repo.tip("production") or "").startswith("Promote hello:")
        subjects = [env_repo.subject(c) for c in env_repo.log("candidate", ".gitops")]
        assert subjects == ["Unfreeze hello", "Freeze hello: incident 42"]

    def test_freeze_is_idempotent_and_keeps_manifests(self, env_repo: EnvRepoOnDisk,
                                                      tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        first = set_freeze(env_repo.url, "hello", True)
        again = set_freeze(env_repo.url, "hello", True)
        assert (first.changed, again.changed, again.commit) == (True, False, first.commit)
        after = publish(env_repo, tmp_path, "hello", DIGEST_B)
        assert ".gitops/frozen/hello" in env_repo.files(after)  # publish keeps the freeze
        env_repo.assert_history_clean("candidate")

    def test_unknown_app(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        before = env_repo.snapshot()
        assert_bad_input(cli("freeze", "--repo", env_repo.url, "--app", "ghost"),
                         "unknown app 'ghost'")
        assert env_repo.snapshot() == before
