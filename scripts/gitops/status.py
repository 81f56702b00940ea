"""What each app runs, from git alone: what production holds beside the newest attempt.

Per app: production's images (every image the app builds), source commit, time and build; the
newest candidate attempt; and whether they differ (the newest attempt is pending, or its
delivery failed) or the app is frozen.
With allowed signers (`gitops.signing`), whether the signatures of both verify.

With delivery environments (recorded in the env repo), every app in every environment side by
side: what runs where (cluster and namespace), and what is on its way; in an environment with an
approval gate, an attempt not yet in production is awaiting approval, delivering or failed (git
alone cannot tell these apart: the build's status in Cloud Build does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitops.build_status import BuildLookup
from gitops.checks import check_app, check_branch
from gitops.environments import Environment, choose
from gitops.environments import read as read_environments
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput
from gitops.history import (
    Attempt,
    History,
    ProductionEntry,
    apps_on,
    collect,
    images_cell,
    signature_cell,
    table,
)
from gitops.signing import SignatureCheck, Signing

FROZEN_DIR = ".gitops/frozen"
IN_SYNC = "in sync"
ROLLED_BACK = "rolled back"  # the newest attempt was in production, an older one is now
DIFFERS = "differs: newest attempt not in production (pending or failed)"


@dataclass(frozen=True)
class AppStatus:
    app: str
    state: str  # IN_SYNC, ROLLED_BACK or DIFFERS
    frozen_reason: str | None  # None: not frozen ("" when frozen without a reason)
    production: ProductionEntry | None
    newest_attempt: Attempt | None

    @property
    def frozen(self) -> bool:
        return self.frozen_reason is not None

    def to_json(self) -> dict[str, Any]:
        prod, new = self.production, self.newest_attempt
        return {
            "app": self.app,
            "state": self.state,
            "frozen": self.frozen,
            "frozen_reason": self.frozen_reason or None,
            "production": prod and {
                "commit": prod.commit, "time": prod.time, "kind": prod.kind,
                "images": list(prod.images), "source_commit": prod.source_commit,
                "build_id": prod.build_id, "candidate": prod.promoted_from,
                "signature": signature_json(prod.signature)},
            "newest_attempt": new and {
                "commit": new.commit, "time": new.time, "images": list(new.images),
                "source_commit": new.source_commit, "build_id": new.build_id,
                "signature": signature_json(new.signature)},
        }


def signature_json(check: SignatureCheck | None) -> dict[str, str | None] | None:
    return None if check is None else {"status": check.status, "signer": check.signer}


def freeze_note(env: EnvRepo, branch: str, app: str) -> str | None:
    """The reason app is frozen at the branch's fetched tip, or None when it is not."""
    return env.read_blob(env.tip(branch), f"{FROZEN_DIR}/{app}")


def app_status(story: History, frozen: str | None) -> AppStatus:
    production = story.production[0] if story.production else None
    newest = story.attempts[0] if story.attempts else None
    if newest is None or (production and production.promoted_from == newest.commit):
        state = IN_SYNC
    elif newest.promoted:
        state = ROLLED_BACK
    else:
        state = DIFFERS
    reason = None if frozen is None else frozen.strip()
    return AppStatus(story.app, state, reason, production, newest)


def status(repo: str, app: str | None = None, source: str = "candidate",
           target: str = "production", signing: Signing | None = None) -> list[AppStatus]:
    """The status of one app, or of every app on either branch (signatures checked when
    signing, default the environment, has allowed signers)."""
    check_branch(source)
    check_branch(target)
    with scratch_repo(repo, signing=signing) as env:
        env.fetch_whole(source, target)
        known = apps_on(env, source, target)
        apps = [check_app(app)] if app else known
        if app and app not in known:
            raise BadInput(f"unknown app {app!r}: known apps are {', '.join(known) or 'none'}")
        return [app_status(collect(env, name, source, target), freeze_note(env, source, name))
                for name in apps]


def render_text(statuses: list[AppStatus]) -> str:
    if not statuses:
        return "no apps yet"
    checked = any(e is not None and e.signature is not None
                  for s in statuses for e in (s.production, s.newest_attempt))
    signed = ["PRODUCTION SIGNATURE", "ATTEMPT SIGNATURE"] if checked else []
    rows = [["APP", "PRODUCTION IMAGES", "SOURCE", "SINCE", "BUILD", "NEWEST ATTEMPT", *signed,
             "STATE"]]
    for s in statuses:
        prod, new = s.production, s.newest_attempt
        signatures = [signature_cell(prod.signature if prod else None),
                      signature_cell(new.signature if new else None)] if checked else []
        rows.append([
            s.app, images_cell(prod.images) if prod else "-",
            (prod.source_commit if prod and prod.source_commit else "-")[:12],
            prod.time if prod else "-", prod.build_id if prod and prod.build_id else "-",
            images_cell(new.images) if new else "-", *signatures,
            s.state + (" [FROZEN]" if s.frozen else "")])
    return table(rows)


