"""Drift: does each app's namespace still hold what production holds? Heal it when asked.

Drift is checked per delivery environment (`--environment`, default the last one the env repo
records): that environment's production branch, its candidate branch (where freezes are
recorded) and its namespaces (`<app><namespaceSuffix>`) come from the env repo's record
(gitops.environments); a repository without a record has the implicit environment, on
`--from`/`--to`, with namespaces named after the apps. Every environment has its own reconcile
trigger and identity, which reach that environment's cluster and namespaces only.

For every app production holds that is not frozen:
1. `kubectl diff --field-manager=gitops-delivery` of production's manifests: the API server dry
   runs the apply a delivery makes and kubectl hands the live and the resulting objects to
   `gitops.objdiff` (KUBECTL_EXTERNAL_DIFF), which names each object that differs and the
   fields that would change, or that production has and the namespace has not (missing);
2. the objects in the namespace that the delivery applied and production no longer has:
   pruning deletes them (extra). "Applied by the delivery" is one rule, shared with pruning
   (`gitops.prune.applied_by_delivery`: the object's managedFields name the field manager
   `gitops-delivery`), so drift reports as extra exactly what a delivery's or a heal's prune
   would delete; an object someone made by hand, even with `kubectl apply`, is neither.
The app is `in sync`, `drifted` (objects, fields) or `missing` (none of production's objects is
there).

Why the diff is client-side (no `--server-side`), with delivery's field manager:
- Deliveries and heals apply client-side (`kubectl apply --field-manager=gitops-delivery`): a
  three-way merge of the manifests, the live object and its last-applied annotation, sent as a
  patch. `kubectl diff` without `--server-side` builds that same patch and sends it, with the
  same field manager, as a dry run (dryRun=All): the API server still computes the result
  (defaults, admission, validation) and stores nothing. The diff is therefore what a heal would
  change, no more and no less.
- `kubectl diff --server-side` dry-runs another operation, a server-side apply, which merges by
  field ownership: a field an earlier client-side apply set and production has since dropped
  stays (the client-side manager still owns it), while a heal's apply removes it, so the
  diff would call in sync what a heal changes; a field edited by hand belongs to another
  manager and is compared only with `--force-conflicts`; and with `--field-manager=
  gitops-delivery` it would act as a second manager of that name (operation Apply beside
  delivery's Update). Matching delivery's apply removes all three differences.
- A field someone added by hand that production does not set is not drift: neither a delivery
  nor a heal would change it (a client-side apply removes only fields it applied before).

Heal (opt-in per stack and per app, `--heal APP,...`): under the app's delivery Lease (in the
app's namespace, as deliveries take it), so a heal never races a delivery, production's tip is
read again and re-applied (the same apply and rollout wait as a delivery), and the leftovers are
pruned by `gitops.prune` itself. With signed commits on (allowed signers in the environment,
gitops.signing), a heal applies production only when its tip and the commit that wrote the app's
manifests verify, as deploy does; otherwise the app is reported drifted and not healed, with the
reason. Each drifted app publishes `drift_found`, each healed one `drift_healed`
(gitops.events), naming the environment; an app in sync publishes nothing. `status --drift`
runs the same comparison (`check`) with the operator's credentials, without healing or events.
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
from gitops.environments import Environment, in_repo
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.events import DriftedObject, ObjectState
from gitops.history import apps_on
from gitops.prune import FIELD_MANAGER, ObjectRef, leftovers, objects, prune
from gitops.status import freeze_note

APPS_DIR = "apps"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"  # as gitops.deploy reads it
DIFFER_ENV = "KUBECTL_EXTERNAL_DIFF"
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
    namespace: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "namespace": self.namespace, "state": self.state.value,
                "production_commit": self.production_commit, "healed": self.healed,
                "objects": [o.to_json() for o in self.objects], "detail": self.detail}


@dataclass(frozen=True)
class ReconcileRequest:
    repo: str
    build_id: str
    heal: frozenset[str] = frozenset()  # apps allowed to self-heal
    apps: tuple[str, ...] = ()  # only these (default: every app production holds)
    # Without a record of environments: where freezes are recorded, and production.
    source: str = "candidate"
    target: str = "production"
    timeout: int = 300  # rollout timeout of a heal
    lock_timeout: int = 1800
    environment: str | None = None  # default: the last one the env repo records


def differ_command() -> str:
    """KUBECTL_EXTERNAL_DIFF for this interpreter (kubectl splits the value on spaces)."""
    return f"{sys.executable} {Path(__file__).with_name('objdiff.py')}"


def diff(cluster: Cluster, namespace: str, folder: Path) -> list[DriftedObject]:
    """What applying production's manifests as a delivery does would change (changed or
    missing objects); see the module docstring for the flags."""
    os.environ[DIFFER_ENV] = differ_command()
    code, out, err = cluster.kubectl("diff", f"--field-manager={FIELD_MANAGER}",
                                     f"--namespace={namespace}", "--recursive",
                                     f"--filename={folder}")
    if code > 1:
        raise OperationFailed(f"kubectl diff failed for {namespace}: {one_line(err)}")
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            found.append(DriftedObject(entry["object"], ObjectState(entry["state"]),
                                       tuple(entry["fields"])))
    return found


def applied_leftovers(cluster: Cluster, namespace: str,
                      keep: list[ObjectRef]) -> list[ObjectRef]:
    """The objects of the namespace the delivery applied that keep no longer declares: listed
    with their managedFields and judged by pruning's own rule (`gitops.prune.leftovers`)."""
    code, out, err = cluster.kubectl("get", ",".join(MANAGED_RESOURCES),
                                     f"--namespace={namespace}", "--output=json",
                                     "--show-managed-fields")
    if code != 0:
        raise OperationFailed(f"cannot list the objects of {namespace}: {one_line(err)}")
    return leftovers(json.loads(out).get("items", []), keep)


