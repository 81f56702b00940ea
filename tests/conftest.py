"""Shared fixtures: real git repositories on local disk, the library called directly, and the
step scripts run as processes where the command-line contract or concurrency is the point.

Every env repo a test writes to is checked with `git fsck --strict` when the test ends (the
`env_repo` fixture), so a malformed tree or commit fails the test that made it. Env repos start
as `pulumi up` leaves them: `init_branches` has created `candidate` and `production` (one root
commit, `EnvRepoOnDisk.root`), since no other command creates branches.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fake_api import Objects
from gitops.branches import init_branches
from gitops.cli import run
from gitops.deploy import Cluster
from gitops.promote import PromoteRequest, promote
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests
from gitops.signing import ALLOWED_SIGNERS_ENV, KEY_ENV, public_key_entry
from pubsub_emulator import HOST_ENV as EMULATOR_HOST_ENV
from pubsub_emulator import Emulator, reused_host
from pubsub_emulator import events_topic as schema_topic

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
REGISTRY = "europe-west1-docker.pkg.dev/acme-delivery/apps"
# Short push back-off for every test and every script it starts: collisions still back off,
# with jitter, but the suite does not wait seconds for them.
TEST_ENV = {"GITOPS_PUSH_BACKOFF": "0.005"}


@pytest.fixture(autouse=True, scope="session")
def short_backoff() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in TEST_ENV.items():
            patch.setenv(key, value)
        yield


TEMPLATE: list[Path] = []  # the initialized env repo every EnvRepoOnDisk starts as a copy of


@pytest.fixture(autouse=True, scope="session")
def env_repo_template(tmp_path_factory: pytest.TempPathFactory, short_backoff: None) -> Path:
    """One env repo initialized by the real `init_branches`, copied for every test (a copy is
    a few milliseconds; running init_branches each time would cost a scratch repository)."""
    path = tmp_path_factory.mktemp("template") / "env.git"
    git("init", "--quiet", "--bare", str(path))
    git("config", "core.logAllRefUpdates", "always", cwd=path)
    # No `gc --auto` after every push: a hosted remote packs on its own schedule, and
    # these repositories live for one test.
    git("config", "receive.autogc", "false", cwd=path)
    init_branches(path.as_uri())
    TEMPLATE.append(path)
    return path


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def fsck(repo: Path) -> None:
    """`git fsck --strict`: every object well formed, every tree sorted the way git sorts."""
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=repo,
                          capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    assert proc.returncode == 0, f"git fsck --strict failed in {repo}:\n{proc.stderr}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]


def run_script(name: str, *args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> Result:
    """Run scripts/<name>.py as the builds do: a fresh process."""
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args],
                          capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@cache
def script_module(name: str) -> ModuleType:
    """scripts/<name>.py as a module (its `__main__` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"step_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(name: str, *args: str) -> Result:
    """scripts/<name>.py in this process, exactly as its `__main__` block runs it: the same
    parsing, error mapping and output, without a new interpreter (run_script starts one)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(script_module(name).main, list(args))
    return Result(code, out.getvalue(), err.getvalue())


def assert_bad_input(result: Result, *fragments: str) -> None:
    """Exit 2, exactly one `error:` line on stderr naming what was wrong, nothing on stdout."""
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


class EnvRepoOnDisk:
    """A bare env repo whose every ref update is logged, so forced moves can be detected."""

    def __init__(self, path: Path, initialized: bool = True) -> None:
        """initialized: with `candidate` and `production` (init_branches' root commit), as
        after `pulumi up`; otherwise an empty repository."""
        self.path = path
        if initialized:
            shutil.copytree(TEMPLATE[0], path, symlinks=True)
        else:
            git("init", "--quiet", "--bare", str(path))
            git("config", "core.logAllRefUpdates", "always", cwd=path)
            git("config", "receive.autogc", "false", cwd=path)
        self.root = self.tip("candidate")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def tip(self, branch: str) -> str | None:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                             cwd=self.path, capture_output=True, text=True)
        return out.stdout.strip() or None

    def log(self, branch: str, *paths: str) -> list[str]:
        out = git("rev-list", f"refs/heads/{branch}", "--", *paths, cwd=self.path)
        return out.split() if out else []

    def message(self, commit: str) -> str:
        return git("log", "-1", "--format=%B", commit, cwd=self.path)

    def subject(self, commit: str) -> str:
        return git("log", "-1", "--format=%s", commit, cwd=self.path)

    def files(self, ref: str, prefix: str = "") -> dict[str, str]:
        names = git("ls-tree", "-r", "--name-only", ref, *(["--", prefix] if prefix else []),
                    cwd=self.path).split()
        return {name: git("show", f"{ref}:{name}", cwd=self.path) for name in names}

    def snapshot(self) -> tuple[str, str]:
        """Every ref and every reachable object: equal snapshots mean nothing changed."""
        refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.path)
        objects = git("rev-list", "--objects", "--all", cwd=self.path)
        return refs, "\n".join(sorted(objects.splitlines()))

    def ref_updates(self, branch: str) -> list[tuple[str, str]]:
        """(old, new) of every update of the branch, from its reflog."""
        log = self.path / "logs" / "refs" / "heads" / branch
        if not log.exists():
            return []
        return [(line.split()[0], line.split()[1]) for line in log.read_text().splitlines()]

    def assert_history_clean(self, branch: str) -> None:
        """Every update fast-forwards, no commit is empty, history is linear."""
        for old, new in self.ref_updates(branch):
            if set(old) != {"0"}:
                subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                               cwd=self.path, check=True)
        # Every commit of the branch with its tree and parents, in one git call (a parent is
        # always on the branch too: the repository is complete).
        out = git("log", "--format=%H %T %P", f"refs/heads/{branch}", cwd=self.path)
        commits = [line.split() for line in out.splitlines()]
        trees = {fields[0]: fields[1] for fields in commits}
        assert [fields[0] for fields in commits] == self.log(branch)
        for commit, tree, *parents in commits:
            assert len(parents) <= 1, f"merge commit {commit}"
            parent_tree = trees[parents[0]] if parents else ""
            assert tree != parent_tree, f"empty commit {commit} on {branch}"

    def fsck(self) -> None:
        fsck(self.path)


@pytest.fixture
def env_repo(tmp_path: Path) -> Iterator[EnvRepoOnDisk]:
    """A fresh bare env repo; `git fsck --strict` must pass on it when the test ends."""
    repo = EnvRepoOnDisk(tmp_path / "env.git")
    yield repo
    repo.fsck()


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
spec:
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels:
        app: {app}
    spec:
      containers:
        - name: {app}
          image: {image}
"""


def write_manifests(folder: Path, app: str, image: str, extra: dict[str, str] | None = None
                    ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deployment.yaml").write_text(DEPLOYMENT.format(app=app, image=image))
    for name, text in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def image_ref(app: str, digest: str) -> str:
    return f"{REGISTRY}/{app}@{digest}"


def publish(env: EnvRepoOnDisk, tmp_path: Path, app: str, digest: str, build: str = "b-1",
            source_commit: str = "1" * 40) -> str:
    """Publish a one-Deployment app with the library; the new candidate tip."""
    image = image_ref(app, digest)
    folder = write_manifests(tmp_path / f"m-{app}-{digest[7:15]}-{build}", app, image)
    return publish_manifests(PublishRequest(
        repo=env.url, app=app, manifests=folder, images=(image,),
        source_repo=f"https://github.com/acme/{app}", source_commit=source_commit,
        build_id=build)).commit


def promoted(env: EnvRepoOnDisk, app: str, commit: str, build: str) -> str:
    """Promote commit of app with the library; the new production tip."""
    return promote(PromoteRequest(repo=env.url, app=app, commit=commit, build_id=build)).commit


FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")


def fake_cluster_env(folder: Path) -> dict[str, str]:
    """The environment that puts a fake kubectl (tests/fake_kubectl.py) first on PATH, its
    cluster state in folder/cluster; its `kustomize` is the real kubectl's. The wrapper sets
    the fake's own variables: kubectl gets an allowlisted environment."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    state = folder / "cluster"
    real = shutil.which("kubectl") or ""
    kubectl.write_text(f"#!/bin/sh\nFAKE_CLUSTER_DIR={state} FAKE_REAL_KUBECTL={real} "
                       f"exec {sys.executable} {FAKE_KUBECTL} \"$@\"\n")
    kubectl.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_CLUSTER_DIR": str(state),
            "GITOPS_KUBECONFIG": str(folder / "kubeconfig"),
            "GITOPS_LEASE_POLL": "0.2"}


@pytest.fixture
def fake_cluster(tmp_path: Path) -> dict[str, str]:
    """A kubectl on PATH whose cluster state is shared by every process of the test."""
    return fake_cluster_env(tmp_path)


KUBECONFIG_FLAG = "--kubeconfig="


class FakeClock:
    """A monotonic clock the scripted cluster advances while a rollout 'runs'."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedCluster(Cluster):
    """Records every command; answers like kubectl and gcloud would.

    Objects live in `objects` per namespace (tests/fake_api.py: apply never deletes, get and
    delete resolve types as kubectl does). A rollout fails when the manifests applied last
    contain one of `failing`; a delete of one of `failing_deletes` (printed names such as
    `configmap/a`) is refused. Each rollout takes `rollout_seconds` on `clock`.
    """

    failing: frozenset[str] = frozenset()
    failing_deletes: frozenset[str] = frozenset()
    lease: dict[str, Any] | None = None
    applied: list[dict[str, str]] = field(default_factory=list)
    objects: dict[str, Objects] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)  # printed names, in order
    clock: FakeClock = field(default_factory=FakeClock)
    rollout_seconds: float = 0.0

    def namespace(self, name: str) -> Objects:
        return self.objects.setdefault(name, Objects({}))

    def run(self, args: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        args = [a for a in args if not a.startswith(KUBECONFIG_FLAG)]
        self.calls.append(args)
        if args[0] == "gcloud":
            return 0, "", ""
        verb = args[1]
        options = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        flags = {a for a in args if a.startswith("--") and "=" not in a}
        positional = [a for a in args[2:] if not a.startswith("-")]
        if verb == "create":
            if self.lease is not None:
                return 1, "", 'Error from server (AlreadyExists): leases "gitops-delivery"'
            self.lease = json.loads(stdin or "{}")
            self.lease["metadata"]["resourceVersion"] = "7"
            return 0, "", ""
        if verb == "replace":
            self.lease = json.loads(stdin or "{}")
            return 0, "", ""
        if verb == "get" and positional[0] == "lease":
            return (0, json.dumps(self.lease), "") if self.lease else (1, "", "NotFound")
        if verb == "delete" and positional[0] == "lease":
            self.lease = None
            return 0, "", ""
        if verb == "get":
            return self.namespace(options["--namespace"]).get(*positional, flags)
        if verb == "delete":
            printed = f"{positional[0]}/{positional[1]}"
            if printed in self.failing_deletes:
                return 1, "", f"Error from server (Forbidden): cannot delete {printed}"
            code, out, err = self.namespace(options["--namespace"]).delete(*positional, flags)
            if code == 0 and out:
                self.deleted.append(printed)
            return code, out, err
        if verb == "apply":
            folder = Path(options["--filename"])
            self.applied.append({p.name: p.read_text() for p in folder.rglob("*")
                                 if p.is_file()})
            out = self.namespace(options["--namespace"]).apply(
                folder, options.get("--field-manager"))
            return 0, out, ""
        if verb == "rollout":
            self.clock.now += self.rollout_seconds
            current = json.dumps(self.applied[-1])
            if any(marker in current for marker in self.failing):
                return 1, "", f"error: {args[3]} exceeded its progress deadline"
            return 0, "", ""
        raise AssertionError(f"unexpected command {args}")


# --- the Pub/Sub emulator (delivery events) ----------------------------------------------------

EVENTS_PROJECT = "acme-delivery"
_emulator: Emulator | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the emulator as soon as a collected test needs it, so it boots while the tests
    before the first event test run (unless PUBSUB_EMULATOR_HOST names a running one)."""
    global _emulator
    if os.environ.get(EMULATOR_HOST_ENV) or not any(
            "pubsub_host" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    _emulator = Emulator().start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _emulator is not None:
        _emulator.stop()


@pytest.fixture(scope="session")
def pubsub_host() -> str:
    """host:port of a running Pub/Sub emulator; an emulator that cannot start fails the test."""
    host = reused_host()
    if host is not None:
        return host
    emulator = _emulator or Emulator().start()
    emulator.wait()
    return emulator.host


@dataclass
class EventsTopic:
    """A fresh topic with the events schema registered (JSON encoding) and one subscription."""

    name: str
    subscription: str
    subscriber: Any

    def received(self) -> list[dict[str, Any]]:
        """Every message published so far (acknowledged), each data parsed, in publish order."""
        messages: list[Any] = []
        while True:
            response = self.subscriber.pull(request={
                "subscription": self.subscription, "max_messages": 100,
                "return_immediately": True})
            if not response.received_messages:
                break
            messages += response.received_messages
            self.subscriber.acknowledge(request={
                "subscription": self.subscription,
                "ack_ids": [m.ack_id for m in response.received_messages]})
        messages.sort(key=lambda m: m.message.publish_time)
        return [{**json.loads(m.message.data), "attributes": dict(m.message.attributes)}
                for m in messages]


@pytest.fixture
def events_topic(pubsub_host: str, monkeypatch: pytest.MonkeyPatch) -> EventsTopic:
    """GITOPS_EVENTS_TOPIC names a new emulator topic carrying the schema file, as the program
    creates it; the step code publishes there in this process and in the scripts it starts."""
    from google.cloud import pubsub_v1

    from gitops.events import schema_text

    monkeypatch.setenv(EMULATOR_HOST_ENV, pubsub_host)
    topic, subscription = schema_topic(EVENTS_PROJECT, schema_text(), "all")
    subscriber = pubsub_v1.SubscriberClient()
    monkeypatch.setenv("GITOPS_EVENTS_TOPIC", topic)
    monkeypatch.setenv("GITOPS_BUILD_LINK",
                       "https://console.cloud.google.com/cloud-build/builds;region=europe-west1/"
                       "b-1?project=acme-delivery")
    return EventsTopic(topic, subscription, subscriber)


# --- signing keys: real ssh-keygen ed25519 keys, made once per session ------------------------


@dataclass(frozen=True)
class Keys:
    """Private keys by signer name, and the allowed_signers file of `ci` and `delivery`."""

    private: dict[str, str]
    allowed_file: Path

    @property
    def allowed(self) -> str:
        return self.allowed_file.read_text()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    private, entries = {}, []
    for name in ("ci", "delivery", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(folder / name)], check=True)
        private[name] = (folder / name).read_text()
        if name != "stranger":  # a well-formed key nobody allowed
            entries.append(public_key_entry(name, (folder / f"{name}.pub").read_text()))
    allowed = folder / "allowed_signers"
    allowed.write_text("\n".join(entries) + "\n")
    return Keys(private, allowed)


def signing_as(monkeypatch: pytest.MonkeyPatch, keys: Keys, who: str | None,
               verify: bool = False) -> None:
    """The environment a build gets: its own key, and the allowed signers when it checks."""
    if who is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, keys.private[who])
    if verify:
        monkeypatch.setenv(ALLOWED_SIGNERS_ENV, keys.allowed.replace("\n", ";"))
    else:
        monkeypatch.delenv(ALLOWED_SIGNERS_ENV, raising=False)


def app_tree_hash(env: EnvRepoOnDisk, commit: str | None, app: str = "hello") -> str:
    """The fake cluster's hash of apps/<app>/ at commit (relative names and raw bytes)."""
    digest = hashlib.sha256()
    prefix = f"apps/{app}/"
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", str(commit), "--", prefix],
                           cwd=env.path, capture_output=True, text=True, check=True).stdout
    for name in sorted(names.split()):
        data = subprocess.run(["git", "cat-file", "blob", f"{commit}:{name}"], cwd=env.path,
                              capture_output=True, check=True).stdout
        digest.update(name.removeprefix(prefix).encode() + data)
    return digest.hexdigest()
