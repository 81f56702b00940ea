"""Deliver one app: apply a candidate commit to GKE, verify the rollout, promote to production.

Under the app's Lease (namespace APP, `gitops-delivery`), so overlapping deliveries of one app
run one at a time and production's tip is always what the cluster last applied successfully:

1. the commit's `apps/APP/` manifests are applied to namespace APP;
2. every Deployment, StatefulSet and DaemonSet they hold must finish its rollout within
   --timeout;
3. success: promote.py records the commit on production (Promote, or Rollback for an older
   commit that production held before); failure: what production holds for the app is
   re-applied, so cluster and production agree again, and the build fails.

A commit older than production's, which production never held, is a stale build that lost the
race to a newer one: it is skipped (exit 0), not rolled back to. A frozen app (`.gitops/frozen/APP`
on --from) is not deployed: the build says so and exits 0.

Cluster access goes through one small boundary (`Cluster`), which the tests replace. Without a
cluster (GITOPS_NO_CLUSTER=1, used by the local loop) the manifests are validated only, and the
output says so plainly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from envrepo import (
    APPS_DIR,
    TREE_MODE,
    ArgumentParser,
    BadInput,
    EnvRepo,
    OperationFailed,
    check_app,
    check_branch,
    check_sha,
    check_trailer_value,
    run_main,
    scratch_repo,
)

LEASE_NAME = "gitops-delivery"
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
NO_CLUSTER_ENV = "GITOPS_NO_CLUSTER"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"
LEASE_POLL_ENV = "GITOPS_LEASE_POLL"  # seconds between attempts on a held Lease


def log(message: str) -> None:
    print(message, flush=True)


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


def lease_expired(spec: dict, now: float) -> bool:
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not spec.get("holderIdentity") or not renewed:
        return True
    stamp = datetime.strptime(renewed.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
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


def materialize(env: EnvRepo, tree: bytes, folder: Path) -> None:
    """Write a git tree's files into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (sha, mode) in env.entries(tree).items():
        if mode == TREE_MODE:
            materialize(env, sha, folder / name)
        else:
            (folder / name).write_bytes(env.read_object(sha))


def workloads(folder: Path) -> list[tuple[str, str]]:
    """(kind, name) of every workload with a rollout, in file order."""
    import yaml

    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ROLLOUT_KINDS:
                found.append((doc["kind"], doc["metadata"]["name"]))
    return found


def apply_and_wait(cluster: Cluster, app: str, folder: Path, timeout: int) -> str | None:
    """Apply the folder to namespace app, wait for every rollout; the failure, or None."""
    code, out, err = cluster.kubectl("apply", f"--namespace={app}", "--recursive",
                                     f"--filename={folder}")
    if code != 0:
        return f"apply failed: {' '.join(err.split())}"
    for line in out.splitlines():
        log(f"  {line}")
    deadline = time.monotonic() + timeout
    for kind, name in workloads(folder):
        remaining = max(1, math.ceil(deadline - time.monotonic()))
        code, _, err = cluster.kubectl("rollout", "status", f"{kind.lower()}/{name}",
                                       f"--namespace={app}", f"--timeout={remaining}s")
        if code != 0:
            return f"rollout of {kind.lower()}/{name} failed: {' '.join(err.split())}"
        log(f"  {kind.lower()}/{name} rolled out")
    return None


def validate_only(folder: Path) -> None:
    from render import DEFAULT_KUBE_VERSION, validate

    for path in sorted(folder.rglob("*")):
        if path.is_file():
            validate(path.read_text(), path.name, {}, DEFAULT_KUBE_VERSION)


# --- decisions --------------------------------------------------------------------------------


def is_stale(env: EnvRepo, source: str, target: str, app: str, commit: str) -> str | None:
    """The newer commit production holds when commit lost the race to it, else None.

    A commit older than production's that production never held is stale; one it held before
    is a rollback, which is delivered.
    """
    tip = env.fetch_branch(target)
    previous = env.promoted_from(tip, app)
    if not previous or previous == commit or not env.reach(source, [previous]):
        return None
    if not env.is_ancestor(commit, previous):
        return None
    env.depths[target] = 0
    env.fetch_branch(target)
    held = env.g.log("--format=%H", f"--grep=^Promoted-From: {commit}$", tip)
    return None if held.strip() else previous


def skip_if_stale(env: EnvRepo, source: str, target: str, app: str, commit: str) -> str | None:
    """Production's tip when commit is a stale build (said so in the log), else None."""
    newer = is_stale(env, source, target, app, commit)
    if newer is None:
        return None
    log(f"skipped: {commit[:12]} is older than {newer[:12]} on {target} and was never there; "
        f"a newer delivery of {app} already won")
    return env.tip(target) or commit


