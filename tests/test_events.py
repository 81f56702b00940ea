"""Delivery events through the real Pub/Sub emulator, with the schema file registered on the topic.

The emulator enforces the topic's schema (a message that does not match is refused with
INVALID_ARGUMENT, tested below), so every message received here is valid against it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path
from types import ModuleType

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    EnvRepoOnDisk,
    EventsTopic,
    ScriptedCluster,
    image_ref,
    publish,
)
from gitops import events
from gitops.branches import init_branches
from gitops.deploy import DeliveryRequest, Outcome, deliver
from gitops.environments import Environment
from gitops.errors import OperationFailed
from gitops.freeze import set_freeze

CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}
LOCAL_LOOP = Path(__file__).resolve().parent.parent / "examples" / "local_loop.py"
LINK = "https://console.cloud.google.com/cloud-build/builds;region=europe-west1/b-1" \
       "?project=acme-delivery"


def deliver_hello(env: EnvRepoOnDisk, commit: str, build: str,
                  cluster: ScriptedCluster | None = None) -> Outcome:
    used = cluster or ScriptedCluster("kc")
    return deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id=build,
                                   **CLUSTER),
                   cluster_factory=lambda kubeconfig: used, clock=used.clock).outcome


def kinds(messages: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [m["kind"] for m in messages]


class TestSchemaFile:
    """The one schema file describes exactly what the code sends, and the topic enforces it."""

    def test_kinds_and_fields_match_the_code(self) -> None:
        schema = events.schema()
        fields = {f["name"]: f for f in schema["fields"]}
        assert fields["kind"]["type"]["symbols"] == [k.value for k in events.Kind]
        sample = events.Event(events.Kind.PROMOTED, "hello", "production", "b-1").to_json()
        assert list(sample) == list(fields)
        drifted = fields["drift"]["type"]["items"]
        assert [f["name"] for f in drifted["fields"]] == ["object", "state", "fields"]
        assert drifted["fields"][1]["type"]["symbols"] == [s.value for s in events.ObjectState]
        # No unions: Avro's JSON encoding would wrap their values ({"string": ...}).
        assert not any(isinstance(f["type"], list) for f in schema["fields"])

    def test_documented_kinds_and_example_match_the_schema(self) -> None:
        doc = (LOCAL_LOOP.parent.parent / "docs" / "events.md").read_text()
        schema = events.schema()
        symbols = schema["fields"][0]["type"]["symbols"]
        assert sorted(re.findall(r"^\| `([a-z_]+)` \|", doc, re.M)[1:]) == sorted(symbols)
        example = json.loads(re.findall(r"^```json\n(.*?)^```", doc, re.M | re.S)[0])
        assert list(example) == [f["name"] for f in schema["fields"]]
        assert example["kind"] == events.Kind.WAITING_FOR_APPROVAL.value

    def test_topic_refuses_what_does_not_match(self, events_topic: EventsTopic) -> None:
        from google.api_core.exceptions import InvalidArgument
        from google.cloud import pubsub_v1

        good = events.Event(events.Kind.PROMOTED, "hello", "production", "b-1").to_json()
        publisher = pubsub_v1.PublisherClient()
        for bad in ({**good, "kind": "deployed"}, {k: v for k, v in good.items() if k != "app"},
                    {**good, "images": "not-a-list"}):
            with pytest.raises(InvalidArgument):
                publisher.publish(events_topic.name, json.dumps(bad).encode()).result(timeout=5)
        assert events_topic.received() == []

    def test_every_kind_is_accepted(self, events_topic: EventsTopic) -> None:
        drift = (events.DriftedObject("Deployment/hello", events.ObjectState.CHANGED,
                                      ("spec.replicas",)),
                 events.DriftedObject("ConfigMap/old", events.ObjectState.EXTRA))
        for kind in events.Kind:
            assert events.emit(events.Event(kind, "hello", "production", "b-1", drift=drift))
        received = events_topic.received()
        assert kinds(received) == [k.value for k in events.Kind]
        assert received[0]["attributes"]["kind"] == "promoted"
        assert received[0]["drift"][0] == {"object": "Deployment/hello", "state": "changed",
                                           "fields": ["spec.replicas"]}


class TestDeliveryOutcomes:
    """Each delivery outcome publishes exactly one event that names what happened."""

    def test_a_delivery(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                        events_topic: EventsTopic) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-7",
                         source_commit="7" * 40)
        assert deliver_hello(env_repo, commit, "cd-7") is Outcome.PROMOTED
        [event] = events_topic.received()
        assert {k: v for k, v in event.items() if k not in ("time", "attributes")} == {
            "kind": "promoted", "app": "hello", "environment": "production",
            "images": [image_ref("hello", DIGEST_A)],
            "source_repo": "https://github.com/acme/hello", "source_commit": "7" * 40,
            "candidate_commit": commit, "env_repo_commit": env_repo.tip("production"),
            "build_id": "cd-7", "console_link": LINK,
            "summary": f"hello: promoted {commit[:12]} on production", "detail": "",
            "drift": []}
        assert event["attributes"]["app"] == "hello"
        assert event["attributes"]["environment"] == "production"

    def test_a_failed_rollout(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                              events_topic: EventsTopic) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A)
        deliver_hello(env_repo, good, "cd-1")
        production = env_repo.tip("production")
        bad = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-2")
        with pytest.raises(OperationFailed):
            deliver_hello(env_repo, bad, "cd-2",
                          ScriptedCluster("kc", failing=frozenset({DIGEST_B})))
        promoted, failed = events_topic.received()
        assert promoted["kind"] == "promoted"
        assert failed["kind"] == "failed_and_reverted"
        assert failed["images"] == [image_ref("hello", DIGEST_B)]
        assert failed["candidate_commit"] == bad and failed["build_id"] == "cd-2"
        assert failed["env_repo_commit"] == production == env_repo.tip("production")
        assert "rollout of deployment/hello failed" in failed["detail"]

    def test_a_rollback(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                        events_topic: EventsTopic) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        deliver_hello(env_repo, first, "cd-1")
        second = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-2")
        deliver_hello(env_repo, second, "cd-2")
        deliver_hello(env_repo, first, "cd-3")  # re-running the first delivery
        received = events_topic.received()
        assert kinds(received) == ["promoted", "promoted", "rolled_back"]
        assert received[2]["images"] == [image_ref("hello", DIGEST_A)]
        assert received[2]["env_repo_commit"] == env_repo.tip("production")
        assert received[2]["build_id"] == "cd-3"

    def test_frozen_and_stale(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                              events_topic: EventsTopic) -> None:
        older = publish(env_repo, tmp_path, "hello", DIGEST_A)
        newer = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-2")
        deliver_hello(env_repo, newer, "cd-2")
        assert deliver_hello(env_repo, older, "cd-1") is Outcome.STALE
        set_freeze(env_repo.url, "hello", True, "incident 42")
        assert deliver_hello(env_repo, newer, "cd-3") is Outcome.FROZEN
        received = events_topic.received()
        assert kinds(received) == ["promoted", "skipped_stale", "held_by_freeze"]
        assert received[1]["candidate_commit"] == older
        assert received[2]["detail"] == "incident 42"


# dev chains to staging (no gate), staging to production (approval required).
DEV = Environment("dev", "candidate", "dev-production", namespace_suffix="-dev")
STAGING = Environment("staging", "staging-candidate", "staging-production",
                      namespace_suffix="-staging")
PRODUCTION = Environment("production", "production-candidate", "production-production",
                         approval=True)


class NoApproval:
    """The gated build's Build resource carries no approval."""

    def approver(self, project: str, region: str, build_id: str) -> str:
        raise OperationFailed(f"build {build_id} runs in a gated environment but carries no "
                              "approval (state PENDING)")


