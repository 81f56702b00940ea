"""Drift: does each app's namespace still hold what production holds? Heal it when asked.

For every app production holds that is not frozen:
1. `kubectl diff --server-side --force-conflicts` of production's manifests: the API server dry
   runs applying them and kubectl hands the live and the resulting objects to `gitops.objdiff`
   (KUBECTL_EXTERNAL_DIFF), which names each object that differs and the fields that would
   change, or that production has and the namespace has not (missing);
2. the objects in the namespace that delivery applied (kubectl's last-applied annotation, which
   controllers' ReplicaSets and Pods never carry) and production no longer has: pruning deletes
   them (extra).
The app is `in sync`, `drifted` (objects, fields) or `missing` (none of production's objects is
there). A server-side diff sees the fields production declares: a field someone added by hand
that production does not set is not drift (Kubernetes keeps it for its own field manager).

Heal (opt-in per stack and per app, `--heal APP,...`): under the app's delivery Lease, so a heal
never races a delivery, production's tip is read again and re-applied (the same apply and
rollout wait as a delivery), and the extra objects are deleted. With signed commits on (allowed
signers in the environment, gitops.signing), a heal applies production only when its tip and the
commit that wrote the app's manifests verify, as deploy does; otherwise the app is reported
drifted and not healed, with the reason. Each drifted app publishes
`drift_found`, each healed one `drift_healed` (gitops.events); an app in sync publishes
nothing. `status --drift` runs the same comparison (`check`) with the operator's credentials,
without healing or events.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from gitops import events, scratch
from gitops.checks import check_app, check_branch, check_trailer_value
from gitops.cli import log
from gitops.cluster import Cluster, acquire_lease, apply_and_wait, release_lease
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.events import DriftedObject, ObjectState
from gitops.history import apps_on
from gitops.status import freeze_note

APPS_DIR = "apps"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"  # as gitops.deploy reads it
DIFFER_ENV = "KUBECTL_EXTERNAL_DIFF"
APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What delivery may change in an app's namespace (components/cluster_access.py DELIVERY_RULES):
# the kinds whose leftovers pruning deletes. Secrets apart: listing them returns every value,
# so no identity may; delivery's prune deletes a Secret removed from Git (gitops.prune).
MANAGED_RESOURCES = (
    "deployments.apps", "statefulsets.apps", "daemonsets.apps", "services", "configmaps",
    "serviceaccounts", "persistentvolumeclaims", "jobs.batch", "cronjobs.batch",
    "horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy",
    "ingresses.networking.k8s.io", "networkpolicies.networking.k8s.io",
)


class AppState(Enum):
    IN_SYNC = "in sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    FROZEN = "frozen"  # not compared: a frozen app may differ on purpose
    FAILED = "failed"  # the comparison itself failed (detail says why)


@dataclass(frozen=True)
class AppDrift:
    app: str
    state: AppState
    production_commit: str
    objects: tuple[DriftedObject, ...] = ()
    healed: bool = False
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "state": self.state.value,
                "production_commit": self.production_commit, "healed": self.healed,
                "objects": [o.to_json() for o in self.objects], "detail": self.detail}


@dataclass(frozen=True)
class ReconcileRequest:
    repo: str
    build_id: str
    heal: frozenset[str] = frozenset()  # apps allowed to self-heal
    apps: tuple[str, ...] = ()  # only these (default: every app production holds)
    source: str = "candidate"  # where freezes are recorded
    target: str = "production"
    timeout: int = 300  # rollout timeout of a heal
    lock_timeout: int = 1800


def differ_command() -> str:
    """KUBECTL_EXTERNAL_DIFF for this interpreter (kubectl splits the value on spaces)."""
    return f"{sys.executable} {Path(__file__).with_name('objdiff.py')}"


def production_objects(folder: Path) -> set[tuple[str, str]]:
    import yaml

    found = set()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind"):
                    found.add((str(doc["kind"]), str((doc.get("metadata") or {}).get("name"))))
    return found


def diff(cluster: Cluster, app: str, folder: Path) -> list[DriftedObject]:
    """What applying production's manifests would change (changed or missing objects)."""
    os.environ[DIFFER_ENV] = differ_command()
    code, out, err = cluster.kubectl("diff", "--server-side", "--force-conflicts",
                                     f"--namespace={app}", "--recursive",
                                     f"--filename={folder}")
    if code > 1:
        raise OperationFailed(f"kubectl diff failed for {app}: {one_line(err)}")
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            found.append(DriftedObject(entry["object"], ObjectState(entry["state"]),
                                       tuple(entry["fields"])))
    return found


