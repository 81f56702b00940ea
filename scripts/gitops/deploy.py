"""Deliver one app: apply a candidate commit to GKE, verify the rollout, promote to production.

Under the app's Lease (namespace APP, `gitops-delivery`), so overlapping deliveries of one app
run one at a time and production's tip is always what the cluster last applied successfully:

1. the commit's `apps/APP/` manifests are applied to namespace APP (field manager
   `gitops-delivery`);
2. every Deployment, StatefulSet and DaemonSet they hold must finish its rollout before one
   deadline (the timeout counts for all of them together, not for each);
3. the objects production's tree holds and the commit's tree no longer does are deleted
   (`gitops.prune`: worked out from the two Git trees; only objects the delivery applied);
4. success: `gitops.promote.promote` records the commit on production (Promote, or Rollback for
   an older commit that production held before); failure: what production holds for the app
   is re-applied and what the commit added is deleted, so the namespace holds exactly
   production's objects again, and the build fails.
5. a rollout that succeeded but cannot be recorded on production (production protected, the
   push refused or timing out) is treated like a failed rollout: production's tree is
   re-applied and the build fails, saying loudly what happened and what the cluster runs.

With environments (docs/environments.md) each environment's delivery uses its own branches and
namespace; after a promotion (not a rollback) the same release is published to the next
environment's candidate branch (`gitops.chain`), still under the Lease, so releases reach the
next environment in the order this one promoted them. In a gated environment the build first
reads who approved it (`gitops.approval`) and the production commit records it
(`Approved-By:`).

Every outcome is one delivery event (gitops.events), refusals included: a gated build without
an approval, or commits whose signatures do not verify, apply nothing, fail, and publish
`refused`. When a promotion publishes the release to a next environment that the env repo's
record of environments says is gated, its delivery build of that commit is held for an
approver and runs no step, so this build announces it: `waiting_for_approval`, naming that
environment and the commit that waits.

A commit older than production's, which production never held, is a stale build that lost the
race to a newer one: it is skipped, not rolled back to. A frozen app (`.gitops/frozen/APP` on
the source branch) is not deployed: the build says so and succeeds.

When allowed signers are configured (signing is on, `gitops.signing`), nothing is applied unless
two signatures verify: the candidate commit's own, and that of the commit that last changed
`apps/APP/` up to it (the one that wrote what would be applied). A commit's signature covers its
whole tree, but a writer builds on whatever tip it finds, so an unsigned change pushed beneath a
signed commit would otherwise be applied under someone else's signature.

Cluster access goes through one small boundary (`gitops.cluster`: `Cluster`, the Lease, apply
and wait), which the tests replace and which heals (gitops.drift) share. Without a
cluster (GITOPS_NO_CLUSTER=1, used by the local loop with --no-cluster) the manifests are
validated only, and the output says so plainly. Every setting is checked before anything
runs, the retry deadline that the promotion after the rollout reads included.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from gitops import environments, events, scratch
from gitops.approval import ApprovalReader, CloudBuildApprovals
from gitops.chain import ChainRequest, publish_to_next
from gitops.checks import (
    check_app,
    check_branch,
    check_gcloud_names,
    check_remote,
    check_sha,
    check_trailer_value,
)
from gitops.cli import log
from gitops.cluster import (  # noqa: F401 - the cluster boundary, re-exported for callers
    LEASE_NAME,
    LEASE_POLL_ENV,
    ROLLOUT_KINDS,
    Clock,
    Cluster,
    acquire_lease,
    apply_and_wait,
    lease_expired,
    lease_manifest,
    lease_poll,
    release_lease,
    workloads,
)
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.promote import Kind, PromoteRequest, promote, promoted_from
from gitops.prune import ObjectRef, objects, prune, removed
from gitops.retry import RetryPolicy
from gitops.settings import MAX_LOCK_TIMEOUT, MAX_ROLLOUT_TIMEOUT, whole_seconds
from gitops.signing import Signing
from gitops.status import freeze_note

APPS_DIR = "apps"
PROMOTED_DIR = ".gitops/promoted"
NO_CLUSTER_ENV = "GITOPS_NO_CLUSTER"
KUBECONFIG_ENV = "GITOPS_KUBECONFIG"

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
    FAILED = "failed"  # the rollout failed, production's manifests re-applied (then raised)


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
    namespace: str | None = None  # default: the app's name
    environment: str = "production"
    next_environment: str | None = None  # where a promotion goes on (None: last environment)
    next_candidate: str | None = None  # that environment's candidate branch
    region: str | None = None  # of this build (reading its approval)
    record_approval: bool = False  # gated environment: record who approved this build

    @property
    def app_namespace(self) -> str:
        return self.namespace or self.app


class Unrecorded(OperationFailed):
    """The target branch did not take a commit (its reason); raised by the promotion only."""


@dataclass(frozen=True)
class DeployResult:
    commit: str  # the target's tip afterwards (the commit itself if the target has none)
    outcome: Outcome
    rollback: bool = False  # the target recorded it as a Rollback
    next_commit: str | None = None  # the next environment's candidate tip, when it got one
    pruned: tuple[ObjectRef, ...] = ()  # deleted because the commit no longer holds them


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
    problem = env.unverified(source, commit, f"{APPS_DIR}/{app}/")
    if problem is not None:
        raise BadInput(f"refusing to deploy {app} at {commit[:12]}: {problem} (signing is on: "
                       f"the commits deployed must be signed by an allowed signer)")
    log(f"signatures of {commit[:12]} and of what it applies: verified")


def check_request(request: DeliveryRequest) -> None:
    check_remote(request.repo)
    check_app(request.app)
    check_sha(request.commit)
    check_branch(request.source)
    check_branch(request.target)
    check_trailer_value("--build-id", request.build_id)
    check_app(request.app_namespace)
    check_app(request.environment)
    if bool(request.next_environment) != bool(request.next_candidate):
        raise BadInput("--next-environment and --next-candidate go together")
    if request.next_environment and request.next_candidate:
        check_app(request.next_environment)
        check_branch(request.next_candidate)
        if request.next_candidate in (request.source, request.target):
            raise BadInput("--next-candidate must be the next environment's own branch")
    if request.record_approval and not (request.project and request.region):
        raise BadInput("--project and --region are required to read this build's approval")
    if request.project and request.cluster and request.location:
        check_gcloud_names(request.project, request.cluster, request.location)
    if not 1 <= request.timeout <= MAX_ROLLOUT_TIMEOUT:
        raise BadInput(f"--timeout must be from 1s to {MAX_ROLLOUT_TIMEOUT}s")
    if not 1 <= request.lock_timeout <= MAX_LOCK_TIMEOUT:
        raise BadInput(f"--lock-timeout must be from 1s to {MAX_LOCK_TIMEOUT}s")
    lease_poll()
    RetryPolicy.from_env()  # promote reads it after the rollout: a bad value must stop us now


def deliver(request: DeliveryRequest, cluster_factory: Callable[[str], Cluster] = Cluster,
            clock: Clock = time.monotonic,
            approvals: ApprovalReader | None = None) -> DeployResult:
    """Apply, verify and promote one candidate commit of one app (see the module docstring)."""
    check_request(request)
    app, commit, source, target = request.app, request.commit, request.source, request.target
    namespace = request.app_namespace
    no_cluster = os.environ.get(NO_CLUSTER_ENV) == "1"
    kubeconfig = os.environ.get(KUBECONFIG_ENV)
    if not no_cluster and not kubeconfig and not (request.project and request.cluster and
                                                  request.location):
        raise BadInput("--project, --cluster and --location are required to reach the cluster")
    approved_by = None
    signing = request.signing if request.signing is not None else Signing.from_env()

    def told(kind: events.Kind, result: DeployResult, summary: str,
             detail: str = "") -> DeployResult:
        """Announce the outcome as an event (which never fails the delivery), pass it on."""
        events.announce(kind, env, app, commit, target, request.build_id, result.commit,
                        summary, detail)
        return result

    def refused(error: BadInput | OperationFailed, why: str) -> BadInput | OperationFailed:
        """Announce that the build refused to deliver (nothing applied), pass the error on."""
        events.announce(events.Kind.REFUSED, env, app, commit, target, request.build_id,
                        env.tip(target), f"{app}: {commit[:12]} refused on {target}: {why}",
                        str(error))
        return error

    def promoted(outcome: Outcome, pruned: tuple[ObjectRef, ...] = ()) -> DeployResult:
        try:
            result = promote(PromoteRequest(repo=request.repo, app=app, commit=commit,
                                            source=source, target=target,
                                            build_id=request.build_id,
                                            approved_by=approved_by, signing=signing),
                             env=env)
        except (OperationFailed, BadInput) as exc:  # the target did not record the commit
            raise Unrecorded(one_line(str(exc))) from None
        rollback = result.kind is Kind.ROLLBACK
        announced = told(events.Kind.ROLLED_BACK if rollback else events.Kind.PROMOTED,
                         DeployResult(result.commit, outcome, rollback, pruned=pruned),
                         f"{app}: {'rolled back to' if rollback else 'promoted'} "
                         f"{commit[:12]} on {target}",
                         "validated only, not applied (no cluster)"
                         if outcome is Outcome.VALIDATED else "")
        if rollback or not (request.next_environment and request.next_candidate):
            return announced
        chained = publish_to_next(ChainRequest(
            repo=request.repo, app=app, commit=commit, source=source,
            environment=request.environment, production_commit=result.commit,
            next_environment=request.next_environment, next_branch=request.next_candidate,
            build_id=request.build_id, signing=signing), env=env)
        log(f"{'published' if chained.created else 'already on'} {request.next_candidate} "
            f"for environment {request.next_environment}: {chained.commit[:12]}")
        if chained.created:  # a new commit there starts a delivery build, maybe a held one
            announce_waiting(env, request, chained.commit)
        return replace(announced, next_commit=chained.commit)

    with scratch_repo(request.repo, signing=signing) as env, scratch.folder() as work:
        if env.fetch(source) is None or not env.reach(source, [commit]):
            raise BadInput(f"commit {commit} is not on branch {source!r}")
        if env.fetch(target) is None:
            raise BadInput(f"branch {target!r} does not exist in {request.repo}: branches are "
                           "created by init_branches.py (is --to mistyped?)")
        entry = env.lookup(commit, f"{APPS_DIR}/{app}")
        if entry is None or not entry.is_tree:
            raise BadInput(f"app {app!r} has no manifests ({APPS_DIR}/{app}/) at {commit}")
        if request.record_approval:  # before anything is applied: a gated build is approved
            assert request.project and request.region  # checked above
            try:
                approved_by = (approvals or CloudBuildApprovals()).approver(
                    request.project, request.region, request.build_id)
            except OperationFailed as exc:
                raise refused(exc, "no approval") from None
            log(f"approved by {approved_by}")
        note = freeze_note(env, source, app)
        if note is not None:
            log(f"{app} is frozen ({note.strip() or 'no reason given'}): "
                f"{commit[:12]} is recorded on {source} but not deployed")
            return told(events.Kind.HELD_BY_FREEZE,
                        DeployResult(env.tip(target) or commit, Outcome.FROZEN),
                        f"{app} is frozen: {commit[:12]} is recorded, not deployed",
                        note.strip())
        if env.signing.verifies:
            try:
                check_signatures(env, source, app, commit)
            except BadInput as exc:
                raise refused(exc, "signatures do not verify") from None
        candidate = Path(work) / "candidate"
        env.materialize(entry.sha, candidate)

        if no_cluster:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return told(events.Kind.SKIPPED_STALE, skipped,
                            f"{app}: {commit[:12]} skipped, a newer delivery already won")
            validate_only(candidate)
            log(f"NO CLUSTER: {app} manifests at {commit[:12]} validated only, NOT applied "
                f"({NO_CLUSTER_ENV}=1); promoting to simulate a successful delivery")
            return promoted(Outcome.VALIDATED)

        cluster = cluster_factory(kubeconfig or str(Path(work) / "kubeconfig"))
        if not kubeconfig:
            assert request.project and request.cluster and request.location  # checked above
            cluster.get_credentials(request.project, request.cluster, request.location)
        acquire_lease(cluster, namespace, request.build_id, 2 * request.timeout + 300,
                      request.lock_timeout)
        try:
            skipped = skip_if_stale(env, source, target, app, commit)
            if skipped:
                return told(events.Kind.SKIPPED_STALE, skipped,
                            f"{app}: {commit[:12]} skipped, a newer delivery already won")
            production = production_folder(env, target, app, Path(work) / "production")
            log(f"applying {app} at {commit[:12]} to namespace {namespace}")
            failure = apply_and_wait(cluster, namespace, candidate, request.timeout, clock)
            pruned: tuple[ObjectRef, ...] = ()
            if failure is None:
                stale = removed(objects(production, namespace), objects(candidate, namespace))
                pruning = prune(cluster, namespace, stale, f"not in {commit[:12]}", log)
                failure, pruned = pruning.failure, pruning.deleted
            if failure is None:
                try:
                    return promoted(Outcome.PROMOTED, pruned)
                except Unrecorded as exc:  # rolled out, but the target did not record it
                    unrecorded = str(exc)
                log(f"ERROR: {app} at {commit[:12]} rolled out, but {target} did not record "
                    f"it ({unrecorded}); re-applying what {target} holds")
                reverted = revert(cluster, namespace, target, production, candidate,
                                  request.timeout, clock)
                after = after_revert(env, app, target, reverted)
                told(events.Kind.FAILED_AND_REVERTED,
                     DeployResult(env.tip(target) or "", Outcome.FAILED),
                     f"{app}: {commit[:12]} rolled out but {target} did not record it",
                     f"{unrecorded}; {after}")
                raise OperationFailed(f"{app} at {commit[:12]} rolled out but could not be "
                                      f"recorded on {target} ({unrecorded}); {after}")
            reverted = revert(cluster, namespace, target, production, candidate,
                              request.timeout, clock)
            told(events.Kind.FAILED_AND_REVERTED,
                 DeployResult(env.tip(target) or "", Outcome.FAILED),
                 f"{app}: {commit[:12]} failed on {target}, production's version re-applied",
                 failure + (f"; revert: {reverted}" if reverted else ""))
            raise OperationFailed(f"{app} at {commit[:12]}: {failure}; "
                                  f"{after_revert(env, app, target, reverted)}")
        finally:
            release_lease(cluster, namespace, request.build_id)


def announce_waiting(env: EnvRepo, request: DeliveryRequest, waiting: str) -> bool:
    """waiting_for_approval when the next environment has an approval gate (the environments
    the env repo records say so): its delivery build of `waiting`, the commit just published
    to its candidate branch, is held for an approver. Never raises; True when published."""
    app, following = request.app, request.next_environment
    try:
        gated = next((e for e in environments.read(env) if e.name == following), None)
        if gated is None or not gated.approval:
            return False
        event = events.from_trailers(
            events.Kind.WAITING_FOR_APPROVAL, app, gated.name, request.build_id,
            env.trailers(request.commit), candidate_commit=waiting, env_repo_commit=waiting,
            summary=f"{app}: {waiting[:12]} on {gated.candidate} waits for approval in "
                    f"{gated.name}",
            detail=f"promoted in {request.environment}; the {gated.trigger(app)} build of "
                   f"{waiting[:12]} is held until an approver approves it (Cloud Build "
                   f"history, or gcloud beta builds approve BUILD_ID --location=REGION)")
    except Exception as exc:  # a bad record or a failed fetch must not fail the delivery
        log(f"event waiting_for_approval for {app}: NOT published ({one_line(str(exc))})")
        return False
    return events.emit(event)


def production_folder(env: EnvRepo, target: str, app: str, folder: Path) -> Path | None:
    """Production's manifests of app (from the target's fetched tip) in folder; None: none."""
    tip = env.tip(target)
    entry = env.lookup(tip, f"{APPS_DIR}/{app}")
    if tip is None or entry is None or not entry.is_tree:
        return None
    env.materialize(entry.sha, folder)
    return folder


def revert(cluster: Cluster, namespace: str, target: str, production: Path | None,
           applied: Path, timeout: int, clock: Clock = time.monotonic) -> str | None:
    """Make the namespace hold production's objects again: re-apply them, delete what the
    failed commit (applied) added; the revert's own failure, or None."""
    failure = None
    if production is None:
        log(f"revert: {target} holds nothing for the app yet; nothing to re-apply")
    else:
        log(f"revert: re-applying what {target} holds to namespace {namespace}")
        failure = apply_and_wait(cluster, namespace, production, timeout, clock)
        if failure:
            log(f"revert: {failure}")
    added = removed(objects(applied, namespace), objects(production, namespace))
    pruning = prune(cluster, namespace, added, f"revert: not in {target}", log)
    if pruning.failure:
        log(f"revert: {pruning.failure}")
    return failure or pruning.failure


def after_revert(env: EnvRepo, app: str, target: str, failure: str | None) -> str:
    """What the cluster runs after `revert` (which returned failure), for the error line."""
    tip = env.tip(target)
    if tip is None or env.lookup(tip, f"{APPS_DIR}/{app}") is None:
        if failure:
            return (f"{target} holds nothing for {app} yet, and deleting what this commit "
                    f"applied FAILED ({failure}): THE CLUSTER STILL RUNS THIS COMMIT")
        return (f"{target} holds nothing for {app} yet: what this commit applied was "
                "deleted")
    if failure:
        return (f"re-applying {target} {tip[:12]} FAILED too ({failure}): THE CLUSTER AND "
                f"{target.upper()} DISAGREE")
    return f"re-applied {target} {tip[:12]}: the cluster runs what {target} holds again"


def seconds(value: str, flag: str, maximum: int = MAX_LOCK_TIMEOUT) -> int:
    """Whole seconds written like `300s`, from 1 to maximum."""
    return whole_seconds(flag, value, maximum)