def deliver_in(env: EnvRepoOnDisk, where: Environment, following: Environment | None,
               commit: str, build: str, approvals: NoApproval | None = None) -> Outcome:
    cluster = ScriptedCluster("kc")
    return deliver(DeliveryRequest(
        repo=env.url, app="hello", commit=commit, build_id=build, source=where.candidate,
        target=where.production, namespace=where.namespace("hello"), environment=where.name,
        next_environment=following.name if following else None,
        next_candidate=following.candidate if following else None, region="europe-west1",
        record_approval=where.approval, **CLUSTER),
        cluster_factory=lambda kubeconfig: cluster, clock=cluster.clock,
        approvals=approvals).outcome


class TestApprovalsAndRefusals:
    """A release published to a gated environment's candidate announces, once, that it waits
    for approval there (an ungated one: nothing); a build that refuses to deliver (no
    approval; signatures that do not verify: test_signing.py) says so and why, and changes
    nothing."""

    def test_waiting_for_approval_only_where_a_gate_holds_it(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, events_topic: EventsTopic,
            monkeypatch: pytest.MonkeyPatch) -> None:
        init_branches(env_repo.url, environments=[DEV, STAGING, PRODUCTION])
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-7",
                         source_commit="7" * 40)
        monkeypatch.setenv(events.ENVIRONMENT_ENV, "dev")
        deliver_in(env_repo, DEV, STAGING, commit, "cd-dev")  # into staging: no gate
        staged = env_repo.tip(STAGING.candidate) or ""
        monkeypatch.setenv(events.ENVIRONMENT_ENV, "staging")
        deliver_in(env_repo, STAGING, PRODUCTION, staged, "cd-staging")
        waiting = env_repo.tip(PRODUCTION.candidate)
        received = events_topic.received()
        assert kinds(received) == ["promoted", "promoted", "waiting_for_approval"]
        event = received[2]
        assert {k: v for k, v in event.items() if k not in ("time", "attributes")} == {
            "kind": "waiting_for_approval", "app": "hello", "environment": "production",
            "images": [image_ref("hello", DIGEST_A)],
            "source_repo": "https://github.com/acme/hello", "source_commit": "7" * 40,
            "candidate_commit": waiting, "env_repo_commit": waiting,
            "build_id": "cd-staging", "console_link": LINK,
            "summary": f"hello: {waiting[:12]} on production-candidate waits for approval "
                       f"in production",
            "detail": f"promoted in staging; the deliver-hello-production build of "
                      f"{waiting[:12]} is held until an approver approves it (Cloud Build "
                      f"history, or gcloud beta builds approve BUILD_ID --location=REGION)",
            "drift": []}
        assert {k: event["attributes"][k] for k in ("kind", "app", "environment")} == {
            "kind": "waiting_for_approval", "app": "hello", "environment": "production"}
        # Validated by the topic against the registered schema file (the emulator says so).
        assert event["attributes"]["googclient_schemaname"].startswith(
            "projects/acme-delivery/schemas/delivery-event-")

        # Production's held build runs without an approval on it: refused, nothing changes.
        monkeypatch.setenv(events.ENVIRONMENT_ENV, "production")
        before = env_repo.snapshot()
        with pytest.raises(OperationFailed, match="carries no approval"):
            deliver_in(env_repo, PRODUCTION, None, waiting or "", "cd-prod", NoApproval())
        assert env_repo.snapshot() == before
        [refused] = events_topic.received()
        assert refused["kind"] == "refused" and refused["environment"] == "production"
        assert refused["candidate_commit"] == waiting and refused["build_id"] == "cd-prod"
        assert refused["images"] == [image_ref("hello", DIGEST_A)]
        assert refused["summary"] == \
            f"hello: {waiting[:12]} refused on production-production: no approval"
        assert "carries no approval (state PENDING)" in refused["detail"]


