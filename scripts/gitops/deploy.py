"""Deliver one app: apply a candidate commit to GKE, verify the rollout, promote to production.

Under the app's Lease (namespace APP, `gitops-delivery`), so overlapping deliveries of one app
run one at a time and production's tip is always what the cluster last applied successfully:

1. the commit's `apps/APP/` manifests are applied to namespace APP;
2. every Deployment, StatefulSet and DaemonSet they hold must finish its rollout before one
   deadline (the timeout counts for all of them together, not for each);
3. success: `gitops.promote.promote` records the commit on production (Promote, or Rollback for
   an older commit that production held before); failure: what production holds for the app
   is re-applied, so cluster and production agree again, and the build fails.
4. a rollout that succeeded but cannot be recorded on production (production protected, the
   push refused or timing out) is treated like a failed rollout: production's tree is
   re-applied and the build fails, saying loudly what happened and what the cluster runs.

A commit older than production's, which production never held, is a stale build that lost the
race to a newer one: it is skipped, not rolled back to. A frozen app (`.gitops/frozen/APP` on
the source branch) is not deployed: the build says so and succeeds.

Cluster access goes through one small boundary (`Cluster`), which the tests replace. Without a
cluster (GITOPS_NO_CLUSTER=1, used by the local loop) the manifests are validated only, and the
output says so plainly. kubectl and gcloud get an allowlisted environment (no git token), and
each call a deadline: a rollout wait its own timeout plus a minute, any other call 5 minutes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from gitops import processes, scratch
from gitops.checks import (
    check_app,
    check_branch,
    check_gcloud_names,
    check_remote,
    check_sha,
    check_trailer_value,
)
from gitops.cli import log
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.promote import PromoteRequest, promote, promoted_from
from gitops.retry import RetryPolicy
from gitops.settings import env_seconds, whole_seconds
from gitops.status import freeze_note

APPS_DIR = "apps"
PROMOTED_DIR = ".gitops/promoted"
LEASE_NAME = "gitops-delivery"
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
NO_CLUSTER_ENV = "GITOPS_NO_CLUSTER"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"
LEASE_POLL_ENV = "GITOPS_LEASE_POLL"  # seconds between attempts on a held Lease
DEFAULT_LEASE_POLL = 5.0
MAX_LEASE_POLL = 300.0
# Cloud Build's longest build is 24 h; delivery needs lock wait + apply + revert within it.
MAX_ROLLOUT_TIMEOUT = 21_450
MAX_LOCK_TIMEOUT = 86_400
CALL_TIMEOUT = 300.0  # seconds for a kubectl or gcloud call other than a rollout wait
ROLLOUT_GRACE = 60.0  # beyond a rollout wait's own --timeout

Clock = Callable[[], float]


@dataclass
class Cluster:
    """The only place that runs kubectl or gcloud. Tests replace `run`."""

    kubeconfig: str
    calls: list[list[str]] = field(default_factory=list)

    def run(self, args: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        """Exit code, stdout, stderr; a call past its deadline is killed and fails (124)."""
        env = processes.tool_environment({"KUBECONFIG": self.kubeconfig})
        timeout = call_timeout(args)
        try:
            verb = next((a for a in args[1:] if not a.startswith("-")), "")
            return processes.run(args, env, timeout, f"{args[0]} {verb}",
                                 data=None if stdin is None else stdin.encode())
        except OperationFailed as exc:  # timed out: a failed call like any other
            return 124, "", str(exc)
        except OSError as exc:  # not installed, not executable
            return 127, "", f"cannot run {args[0]}: {exc.strerror}"

    def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return self.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], stdin)

    def get_credentials(self, project: str, cluster: str, location: str) -> None:
        code, _, err = self.run(["gcloud", "container", "clusters", "get-credentials", cluster,
                                 f"--location={location}", f"--project={project}"])
        if code != 0:
            raise OperationFailed(f"cannot get credentials for cluster {cluster}: "
                                  f"{' '.join(err.split())}")


def call_timeout(args: Sequence[str]) -> float:
    """A rollout wait's own --timeout plus a grace period; CALL_TIMEOUT for any other call."""
    for arg in args:
        if arg.startswith("--timeout=") and arg.endswith("s") and arg[10:-1].isdigit():
            return int(arg[10:-1]) + ROLLOUT_GRACE
    return CALL_TIMEOUT