def extras(cluster: Cluster, app: str, production: set[tuple[str, str]]) -> list[DriftedObject]:
    """Objects delivery applied to the namespace that production no longer has."""
    code, out, err = cluster.kubectl("get", ",".join(MANAGED_RESOURCES), f"--namespace={app}",
                                     "--output=json")
    if code != 0:
        raise OperationFailed(f"cannot list the objects of {app}: {one_line(err)}")
    found = []
    for item in json.loads(out).get("items", []):
        metadata = item.get("metadata") or {}
        key = (str(item.get("kind")), str(metadata.get("name")))
        if APPLIED in (metadata.get("annotations") or {}) and key not in production:
            found.append(DriftedObject(f"{key[0]}/{key[1]}", ObjectState.EXTRA))
    return sorted(found, key=lambda o: o.object)


def compare(cluster: Cluster, app: str, folder: Path) -> tuple[AppState, list[DriftedObject]]:
    production = production_objects(folder)
    objects = diff(cluster, app, folder) + extras(cluster, app, production)
    missing = [o for o in objects if o.state is ObjectState.MISSING]
    if not objects:
        return AppState.IN_SYNC, []
    if production and len(missing) == len(production):
        return AppState.MISSING, objects
    return AppState.DRIFTED, objects


def materialize(env: EnvRepo, target: str, app: str, folder: Path) -> str | None:
    """Write production's manifests of app into folder; production's tip, or None."""
    tip = env.fetch(target)
    entry = env.lookup(tip, f"{APPS_DIR}/{app}")
    if tip is None or entry is None or not entry.is_tree:
        return None
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    env.materialize(entry.sha, folder)
    return tip


def check(env: EnvRepo, cluster: Cluster, apps: list[str], source: str, target: str,
          work: Path) -> list[tuple[AppDrift, Path]]:
    """Compare each app with production; (result, production's folder) per app."""
    results = []
    tip = env.tip(target) or ""
    for app in apps:
        folder = work / app
        if freeze_note(env, source, app) is not None:
            results.append((AppDrift(app, AppState.FROZEN, tip), folder))
            continue
        if materialize(env, target, app, folder) is None:
            continue  # production holds nothing for it yet: nothing to compare
        try:
            state, objects = compare(cluster, app, folder)
        except OperationFailed as exc:
            results.append((AppDrift(app, AppState.FAILED, tip, detail=str(exc)), folder))
            continue
        results.append((AppDrift(app, state, tip, tuple(objects)), folder))
    return results


def heal(env: EnvRepo, cluster: Cluster, drift: AppDrift, request: ReconcileRequest,
         folder: Path) -> AppDrift:
    """Under the app's Lease: re-apply what production holds now, delete the extras."""
    app = drift.app
    acquire_lease(cluster, app, request.build_id, 2 * request.timeout + 300,
                  request.lock_timeout)
    try:
        tip = materialize(env, request.target, app, folder) or drift.production_commit
        unsigned = env.unverified(request.target, tip, f"{APPS_DIR}/{app}/") \
            if env.signing.verifies else None
        if unsigned is not None:
            failure: str | None = f"not healed: {unsigned} (signing is on)"
            log(f"heal: {app}: {failure}")
        else:
            log(f"heal: re-applying {app} from {request.target} {tip[:12]}")
            failure = apply_and_wait(cluster, app, folder, request.timeout)
        if failure is None:
            keep = production_objects(folder)
            for extra in extras(cluster, app, keep):
                cluster.kubectl("delete", extra.object.lower(), f"--namespace={app}",
                                "--ignore-not-found")
                log(f"  {extra.object} deleted (production no longer has it)")
    finally:
        release_lease(cluster, app, request.build_id)
    if failure is not None:
        return AppDrift(app, drift.state, tip, drift.objects, healed=False, detail=failure)
    return AppDrift(app, drift.state, tip, drift.objects, healed=True)


