"""Operator commands: status, rollback and freeze, on real local repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rollback
from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    assert_bad_input,
    image_ref,
    promoted,
    publish,
    run_script,
)
from test_deploy import ScriptedCluster, deliver


@pytest.fixture(scope="module")
def fleet_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[EnvRepoOnDisk, dict[str, str]]:
    """hello: 3 attempts, promotes of 1 and 2, rollback to 1; shop: 1 promoted, 1 pending.

    Shared by the tests of this module, which only read it.
    """
    tmp_path = tmp_path_factory.mktemp("fleet")
    env_repo = EnvRepoOnDisk(tmp_path / "env.git")
    c = {}
    c["h1"] = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-h1").last_line
    c["s1"] = publish(env_repo, tmp_path, "shop", DIGEST_A, build="ci-s1").last_line
    c["h2"] = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-h2").last_line
    c["p1"] = promoted(env_repo, "hello", c["h1"], "cd-h1")
    c["ps1"] = promoted(env_repo, "shop", c["s1"], "cd-s1")
    c["p2"] = promoted(env_repo, "hello", c["h2"], "cd-h2")
    c["h3"] = publish(env_repo, tmp_path, "hello", DIGEST_C, build="ci-h3").last_line
    c["p3"] = promoted(env_repo, "hello", c["h1"], "cd-h1-rerun")
    c["s2"] = publish(env_repo, tmp_path, "shop", DIGEST_B, build="ci-s2").last_line
    return env_repo, c


@pytest.fixture
def env_repo_fleet(fleet_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> EnvRepoOnDisk:
    return fleet_repo[0]


@pytest.fixture
def fleet(fleet_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> dict[str, str]:
    return fleet_repo[1]


class TestStatus:
    """Production beside the newest attempt, per app, from git alone."""

    def test_json(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str]) -> None:
        result = run_script("status", "--repo", env_repo_fleet.url, "--json")
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

    def test_in_sync_and_table(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A).last_line
        promoted(env_repo, "hello", c1, "cd-1")
        result = run_script("status", "--repo", env_repo.url, "--app", "hello")
        assert result.code == 0, result.stderr
        header, row = result.stdout.strip().splitlines()
        assert header.split()[:3] == ["APP", "PRODUCTION", "IMAGE"]
        assert row.startswith("hello") and row.endswith("in sync")
        assert f"hello@{DIGEST_A[:19]}" in row and "cd-1" in row

    def test_unknown_app(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str]) -> None:
        assert_bad_input(run_script("status", "--repo", env_repo_fleet.url, "--app", "nope"),
                         "unknown app 'nope'", "hello, shop")


class RecordingApi(rollback.CloudBuildApi):
    def __init__(self) -> None:
        self.requests: list = []

    def run_trigger(self, request):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return "5b1f3c1e-7d2a-4e43-9a0e-8c2f7e1d9b44"


def run_rollback(env: EnvRepoOnDisk, ref: str, *extra: str) -> tuple[str, RecordingApi]:
    api = RecordingApi()
    out = rollback.main(["--repo", env.url, "--app", "hello", "--to", ref,
                         "--project", "acme-delivery", "--region", "europe-west1", *extra],
                        api=api)
    return out, api


class TestRollback:
    """REF resolves to the candidate commit that produced it; the trigger runs there."""

    @pytest.mark.parametrize("ref,expected", [
        ("-1", "h2"),  # the entry before the current rollback: promote of h2
        ("-2", "h1"),
        ("p2", "h2"),  # a production commit
        (f"sha256:{'b' * 64}", "h2"),  # an image digest
        (f"{image_ref('hello', DIGEST_C)}", "h3"),  # a full reference, never promoted
    ])
    def test_resolution_and_request(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str],
                                    ref: str, expected: str) -> None:
        ref = fleet[ref][:10] if ref in fleet else ref
        link, api = run_rollback(env_repo_fleet, ref)
        (request,) = api.requests
        assert request.name == "projects/acme-delivery/locations/europe-west1/triggers/" \
                               "deliver-hello"
        assert request.project_id == "acme-delivery"
        assert request.trigger_id == "deliver-hello"
        assert request.source.commit_sha == fleet[expected]
        assert link == ("https://console.cloud.google.com/cloud-build/builds;region="
                        "europe-west1/5b1f3c1e-7d2a-4e43-9a0e-8c2f7e1d9b44?project=acme-delivery")

    def test_dry_run_runs_nothing(self, env_repo_fleet: EnvRepoOnDisk,
                                  fleet: dict[str, str]) -> None:
        out, api = run_rollback(env_repo_fleet, "-1", "--dry-run", "--trigger",
                                "deliver-hello-eu")
        assert api.requests == []
        assert out.startswith("dry run, nothing started:")
        assert f"at candidate commit {fleet['h2']}" in out and "deliver-hello-eu" in out

    @pytest.mark.parametrize("args,fragment", [
        (["--app", "ghost", "--to", "-1"], "unknown app 'ghost'"),
        (["--app", "hello", "--to", "-9"], "production holds only 3 entries"),
        (["--app", "hello", "--to", "sha256:" + "f" * 64], "no candidate attempt"),
        (["--app", "hello", "--to", "abcdef0"], "not a production entry"),
        (["--app", "hello", "--to", "latest"], "give a production commit"),
    ])
    def test_refused_and_nothing_run(self, env_repo_fleet: EnvRepoOnDisk, fleet: dict[str, str],
                                     args: list[str], fragment: str) -> None:
        before = env_repo_fleet.snapshot()
        result = run_script("rollback", "--repo", env_repo_fleet.url, "--project", "acme-delivery",
                            "--region", "europe-west1", *args)
        assert_bad_input(result, fragment)
        assert env_repo_fleet.snapshot() == before


class TestFreeze:
    """A frozen app's delivery makes no cluster call and no production commit."""

    def test_frozen_delivery_does_nothing(self, env_repo: EnvRepoOnDisk,
                                          tmp_path: Path) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A).last_line
        deliver(env_repo, good)
        frozen = run_script("freeze", "--repo", env_repo.url, "--app", "hello", "--reason",
                            "incident 42")
        assert frozen.code == 0, frozen.stderr
        assert env_repo.files(frozen.last_line)[".gitops/frozen/hello"] == "incident 42"
        pending = publish(env_repo, tmp_path, "hello", DIGEST_B).last_line
        production = env_repo.tip("production")
        cluster = ScriptedCluster("kc")
        deliver(env_repo, pending, cluster)
        assert cluster.calls == []
        assert env_repo.tip("production") == production

        thawed = run_script("unfreeze", "--repo", env_repo.url, "--app", "hello")
        assert thawed.code == 0, thawed.stderr
        assert ".gitops/frozen/hello" not in env_repo.files(thawed.last_line)
        tip, cluster = deliver(env_repo, pending)
        assert cluster.calls and env_repo.subject(tip).startswith("Promote hello:")
        subjects = [env_repo.subject(c) for c in env_repo.log("candidate", ".gitops")]
        assert subjects == ["Unfreeze hello", "Freeze hello: incident 42"]

    def test_freeze_is_idempotent_and_keeps_manifests(self, env_repo: EnvRepoOnDisk,
                                                      tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        first = run_script("freeze", "--repo", env_repo.url, "--app", "hello")
        again = run_script("freeze", "--repo", env_repo.url, "--app", "hello")
        assert first.last_line == again.last_line
        after = publish(env_repo, tmp_path, "hello", DIGEST_B).last_line
        assert ".gitops/frozen/hello" in env_repo.files(after)  # publish keeps the freeze
        env_repo.assert_history_clean("candidate")

    def test_unknown_app(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        before = env_repo.snapshot()
        assert_bad_input(run_script("freeze", "--repo", env_repo.url, "--app", "ghost"),
                         "unknown app 'ghost'")
        assert env_repo.snapshot() == before
