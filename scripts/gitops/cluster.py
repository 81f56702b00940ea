"""The cluster boundary: kubectl and gcloud calls, the per-app Lease, apply and rollout wait.

Shared by deliveries (gitops.deploy) and heals (gitops.drift), so a heal takes the very Lease a
delivery takes and applies the way a delivery applies. It never touches the env repo.

kubectl and gcloud get an allowlisted environment (`gitops.processes.tool_environment`: no git
token, no other variable of the step), and each call a deadline: a rollout wait its own timeout
plus a minute, any other call 5 minutes. A call past its deadline is killed with its process
group and fails like any failed call (exit 124).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitops import processes
from gitops.cli import log
from gitops.errors import OperationFailed
from gitops.settings import env_seconds

LEASE_NAME = "gitops-delivery"
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
LEASE_POLL_ENV = "GITOPS_LEASE_POLL"  # seconds between attempts on a held Lease
DEFAULT_LEASE_POLL = 5.0
MAX_LEASE_POLL = 300.0
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
        verb = next((a for a in args[1:] if not a.startswith("-")), "")
        try:
            return processes.run(args, env, call_timeout(args), f"{args[0]} {verb}",
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