def extras(cluster: Cluster, namespace: str, keep: list[ObjectRef]) -> list[DriftedObject]:
    """Leftovers as drift reports them (`Kind/name`)."""
    return [DriftedObject(f"{ref.kind}/{ref.name}", ObjectState.EXTRA)
            for ref in applied_leftovers(cluster, namespace, keep)]


def compare(cluster: Cluster, namespace: str,
            folder: Path) -> tuple[AppState, list[DriftedObject]]:
    production = objects(folder, namespace)
    found = diff(cluster, namespace, folder) + extras(cluster, namespace, production)
    missing = [o for o in found if o.state is ObjectState.MISSING]
    if not found:
        return AppState.IN_SYNC, []
    if production and len(missing) == len(production):
        return AppState.MISSING, found
    return AppState.DRIFTED, found


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


def check(env: EnvRepo, cluster: Cluster, apps: list[str], where: Environment,
          work: Path) -> list[tuple[AppDrift, Path]]:
    """Compare each app with the environment's production; (result, production's folder) per
    app."""
    results = []
    tip = env.tip(where.production) or ""
    for app in apps:
        folder, namespace = work / app, where.namespace(app)
        if freeze_note(env, where.candidate, app) is not None:
            results.append((AppDrift(app, AppState.FROZEN, tip, namespace=namespace), folder))
            continue
        if materialize(env, where.production, app, folder) is None:
            continue  # production holds nothing for it yet: nothing to compare
        try:
            state, found = compare(cluster, namespace, folder)
        except OperationFailed as exc:
            results.append((AppDrift(app, AppState.FAILED, tip, detail=str(exc),
                                     namespace=namespace), folder))
            continue
        results.append((AppDrift(app, state, tip, tuple(found), namespace=namespace), folder))
    return results