# --- every environment side by side ------------------------------------------------------------

AWAITING = "awaiting approval, delivering or failed"  # a gated environment's newest attempt
PENDING = "delivering or failed"


@dataclass(frozen=True)
class EnvironmentStatus:
    """One environment: where it deploys, and its status of each app."""

    environment: Environment
    apps: list[AppStatus]
    # app -> where its newest attempt is, from Cloud Build (only asked with --project/--region)
    arrivals: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.environment.to_json(),
                "apps": [{**s.to_json(), **({"newest_attempt_build": self.arrivals[s.app]}
                                            if s.app in self.arrivals else {})}
                         for s in self.apps]}


@dataclass(frozen=True)
class BuildsAt:
    """Where to ask Cloud Build about delivery builds."""

    lookup: BuildLookup
    project: str
    region: str


def status_by_environment(repo: str, app: str | None = None, environment: str | None = None,
                          builds: BuildsAt | None = None, signing: Signing | None = None
                          ) -> list[EnvironmentStatus]:
    """Every app in every recorded environment (or only the named one), from git alone; with
    builds, Cloud Build says where each newest attempt not yet in production is; signatures
    checked when signing (default: the environment) has allowed signers."""
    if environment is not None:
        check_app(environment)
    with scratch_repo(repo, signing=signing) as env:
        recorded = read_environments(env)
        chosen = [choose(recorded, environment)] if environment else recorded
        branches = [b for e in chosen for b in (e.candidate, e.production)]
        env.fetch_whole(*branches)
        known = apps_on(env, *branches)
        if app and app not in known:
            raise BadInput(f"unknown app {app!r}: known apps are {', '.join(known) or 'none'}")
        names = [check_app(app)] if app else known
        results = [EnvironmentStatus(e, [
            app_status(collect(env, name, e.candidate, e.production),
                       freeze_note(env, e.candidate, name)) for name in names])
            for e in chosen]
    for result in results if builds else []:
        assert builds is not None
        for found in result.apps:
            if found.state == DIFFERS and found.newest_attempt is not None:
                result.arrivals[found.app] = builds.lookup.attempt_state(
                    builds.project, builds.region, result.environment.trigger(found.app),
                    found.newest_attempt.commit)
    return results


def cell(status: AppStatus, environment: Environment,
         arrivals: dict[str, str | None] | None = None) -> str:
    """What runs, and what is on its way (or stuck), in one environment."""
    prod, new = status.production, status.newest_attempt
    runs = images_cell(prod.images) if prod else "-"
    if status.state == DIFFERS and new is not None:
        waiting = AWAITING if environment.approval else PENDING
        if arrivals is not None and status.app in arrivals:  # Cloud Build said
            waiting = arrivals[status.app] or "no build found (not triggered yet?)"
        newest = images_cell(new.images) if new.images else new.commit[:12]
        runs += f"; {newest} {waiting}"
    elif status.state == ROLLED_BACK:
        runs += " (rolled back)"
    check = prod.signature if prod else None
    if check is not None:  # signatures were checked: say who signed what runs, or what is wrong
        runs += f" [signed: {check.signer}]" if check.good else f" [{check.describe()}]"
    return runs + (" [FROZEN]" if status.frozen else "")


def render_environments(results: list[EnvironmentStatus]) -> str:
    """One row per app, one column per environment (in delivery order)."""
    if len(results) == 1 and not results[0].environment.recorded:
        return render_text(results[0].apps)
    apps = sorted({s.app for r in results for s in r.apps})
    if not apps:
        return "no apps yet"
    header = ["APP"]
    for r in results:
        e = r.environment
        gate = ", approval" if e.approval else ""
        where = f"{e.cluster or '?'}/{e.namespace('APP')}"
        header.append(f"{e.name.upper()} ({where}{gate})")
    rows = [header]
    for name in apps:
        row = [name]
        for r in results:
            found = next((s for s in r.apps if s.app == name), None)
            row.append(cell(found, r.environment, r.arrivals) if found else "-")
        rows.append(row)
    return table(rows)
