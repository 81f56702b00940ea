"""The Pub/Sub emulator for the event tests: started once, reused when already running.

    python3 tests/pubsub_emulator.py -- COMMAND...   run COMMAND with an emulator up
                                                     (PUBSUB_EMULATOR_HOST set), then stop it

`.ci/run` wraps `make test` this way, so the emulator boots while lint and the type checker
run; the test session reuses it through PUBSUB_EMULATOR_HOST and starts its own only when that
is unset. An emulator that cannot start, or a PUBSUB_EMULATOR_HOST nobody answers on, fails the
tests that need it: they never skip. Standard library only (CI runs this before any venv).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST_ENV = "PUBSUB_EMULATOR_HOST"
START_TIMEOUT = 90.0  # seconds; it boots in 3-4 s on an idle 2-core machine


class EmulatorError(RuntimeError):
    """The emulator could not be started or reached."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(host: str) -> bool:
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name or "localhost", int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


class Emulator:
    """`gcloud beta emulators pubsub start` in its own process group, so stop() ends the
    gcloud wrapper and the Java server it starts, and nothing else."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"localhost:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="pubsub-emulator-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> Emulator:
        """Launch it; returns at once (wait() blocks until it answers)."""
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                ["gcloud", "beta", "emulators", "pubsub", "start",
                 f"--host-port={self.host}", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True)
        except OSError as exc:
            raise EmulatorError(f"cannot run gcloud to start the Pub/Sub emulator: {exc}") \
                from None
        return self

    def wait(self, timeout: float = START_TIMEOUT) -> float:
        """Block until the emulator answers; the seconds since start()."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EmulatorError(f"the Pub/Sub emulator exited ({self.proc.returncode}):\n"
                                    f"{self.tail()}")
            if answers(self.host):
                return time.monotonic() - self.started
            time.sleep(0.05)
        self.stop()
        raise EmulatorError(f"the Pub/Sub emulator did not answer on {self.host} within "
                            f"{timeout:.0f}s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # our own group: gcloud and its Java child
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def reused_host() -> str | None:
    """PUBSUB_EMULATOR_HOST when set (it must answer, within the start timeout), else None."""
    host = os.environ.get(HOST_ENV)
    if not host:
        return None
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(host):
        if time.monotonic() > deadline:
            raise EmulatorError(f"{HOST_ENV}={host} is set but no emulator answers there")
        time.sleep(0.05)
    return host


def events_topic(project: str, schema_definition: str, subscriber_name: str) -> tuple[str, str]:
    """On the emulator PUBSUB_EMULATOR_HOST names: a new topic carrying the events schema, as
    `pulumi up` creates it (Avro, JSON encoding), and a subscription to it; (topic,
    subscription). The client library is imported here: the wrapper itself needs none."""
    import uuid
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # Python-version notices
    from google.cloud import pubsub_v1
    from google.pubsub_v1.types import Encoding, Schema

    suffix = uuid.uuid4().hex[:12]
    schema = f"projects/{project}/schemas/delivery-event-{suffix}"
    topic = f"projects/{project}/topics/gitops-events-{suffix}"
    subscription = f"projects/{project}/subscriptions/{subscriber_name}-{suffix}"
    pubsub_v1.SchemaServiceClient().create_schema(request={
        "parent": f"projects/{project}", "schema_id": schema.rsplit("/", 1)[1],
        "schema": Schema(type_=Schema.Type.AVRO, definition=schema_definition)})
    pubsub_v1.PublisherClient().create_topic(request={
        "name": topic, "schema_settings": {"schema": schema, "encoding": Encoding.JSON}})
    pubsub_v1.SubscriberClient().create_subscription(request={"name": subscription,
                                                              "topic": topic})
    return topic, subscription


def main(argv: list[str]) -> int:
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: pubsub_emulator.py -- COMMAND...", file=sys.stderr)
        return 2
    if os.environ.get(HOST_ENV):
        return subprocess.call(argv[1:])
    emulator = Emulator().start()
    print(f"Pub/Sub emulator starting on {emulator.host} (log {emulator.log})", flush=True)
    try:
        return subprocess.call(argv[1:], env={**os.environ, HOST_ENV: emulator.host})
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
