"""What each app runs, from git alone: what production holds beside the newest attempt.

Per app: production's image, source commit, time and build; the newest candidate attempt; and
whether they differ (the newest attempt is pending, or its delivery failed) or the app is frozen.
With allowed signers (`gitops.signing`), whether the signatures of both verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitops.checks import check_app, check_branch, short_ref
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput
from gitops.history import (
    Attempt,
    History,
    ProductionEntry,
    apps_on,
    collect,
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
                "image": prod.image, "source_commit": prod.source_commit,
                "build_id": prod.build_id, "candidate": prod.promoted_from,
                "signature": signature_json(prod.signature)},
            "newest_attempt": new and {
                "commit": new.commit, "time": new.time, "image": new.image,
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
    rows = [["APP", "PRODUCTION IMAGE", "SOURCE", "SINCE", "BUILD", "NEWEST ATTEMPT", *signed,
             "STATE"]]
    for s in statuses:
        prod, new = s.production, s.newest_attempt
        signatures = [signature_cell(prod.signature if prod else None),
                      signature_cell(new.signature if new else None)] if checked else []
        rows.append([
            s.app, short_ref(prod.image) if prod and prod.image else "-",
            (prod.source_commit if prod and prod.source_commit else "-")[:12],
            prod.time if prod else "-", prod.build_id if prod and prod.build_id else "-",
            short_ref(new.image) if new and new.image else "-", *signatures,
            s.state + (" [FROZEN]" if s.frozen else "")])
    return table(rows)
