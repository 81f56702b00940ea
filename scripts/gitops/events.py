"""Delivery events: one JSON message per outcome on a Pub/Sub topic that carries a schema.

Outcomes: promoted, failed_and_reverted, rolled_back, skipped_stale, held_by_freeze,
waiting_for_approval, refused, drift_found, drift_healed. Each message names the app, the
environment, the image digests, the source commit, the env repo commits, the build and its
console link.

Design decisions:
- The message's Avro schema is one file, `delivery_event.avsc` beside this module. The program
  registers that file on the topic (components/events.py), Pub/Sub rejects a message that does
  not match it, and the tests publish through the emulator with the same file registered.
- Avro's JSON encoding wraps union values (`{"string": "x"}`); the schema has no unions, so a
  message is plain JSON a person or a chat hook can read: an absent value is "" or [].
- Publishing never fails a delivery: any error (no library, no credentials, a refused or slow
  publish) is logged in one line and the delivery goes on. A publish waits at most
  GITOPS_EVENTS_TIMEOUT seconds (default 10) and is retried within that time only.
- The topic comes from GITOPS_EVENTS_TOPIC (`projects/P/topics/T`, set by the trigger); without
  one, each event is logged with the message it would have published (the local loop without
  an emulator).
- A held build runs no step, so no build can announce that it waits for approval: the build
  that puts a release on a gated environment's candidate branch says so instead
  (`waiting_for_approval`, naming that environment; gitops.deploy). Cloud Build's own build
  notifications (topic `cloud-builds`, status PENDING) are the other source.
- `kind`, `app` and `environment` are also message attributes, so a subscription can filter
  (`attributes.kind = "failed_and_reverted"`) without parsing the data.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from gitops.cli import log
from gitops.credentials import redact
from gitops.envrepo import EnvRepo
from gitops.errors import one_line
from gitops.trailers import Trailers

SCHEMA_FILE = Path(__file__).with_name("delivery_event.avsc")
TOPIC_ENV = "GITOPS_EVENTS_TOPIC"
TIMEOUT_ENV = "GITOPS_EVENTS_TIMEOUT"
BUILD_LINK_ENV = "GITOPS_BUILD_LINK"  # the build's console page, made by the pipeline
ENVIRONMENT_ENV = "GITOPS_ENVIRONMENT"
DEFAULT_TIMEOUT = 10.0
TOPIC = re.compile(r"projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/topics/[A-Za-z][-A-Za-z0-9_.~+%]{2,254}")


class Kind(Enum):
    PROMOTED = "promoted"
    FAILED_AND_REVERTED = "failed_and_reverted"
    ROLLED_BACK = "rolled_back"
    SKIPPED_STALE = "skipped_stale"
    HELD_BY_FREEZE = "held_by_freeze"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    REFUSED = "refused"
    DRIFT_FOUND = "drift_found"
    DRIFT_HEALED = "drift_healed"


class ObjectState(Enum):
    CHANGED = "changed"
    MISSING = "missing"
    EXTRA = "extra"


@dataclass(frozen=True)
class DriftedObject:
    object: str  # kind/name
    state: ObjectState
    fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "state": self.state.value, "fields": list(self.fields)}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    kind: Kind
    app: str
    environment: str
    build_id: str
    images: tuple[str, ...] = ()
    source_repo: str = ""
    source_commit: str = ""
    candidate_commit: str = ""
    env_repo_commit: str = ""
    console_link: str = ""
    summary: str = ""
    detail: str = ""
    drift: tuple[DriftedObject, ...] = ()
    time: str = field(default_factory=now)

    def to_json(self) -> dict[str, Any]:
        """The message, field for field as the schema orders them."""
        return {
            "kind": self.kind.value, "app": self.app, "environment": self.environment,
            "images": list(self.images), "source_repo": self.source_repo,
            "source_commit": self.source_commit, "candidate_commit": self.candidate_commit,
            "env_repo_commit": self.env_repo_commit, "build_id": self.build_id,
            "console_link": self.console_link, "time": self.time,
            "summary": redact(self.summary),
            "detail": redact(self.detail), "drift": [d.to_json() for d in self.drift],
        }

    def data(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    def attributes(self) -> dict[str, str]:
        return {"kind": self.kind.value, "app": self.app, "environment": self.environment}


@cache
def schema_text() -> str:
    """The Avro schema registered on the topic, as the file holds it."""
    return SCHEMA_FILE.read_text()


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


class Sink(Protocol):
    def publish(self, event: Event) -> None:
        """Deliver one event; raise on failure (emit logs it)."""


class PubSubSink:
    """Publishes to a topic with google-cloud-pubsub, waiting at most `timeout` seconds."""

    def __init__(self, topic: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.topic, self.timeout = topic, timeout
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import warnings

            warnings.filterwarnings("ignore", category=FutureWarning)  # Python-version notices
            from google.cloud.pubsub_v1 import PublisherClient

            self._client = PublisherClient()
        return self._client

    def publish(self, event: Event) -> None:
        from google.api_core.retry import Retry

        future = self.client().publish(self.topic, event.data(),
                                       retry=Retry(timeout=self.timeout), timeout=self.timeout,
                                       **event.attributes())
        future.result(timeout=self.timeout)


class LogOnly:
    """No topic configured: the event is only logged."""

    def publish(self, event: Event) -> None:
        return None


_SINKS: dict[tuple[str, str], Sink] = {}


def sink_from_env() -> Sink:
    """The sink GITOPS_EVENTS_TOPIC and GITOPS_EVENTS_TIMEOUT name (one client per process)."""
    topic, raw = os.environ.get(TOPIC_ENV, ""), os.environ.get(TIMEOUT_ENV, "")
    if (topic, raw) not in _SINKS:
        if topic and not TOPIC.fullmatch(topic):
            raise ValueError(f"{TOPIC_ENV} {topic!r} is not projects/PROJECT/topics/TOPIC")
        timeout = float(raw) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw) else DEFAULT_TIMEOUT
        _SINKS[topic, raw] = PubSubSink(topic, timeout) if topic else LogOnly()
    return _SINKS[topic, raw]


def emit(event: Event, sink: Sink | None = None) -> bool:
    """Publish event; on any failure log one line and go on. True when it was published."""
    what = f"event {event.kind.value} for {event.app}"
    try:
        sink = sink if sink is not None else sink_from_env()
        if isinstance(sink, LogOnly):
            log(f"{what}: logged only (no {TOPIC_ENV}): {redact(event.summary)}\n"
                f"  would publish: {event.data().decode()}")
            return False
        sink.publish(event)
    except Exception as exc:  # never fail the delivery for its announcement
        log(f"{what}: NOT published ({type(exc).__name__}: {one_line(str(exc))})")
        return False
    log(f"{what}: published")
    return True


def environment(default: str) -> str:
    """The environment name the trigger gives (GITOPS_ENVIRONMENT), else default."""
    return os.environ.get(ENVIRONMENT_ENV) or default


def images_of(trailers: dict[str, str]) -> tuple[str, ...]:
    """The image references an env repo commit's `Image` trailers name (one trailer per image;
    one trailer may also list several)."""
    values = trailers.all("Image") if isinstance(trailers, Trailers) else \
        (trailers.get("Image", ""),)
    return tuple(ref for value in values for ref in re.split(r"[\s,]+", value) if ref)


def from_trailers(kind: Kind, app: str, env_name: str, build_id: str,
                  trailers: dict[str, str], **fields: Any) -> Event:
    """An event whose provenance (images, source) comes from a commit's trailers."""
    return Event(kind=kind, app=app, environment=env_name, build_id=build_id,
                 images=images_of(trailers), source_repo=trailers.get("Source-Repo", ""),
                 source_commit=trailers.get("Source-Commit", ""),
                 console_link=os.environ.get(BUILD_LINK_ENV, ""), **fields)


def announce(kind: Kind, env: EnvRepo, app: str, commit: str, target: str, build_id: str,
             env_repo_commit: str | None, summary: str, detail: str = "") -> bool:
    """The event of one delivery outcome for commit (a candidate commit of app); never raises.

    Provenance comes from the commit's trailers; the environment from GITOPS_ENVIRONMENT, else
    the target branch's name.
    """
    try:
        event = from_trailers(kind, app, environment(target), build_id, env.trailers(commit),
                              candidate_commit=commit, env_repo_commit=env_repo_commit or "",
                              summary=summary, detail=detail)
    except Exception as exc:  # reading the trailers must not fail the delivery either
        log(f"event {kind.value} for {app}: NOT published ({one_line(str(exc))})")
        return False
    return emit(event)