def announce(env: EnvRepo, drift: AppDrift, request: ReconcileRequest) -> None:
    """drift_found for a drifted app, and drift_healed when it was healed."""
    promoted_from = (env.read_blob(drift.production_commit, f".gitops/promoted/{drift.app}")
                     or "").strip()
    trailers = env.trailers(drift.production_commit) if drift.production_commit else {}
    if trailers.get("App") != drift.app:
        last = env.log(drift.production_commit, f"{APPS_DIR}/{drift.app}/", limit=1)
        trailers = last[0].trailers if last else {}
    common = {"candidate_commit": promoted_from, "env_repo_commit": drift.production_commit,
              "drift": drift.objects}
    where = events.environment(request.target)
    listed = ", ".join(o.object for o in drift.objects)
    events.emit(events.from_trailers(
        events.Kind.DRIFT_FOUND, drift.app, where, request.build_id, trailers,
        summary=f"{drift.app}: {drift.state.value} from {request.target} ({listed})",
        detail=drift.detail, **common))
    if drift.healed:
        events.emit(events.from_trailers(
            events.Kind.DRIFT_HEALED, drift.app, where, request.build_id, trailers,
            summary=f"{drift.app}: healed, {request.target} {drift.production_commit[:12]} "
                    f"re-applied", **common))


def check_request(request: ReconcileRequest) -> None:
    check_branch(request.source)
    check_branch(request.target)
    check_trailer_value("--build-id", request.build_id)
    for app in (*request.heal, *request.apps):
        check_app(app)


def reconcile(request: ReconcileRequest, cluster: Cluster,
              publish: bool = True) -> list[AppDrift]:
    """Compare every app (or request.apps) with production, heal those allowed, announce
    (publish=False: report only, as `status --drift` does)."""
    check_request(request)
    with scratch_repo(request.repo) as env, scratch.folder() as work:
        if env.fetch(request.target) is None:
            raise BadInput(f"branch {request.target!r} does not exist in {request.repo}")
        env.fetch(request.source)
        known = apps_on(env, request.target)
        unknown = sorted(set(request.apps) - set(known))
        if unknown:
            raise BadInput(f"unknown app(s) {', '.join(unknown)}: {request.target} holds "
                           f"{', '.join(known) or 'none'}")
        results = []
        for drift, folder in check(env, cluster, list(request.apps) or known, request.source,
                                   request.target, Path(work)):
            if drift.state in (AppState.DRIFTED, AppState.MISSING):
                if drift.app in request.heal:
                    drift = heal(env, cluster, drift, request, folder)
                if publish:
                    announce(env, drift, request)
            results.append(drift)
        return results


def failures(results: list[AppDrift], request: ReconcileRequest) -> list[str]:
    """Apps whose comparison failed, or that were to be healed and were not."""
    return [r.app for r in results if r.state is AppState.FAILED or (
        r.app in request.heal and r.state in (AppState.DRIFTED, AppState.MISSING)
        and not r.healed)]


def render_text(results: list[AppDrift]) -> str:
    if not results:
        return "no apps in production yet"
    lines = []
    for r in results:
        lines.append(f"{r.app}: {r.state.value}" + (" (healed)" if r.healed else "") +
                     (f" ({r.detail})" if r.detail else ""))
        for o in r.objects:
            fields = f": {', '.join(o.fields)}" if o.fields else ""
            lines.append(f"  {o.state.value:8} {o.object}{fields}")
    return "\n".join(lines)


def operator_cluster(project: str | None, name: str | None, location: str | None, work: Path,
                     factory: Callable[[str], Cluster] = Cluster) -> Cluster:
    """The cluster as the operator reaches it: get-credentials with their gcloud login when
    --project, --cluster and --location are given, else GITOPS_KUBECONFIG or KUBECONFIG (or
    ~/.kube/config)."""
    if project and name and location:
        cluster = factory(str(work / "kubeconfig"))
        cluster.get_credentials(project, name, location)
        return cluster
    if project or name or location:
        raise BadInput("--project, --cluster and --location go together")
    path = os.environ.get(KUBECONFIG_ENV) or os.environ.get("KUBECONFIG") or \
        str(Path.home() / ".kube" / "config")
    return factory(path)