def heal(env: EnvRepo, cluster: Cluster, drift: AppDrift, request: ReconcileRequest,
         where: Environment, folder: Path) -> AppDrift:
    """Under the app's Lease: re-apply what production holds now, prune the leftovers."""
    app, namespace, production = drift.app, drift.namespace, where.production
    acquire_lease(cluster, namespace, request.build_id, 2 * request.timeout + 300,
                  request.lock_timeout)
    try:
        tip = materialize(env, production, app, folder) or drift.production_commit
        unsigned = env.unverified(production, tip, f"{APPS_DIR}/{app}/") \
            if env.signing.verifies else None
        if unsigned is not None:
            failure: str | None = f"not healed: {unsigned} (signing is on)"
            log(f"heal: {app}: {failure}")
        else:
            log(f"heal: re-applying {app} from {production} {tip[:12]} to namespace "
                f"{namespace}")
            failure = apply_and_wait(cluster, namespace, folder, request.timeout)
        if failure is None:
            stale = applied_leftovers(cluster, namespace, objects(folder, namespace))
            failure = prune(cluster, namespace, stale, f"{production} no longer has it",
                            log).failure
    finally:
        release_lease(cluster, namespace, request.build_id)
    if failure is not None:
        return AppDrift(app, drift.state, tip, drift.objects, healed=False, detail=failure,
                        namespace=namespace)
    return AppDrift(app, drift.state, tip, drift.objects, healed=True, namespace=namespace)


def announce(env: EnvRepo, drift: AppDrift, request: ReconcileRequest,
             where: Environment) -> None:
    """drift_found for a drifted app, and drift_healed when it was healed."""
    promoted_from = (env.read_blob(drift.production_commit, f".gitops/promoted/{drift.app}")
                     or "").strip()
    trailers = env.trailers(drift.production_commit) if drift.production_commit else {}
    if trailers.get("App") != drift.app:
        last = env.log(drift.production_commit, f"{APPS_DIR}/{drift.app}/", limit=1)
        trailers = last[0].trailers if last else {}
    common = {"candidate_commit": promoted_from, "env_repo_commit": drift.production_commit,
              "drift": drift.objects}
    name = events.environment(where.name)
    listed = ", ".join(o.object for o in drift.objects)
    events.emit(events.from_trailers(
        events.Kind.DRIFT_FOUND, drift.app, name, request.build_id, trailers,
        summary=f"{drift.app}: {drift.state.value} from {where.production} ({listed})",
        detail=drift.detail, **common))
    if drift.healed:
        events.emit(events.from_trailers(
            events.Kind.DRIFT_HEALED, drift.app, name, request.build_id, trailers,
            summary=f"{drift.app}: healed, {where.production} "
                    f"{drift.production_commit[:12]} re-applied", **common))


def check_request(request: ReconcileRequest) -> None:
    check_branch(request.source)
    check_branch(request.target)
    check_trailer_value("--build-id", request.build_id)
    for app in (*request.heal, *request.apps):
        check_app(app)
    if request.environment is not None:
        try:
            check_app(request.environment)  # environment names are DNS labels too
        except BadInput:
            raise BadInput(f"--environment {request.environment!r} is not an environment "
                           f"name (a DNS label)") from None


def reconcile(request: ReconcileRequest, cluster: Cluster,
              publish: bool = True) -> list[AppDrift]:
    """Compare every app (or request.apps) of the environment with its production, heal those
    allowed, announce (publish=False: report only, as `status --drift` does)."""
    check_request(request)
    with scratch_repo(request.repo) as env, scratch.folder() as work:
        where = in_repo(env, request.environment, request.source, request.target)
        if env.fetch(where.production) is None:
            raise BadInput(f"branch {where.production!r} does not exist in {request.repo}")
        env.fetch(where.candidate)
        known = apps_on(env, where.production)
        unknown = sorted(set(request.apps) - set(known))
        if unknown:
            raise BadInput(f"unknown app(s) {', '.join(unknown)}: {where.production} holds "
                           f"{', '.join(known) or 'none'}")
        results = []
        for drift, folder in check(env, cluster, list(request.apps) or known, where,
                                   Path(work)):
            if drift.state in (AppState.DRIFTED, AppState.MISSING):
                if drift.app in request.heal:
                    drift = heal(env, cluster, drift, request, where, folder)
                if publish:
                    announce(env, drift, request, where)
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
