"""Deliver one app: apply a candidate commit to GKE, verify the rollout, promote to production.

Under the app's Lease (namespace APP, `gitops-delivery`), so overlapping deliveries of one app
run one at a time and production's tip is always what the cluster last applied successfully:

1. the commit's `apps/APP/` manifests are applied to namespace APP;
2. every Deployment, StatefulSet and DaemonSet they hold must finish its rollout before one
   deadline (the timeout counts for all of them together, not for each);
3. success: `gitops.promote.promote` records the commit on production (Promote, or Rollback for
   an older commit that production held before); failure: what production holds for the app
   is re-applied, so cluster and production agree again, and the build fails.

A commit older than production's, which production never held, is a stale build that lost the
race to a newer one: it is skipped, not rolled back to. A frozen app (`.gitops/frozen/APP` on
the source branch) is not deployed: the build says so and succeeds.

When allowed signers are configured (signing is on, `gitops.signing`), nothing is applied unless
two signatures verify: the candidate commit's own, and that of the commit that last changed
`apps/APP/` up to it (the one that wrote what would be applied). A commit's signature covers its
whole tree, but a writer builds on whatever tip it finds, so an unsigned change pushed beneath a
signed commit would otherwise be applied under someone else's signature.

Cluster access goes through one small boundary (`Cluster`), which the tests replace. Without a
cluster (GITOPS_NO_CLUSTER=1, used by the local loop) the manifests are validated only, and the
output says so plainly.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from gitops.checks import check_app, check_branch, check_sha, check_trailer_value
from gitops.cli import log
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput, OperationFailed
from gitops.promote import PromoteRequest, promote, promoted_from
from gitops.signing import Signing
from gitops.status import freeze_note

APPS_DIR = "apps"
PROMOTED_DIR = ".gitops/promoted"
LEASE_NAME = "gitops-delivery"
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
NO_CLUSTER_ENV = "GITOPS_NO_CLUSTER"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"
LEASE_POLL_ENV = "GITOPS_LEASE_POLL"  # seconds between attempts on a held Lease

Clock = Callable[[], float]


@dataclass
class Cluster:
    """The only place that runs kubectl or gcloud. Tests replace `run`."""

    kubeconfig: str
    calls: list[list[str]] = field(default_factory=list)

    def run(self, args: Sequence[str], stdin: str | None = None) -> tuple[int, str, str]:
        proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                              env={**os.environ, "KUBECONFIG": self.kubeconfig})
        return proc.returncode, proc.stdout, proc.stderr

    def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return self.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], stdin)

    def get_credentials(self, project: str, cluster: str, location: str) -> None:
        code, _, err = self.run(["gcloud", "container", "clusters", "get-credentials", cluster,
                                 f"--location={location}", f"--project={project}"])
        if code != 0:
            raise OperationFailed(f"cannot get credentials for cluster {cluster}: "
                                  f"{' '.join(err.split())}")


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
    poll = poll if poll is not None else float(os.environ.get(LEASE_POLL_ENV, "5"))
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
    signing: Signing | None = None  # None: from the environment (gitops.signing)


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


def check_signatures(env: EnvRepo, source: str, app: str, commit: str) -> None:
    """BadInput unless the commit and the commit that wrote the app's manifests are signed by
    allowed signers (only called when signing is on)."""
    writer = env.last_change(source, commit, f"{APPS_DIR}/{app}/") or commit
    roles = {commit: "commit"}
    roles.setdefault(writer, f"the commit that wrote {APPS_DIR}/{app}/,")
    for sha, role in roles.items():
        check = env.verify(sha)
        if not check.good:
            raise BadInput(f"refusing to deploy {app} at {commit[:12]}: {role} {sha[:12]} is "
                           f"{check.describe()} (signing is on: the commits deployed must be "
                           f"signed by an allowed signer)")
        log(f"signature of {role} {sha[:12]}: {check.describe()}")


def check_request(request: DeliveryRequest) -> None:
    check_app(request.app)
    check_sha(request.commit)
    check_branch(request.source)
    check_branch(request.target)
    check_trailer_value("--build-id", request.build_id)


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

    signing = request.signing if request.signing is not None else Signing.from_env()

    def promoted(outcome: Outcome) -> DeployResult:
        result = promote(PromoteRequest(repo=request.repo, app=app, commit=commit,
                                        source=source, target=target,
                                        build_id=request.build_id, signing=signing))
        return DeployResult(result.commit, outcome)

    with scratch_repo(request.repo, signing=signing) as env, \
            tempfile.TemporaryDirectory() as work:
        if env.fetch(source) is None or not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        entry = env.lookup(commit, f"{APPS_DIR}/{app}")
        if entry is None or not entry.is_tree:
            raise BadInput(f"app {app!r} has no manifests ({APPS_DIR}/{app}/) at {commit}")
        note = freeze_note(env, source, app)
        if note is not None:
            log(f"{app} is frozen ({note.strip() or 'no reason given'}): "
                f"{commit[:12]} is recorded on {source} but not deployed")
            return DeployResult(env.tip(target) or commit, Outcome.FROZEN)
        if env.signing.verifies:
            check_signatures(env, source, app, commit)
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
                return promoted(Outcome.PROMOTED)
            revert(env, cluster, app, target, Path(work) / "production", request.timeout,
                   clock)
            raise OperationFailed(f"{app} at {commit[:12]}: {failure}")
        finally:
            release_lease(cluster, app, request.build_id)


def revert(env: EnvRepo, cluster: Cluster, app: str, target: str, folder: Path,
           timeout: int, clock: Clock = time.monotonic) -> None:
    """Re-apply what production holds for app, so cluster and production agree again."""
    tip = env.fetch(target)
    entry = env.lookup(tip, f"{APPS_DIR}/{app}")
    if entry is None or tip is None:
        log(f"revert: {target} holds nothing for {app} yet; nothing to re-apply")
        return
    env.materialize(entry.sha, folder)
    log(f"revert: re-applying {app} from {target} {tip[:12]}")
    failure = apply_and_wait(cluster, app, folder, timeout, clock)
    if failure:
        log(f"revert: {failure}")


def seconds(value: str, flag: str) -> int:
    """Whole seconds written like `300s`."""
    if not re.fullmatch(r"[0-9]+s", value) or int(value[:-1]) < 1:
        raise BadInput(f"{flag} {value!r} must be whole seconds like 300s")
    return int(value[:-1])