def local_loop() -> ModuleType:
    """examples/local_loop.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("local_loop", LOCAL_LOOP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestLocalLoopEvents:
    """With PUBSUB_EMULATOR_HOST, `make loop` makes a topic there that enforces the schema file,
    and shows every event the builds published to it, in order, drift included."""

    def test_topic_and_listing(self, pubsub_host: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
        from google.api_core.exceptions import InvalidArgument
        from google.cloud import pubsub_v1

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
        loop = local_loop()
        made = loop.emulator_topic()
        assert made is not None
        topic, subscription = made
        with pytest.raises(InvalidArgument):  # the schema is on the topic
            pubsub_v1.PublisherClient().publish(topic, b'{"kind": "deployed"}').result(5)
        monkeypatch.setenv(events.TOPIC_ENV, topic)
        drift = (events.DriftedObject("HorizontalPodAutoscaler/hello",
                                      events.ObjectState.CHANGED, ("spec.maxReplicas",)),)
        for kind, summary in ((events.Kind.WAITING_FOR_APPROVAL, "hello: waits"),
                              (events.Kind.DRIFT_FOUND, "hello: drifted")):
            assert events.emit(events.Event(kind, "hello", "production", "b-1",
                                            summary=summary, drift=drift))
        capsys.readouterr()
        assert kinds(loop.show_events(subscription)) == ["waiting_for_approval", "drift_found"]
        lines = capsys.readouterr().out.splitlines()
        assert lines[2:] == [
            "waiting_for_approval   production  hello  hello: waits",
            f"{'':42} changed HorizontalPodAutoscaler/hello: spec.maxReplicas",
            "drift_found            production  hello  hello: drifted",
            f"{'':42} changed HorizontalPodAutoscaler/hello: spec.maxReplicas"]
        monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
        assert loop.emulator_topic() is None  # without an emulator: logged only


class TestPublishingNeverFailsADelivery:
    """A topic that is missing or does not answer is logged; the delivery goes on."""

    def test_missing_topic(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                           events_topic: EventsTopic, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv(events.TOPIC_ENV, "projects/acme-delivery/topics/no-such-topic")
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        assert deliver_hello(env_repo, commit, "cd-1") is Outcome.PROMOTED
        assert "event promoted for hello: NOT published (NotFound" in capsys.readouterr().out

    def test_silent_endpoint_is_bounded_by_the_timeout(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
        import socket

        with socket.socket() as silent:  # accepts connections, never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{silent.getsockname()[1]}")
            monkeypatch.setenv(events.TOPIC_ENV, "projects/acme-delivery/topics/gitops-events")
            monkeypatch.setenv(events.TIMEOUT_ENV, "0.5")
            commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
            started = time.monotonic()
            assert deliver_hello(env_repo, commit, "cd-1") is Outcome.PROMOTED
            assert time.monotonic() - started < 20  # bounded, not Pub/Sub's 600 s default
        assert "event promoted for hello: NOT published" in capsys.readouterr().out

    def test_bad_topic_name_is_logged(self, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv(events.TOPIC_ENV, "gitops-events; rm -rf /")
        assert not events.emit(events.Event(events.Kind.PROMOTED, "hello", "production", "b"))
        assert "NOT published (ValueError" in capsys.readouterr().out

    def test_no_topic_logs_only(self, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.delenv(events.TOPIC_ENV, raising=False)
        assert not events.emit(events.Event(events.Kind.PROMOTED, "hello", "production", "b",
                                            summary="hello: promoted"))
        assert "logged only (no GITOPS_EVENTS_TOPIC): hello: promoted" in \
            capsys.readouterr().out