def main(argv: list[str], cluster_factory: Callable[[str], Cluster] = Cluster) -> str:
    parser = ArgumentParser(prog="deploy.py", description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--commit", required=True, help="the candidate commit to deliver")
    parser.add_argument("--from", dest="source", default="candidate")
    parser.add_argument("--to", dest="target", default="production")
    parser.add_argument("--project", help="Google Cloud project of the cluster")
    parser.add_argument("--cluster", help="GKE cluster name (get-credentials)")
    parser.add_argument("--location", help="GKE cluster location")
    parser.add_argument("--timeout", default="300s", help="rollout timeout, e.g. 300s")
    parser.add_argument("--lock-timeout", default="1800s",
                        help="how long to wait for another delivery of the app")
    parser.add_argument("--build-id", default=f"local-{os.getpid()}")
    args = parser.parse_args(argv)
    app, commit = check_app(args.app), check_sha(args.commit)
    source, target = check_branch(args.source), check_branch(args.target)
    check_trailer_value("--build-id", args.build_id)
    timeout, lock_timeout = (seconds(v, flag) for v, flag in
                             ((args.timeout, "--timeout"), (args.lock_timeout, "--lock-timeout")))
    no_cluster = os.environ.get(NO_CLUSTER_ENV) == "1"
    kubeconfig = os.environ.get(KUBECONFIG_ENV)
    if not no_cluster and not kubeconfig and not (args.project and args.cluster and
                                                  args.location):
        raise BadInput("--project, --cluster and --location are required to reach the cluster")

    with scratch_repo(args.repo) as env, tempfile.TemporaryDirectory() as work:
        if env.fetch_branch(source) is None or not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        entry = env.lookup(commit, f"{APPS_DIR}/{app}")
        if entry is None or entry[1] != TREE_MODE:
            raise BadInput(f"app {app!r} has no manifests ({APPS_DIR}/{app}/) at {commit}")
        note = env.freeze_note(source, app)
        if note is not None:
            log(f"{app} is frozen ({note.strip() or 'no reason given'}): "
                f"{commit[:12]} is recorded on {source} but not deployed")
            return env.tip(target) or commit
        candidate = Path(work) / "candidate"
        materialize(env, entry[0], candidate)

        if no_cluster:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return skipped
            validate_only(candidate)
            log(f"NO CLUSTER: {app} manifests at {commit[:12]} validated only, NOT applied "
                f"({NO_CLUSTER_ENV}=1); promoting to simulate a successful delivery")
            return promote(args.repo, app, commit, source, target, args.build_id)

        cluster = cluster_factory(kubeconfig or str(Path(work) / "kubeconfig"))
        if not kubeconfig:
            cluster.get_credentials(args.project, args.cluster, args.location)
        acquire_lease(cluster, app, args.build_id, 2 * timeout + 300, lock_timeout)
        try:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return skipped
            log(f"applying {app} at {commit[:12]}")
            failure = apply_and_wait(cluster, app, candidate, timeout)
            if failure is None:
                return promote(args.repo, app, commit, source, target, args.build_id)
            revert(env, cluster, app, target, Path(work) / "production", timeout)
            raise OperationFailed(f"{app} at {commit[:12]}: {failure}")
        finally:
            release_lease(cluster, app, args.build_id)


def revert(env: EnvRepo, cluster: Cluster, app: str, target: str, folder: Path,
           timeout: int) -> None:
    """Re-apply what production holds for app, so cluster and production agree again."""
    tip = env.fetch_branch(target)
    entry = env.lookup(tip, f"{APPS_DIR}/{app}")
    if entry is None:
        log(f"revert: {target} holds nothing for {app} yet; nothing to re-apply")
        return
    materialize(env, entry[0], folder)
    log(f"revert: re-applying {app} from {target} {tip[:12] if tip else ''}")
    failure = apply_and_wait(cluster, app, folder, timeout)
    if failure:
        log(f"revert: {failure}")


def promote(repo: str, app: str, commit: str, source: str, target: str, build_id: str) -> str:
    import promote as promote_script

    return promote_script.main(["--repo", repo, "--app", app, "--commit", commit,
                                "--from", source, "--to", target, "--build-id", build_id])


def seconds(value: str, flag: str) -> int:
    if not value.endswith("s") or not value[:-1].isdigit() or int(value[:-1]) < 1:
        raise BadInput(f"{flag} {value!r} must be whole seconds like 300s")
    return int(value[:-1])


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