def lease_poll() -> float:
    """Seconds between attempts on a Lease another build holds (GITOPS_LEASE_POLL)."""
    return env_seconds(LEASE_POLL_ENV, DEFAULT_LEASE_POLL, 0.01, MAX_LEASE_POLL)


# --- the Lease: one delivery per app at a time ------------------------------------------------


def lease_manifest(app: str, holder: str, seconds: int, resource_version: str | None) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    metadata: dict[str, str] = {"name": LEASE_NAME, "namespace": app}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return json.dumps({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                 "acquireTime": now, "renewTime": now},
    })


def lease_expired(spec: dict[str, Any], now: float) -> bool:
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not spec.get("holderIdentity") or not renewed:
        return True
    stamp = datetime.strptime(str(renewed).replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return stamp.timestamp() + int(spec.get("leaseDurationSeconds", 0)) < now


def acquire_lease(cluster: Cluster, app: str, holder: str, seconds: int, wait: float,
                  poll: float | None = None) -> None:
    """Create the Lease, or take it over once expired; wait while another build holds it."""
    deadline = time.monotonic() + wait
    poll = poll if poll is not None else lease_poll()
    while True:
        code, _, err = cluster.kubectl("create", "-f", "-",
                                       stdin=lease_manifest(app, holder, seconds, None))
        if code == 0:
            return
        if "AlreadyExists" not in err:
            raise OperationFailed(f"cannot create Lease {app}/{LEASE_NAME}: "
                                  f"{' '.join(err.split())}")
        code, out, err = cluster.kubectl("get", "lease", LEASE_NAME, f"--namespace={app}",
                                         "--output=json")
        if code == 0:
            lease = json.loads(out)
            spec = lease.get("spec", {})
            if spec.get("holderIdentity") == holder:
                return
            if lease_expired(spec, time.time()):
                # resourceVersion makes the takeover fail if someone else took it first.
                version = lease["metadata"]["resourceVersion"]
                code, _, _ = cluster.kubectl(
                    "replace", "-f", "-",
                    stdin=lease_manifest(app, holder, seconds, version))
                if code == 0:
                    return
            holder_now = spec.get("holderIdentity", "?")
        else:
            holder_now = "?"
        if time.monotonic() >= deadline:
            raise OperationFailed(f"delivery of {app} is locked by build {holder_now}; "
                                  f"waited {int(wait)}s")
        log(f"waiting: build {holder_now} is delivering {app}")
        time.sleep(poll)


def release_lease(cluster: Cluster, app: str, holder: str) -> None:
    code, out, _ = cluster.kubectl("get", "lease", LEASE_NAME, f"--namespace={app}",
                                   "--output=json")
    if code == 0 and json.loads(out).get("spec", {}).get("holderIdentity") == holder:
        cluster.kubectl("delete", "lease", LEASE_NAME, f"--namespace={app}",
                        "--ignore-not-found")


# --- manifests --------------------------------------------------------------------------------


def workloads(folder: Path) -> list[tuple[str, str]]:
    """(kind, name) of every workload with a rollout, in file order."""
    import yaml

    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ROLLOUT_KINDS:
                found.append((str(doc["kind"]), str(doc["metadata"]["name"])))
    return found


def apply_and_wait(cluster: Cluster, app: str, folder: Path, timeout: int,
                   clock: Clock = time.monotonic) -> str | None:
    """Apply the folder to namespace app, wait for every rollout; the failure, or None.

    All rollouts share one deadline: each waits only for what remains of the timeout.
    """
    code, out, err = cluster.kubectl("apply", f"--namespace={app}", "--recursive",
                                     f"--filename={folder}")
    if code != 0:
        return f"apply failed: {' '.join(err.split())}"
    for line in out.splitlines():
        log(f"  {line}")
    deadline = clock() + timeout
    for kind, name in workloads(folder):
        remaining = max(1, math.ceil(deadline - clock()))
        code, _, err = cluster.kubectl("rollout", "status", f"{kind.lower()}/{name}",
                                       f"--namespace={app}", f"--timeout={remaining}s")
        if code != 0:
            return f"rollout of {kind.lower()}/{name} failed: {' '.join(err.split())}"
        log(f"  {kind.lower()}/{name} rolled out")
    return None


def validate_only(folder: Path) -> None:
    from gitops.render import DEFAULT_KUBE_VERSION, validate

    for path in sorted(folder.rglob("*")):
        if path.is_file():
            validate(path.read_text(), path.name, {}, DEFAULT_KUBE_VERSION)


# --- decisions --------------------------------------------------------------------------------


class Outcome(Enum):
    PROMOTED = "promoted"  # applied, rolled out, recorded on the target (or already there)
    VALIDATED = "validated"  # no cluster: validated only, then recorded on the target
    STALE = "stale"  # a newer delivery already won: nothing applied
    FROZEN = "frozen"  # the app is frozen: nothing applied


@dataclass(frozen=True)
class DeliveryRequest:
    repo: str
    app: str
    commit: str
    build_id: str
    source: str = "candidate"
    target: str = "production"
    timeout: int = 300  # seconds for all rollouts together
    lock_timeout: int = 1800  # seconds to wait for another delivery of the app
    project: str | None = None
    cluster: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class DeployResult:
    commit: str  # the target's tip afterwards (the commit itself if the target has none)
    outcome: Outcome


def is_stale(env: EnvRepo, source: str, target: str, app: str, commit: str) -> str | None:
    """The newer commit production holds when commit lost the race to it, else None.

    A commit older than production's that production never held is stale; one it held before
    is a rollback, which is delivered.
    """
    tip = env.fetch(target)
    previous = promoted_from(env, tip, app)
    if tip is None or not previous or previous == commit or not env.reach(source, [previous]):
        return None
    if not env.is_ancestor(commit, previous):
        return None
    env.fetch_whole(target)
    held = any(entry.trailers.get("Promoted-From") == commit
               for entry in env.log(tip, f"{PROMOTED_DIR}/{app}"))
    return None if held else previous


def skip_if_stale(env: EnvRepo, source: str, target: str, app: str,
                  commit: str) -> DeployResult | None:
    """A STALE result when commit is a stale build (said so in the log), else None."""
    newer = is_stale(env, source, target, app, commit)
    if newer is None:
        return None
    log(f"skipped: {commit[:12]} is older than {newer[:12]} on {target} and was never there; "
        f"a newer delivery of {app} already won")
    return DeployResult(env.tip(target) or commit, Outcome.STALE)


def check_request(request: DeliveryRequest) -> None:
    check_remote(request.repo)
    check_app(request.app)
    check_sha(request.commit)
    check_branch(request.source)
    check_branch(request.target)
    check_trailer_value("--build-id", request.build_id)
    if request.project and request.cluster and request.location:
        check_gcloud_names(request.project, request.cluster, request.location)
    if not 1 <= request.timeout <= MAX_ROLLOUT_TIMEOUT:
        raise BadInput(f"--timeout must be from 1s to {MAX_ROLLOUT_TIMEOUT}s")
    if not 1 <= request.lock_timeout <= MAX_LOCK_TIMEOUT:
        raise BadInput(f"--lock-timeout must be from 1s to {MAX_LOCK_TIMEOUT}s")
    lease_poll()
    RetryPolicy.from_env()  # promote reads it after the rollout: a bad value must stop us now


def deliver(request: DeliveryRequest, cluster_factory: Callable[[str], Cluster] = Cluster,
            clock: Clock = time.monotonic) -> DeployResult:
    """Apply, verify and promote one candidate commit of one app (see the module docstring)."""
    check_request(request)
    app, commit, source, target = request.app, request.commit, request.source, request.target
    no_cluster = os.environ.get(NO_CLUSTER_ENV) == "1"
    kubeconfig = os.environ.get(KUBECONFIG_ENV)
    if not no_cluster and not kubeconfig and not (request.project and request.cluster and
                                                  request.location):
        raise BadInput("--project, --cluster and --location are required to reach the cluster")

    def promoted(outcome: Outcome) -> DeployResult:
        result = promote(PromoteRequest(repo=request.repo, app=app, commit=commit,
                                        source=source, target=target,
                                        build_id=request.build_id))
        return DeployResult(result.commit, outcome)

    with scratch_repo(request.repo) as env, scratch.folder() as work:
        if env.fetch(source) is None or not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        if env.fetch(target) is None:
            raise BadInput(f"branch {target!r} does not exist in {request.repo}: branches are "
                           "created by init_branches.py (is --to mistyped?)")
        entry = env.lookup(commit, f"{APPS_DIR}/{app}")
        if entry is None or not entry.is_tree:
            raise BadInput(f"app {app!r} has no manifests ({APPS_DIR}/{app}/) at {commit}")
        note = freeze_note(env, source, app)
        if note is not None:
            log(f"{app} is frozen ({note.strip() or 'no reason given'}): "
                f"{commit[:12]} is recorded on {source} but not deployed")
            return DeployResult(env.tip(target) or commit, Outcome.FROZEN)
        candidate = Path(work) / "candidate"
        env.materialize(entry.sha, candidate)

        if no_cluster:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return skipped
            validate_only(candidate)
            log(f"NO CLUSTER: {app} manifests at {commit[:12]} validated only, NOT applied "
                f"({NO_CLUSTER_ENV}=1); promoting to simulate a successful delivery")
            return promoted(Outcome.VALIDATED)

        cluster = cluster_factory(kubeconfig or str(Path(work) / "kubeconfig"))
        if not kubeconfig:
            assert request.project and request.cluster and request.location  # checked above
            cluster.get_credentials(request.project, request.cluster, request.location)
        acquire_lease(cluster, app, request.build_id, 2 * request.timeout + 300,
                      request.lock_timeout)
        try:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return skipped
            log(f"applying {app} at {commit[:12]}")
            failure = apply_and_wait(cluster, app, candidate, request.timeout, clock)
            if failure is None:
                try:
                    return promoted(Outcome.PROMOTED)
                except (OperationFailed, BadInput) as exc:
                    reason = one_line(str(exc))
                log(f"ERROR: {app} at {commit[:12]} rolled out, but {target} did not record "
                    f"it ({reason}); re-applying what {target} holds")
                after = revert(env, cluster, app, target, Path(work) / "production",
                               request.timeout, clock)
                raise OperationFailed(f"{app} at {commit[:12]} rolled out but could not be "
                                      f"recorded on {target} ({reason}); {after}")
            after = revert(env, cluster, app, target, Path(work) / "production",
                           request.timeout, clock)
            raise OperationFailed(f"{app} at {commit[:12]}: {failure}; {after}")
        finally:
            release_lease(cluster, app, request.build_id)


def revert(env: EnvRepo, cluster: Cluster, app: str, target: str, folder: Path,
           timeout: int, clock: Clock = time.monotonic) -> str:
    """Re-apply what production holds for app, so cluster and production agree again.

    Returns what the cluster runs afterwards, for the build's error line.
    """
    tip = env.fetch(target)
    entry = env.lookup(tip, f"{APPS_DIR}/{app}")
    if entry is None or tip is None:
        log(f"revert: {target} holds nothing for {app} yet; nothing to re-apply")
        return (f"{target} holds nothing for {app} yet, so nothing was re-applied: "
                "THE CLUSTER STILL RUNS THIS COMMIT")
    env.materialize(entry.sha, folder)
    log(f"revert: re-applying {app} from {target} {tip[:12]}")
    failure = apply_and_wait(cluster, app, folder, timeout, clock)
    if failure:
        log(f"revert: {failure}")
        return (f"re-applying {target} {tip[:12]} FAILED too ({failure}): THE CLUSTER AND "
                f"{target.upper()} DISAGREE")
    return f"re-applied {target} {tip[:12]}: the cluster runs what {target} holds again"


def seconds(value: str, flag: str, maximum: int = MAX_LOCK_TIMEOUT) -> int:
    """Whole seconds written like `300s`, from 1 to maximum."""
    return whole_seconds(flag, value, maximum)
