"""An app's deployment history from git alone: attempts on `candidate` beside `production`.

Each candidate attempt (time, images, source commit, build id) says whether and when it reached
production; each production entry says whether it was a promote or a rollback. An app may build
several images: every entry carries all of them (one `Image:` trailer each), in build order.
History is inherently as long as the branches, so this is the one place that fetches them whole.

With allowed signers (`gitops.signing`), every entry also says whether its commit's signature
verifies, and who signed it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gitops.checks import check_app, check_branch, printable, short_ref
from gitops.credentials import strip_userinfo
from gitops.envrepo import EnvRepo, LogEntry, scratch_repo
from gitops.errors import BadInput
from gitops.signing import SignatureCheck, Signing

APPS_DIR = "apps"


@dataclass
class Attempt:
    """A candidate commit for the app, and whether production took it."""

    commit: str
    time: str
    images: tuple[str, ...]
    source_repo: str | None
    source_commit: str | None
    build_id: str | None
    signature: SignatureCheck | None = None  # None: allowed signers not given, not checked
    provenance: str | None = None  # the build whose verified provenance describes the images
    promoted: bool = False
    promoted_at: str | None = None
    production_commit: str | None = None

    @property
    def image(self) -> str | None:
        """The first image (the only one, for a one-image app)."""
        return self.images[0] if self.images else None


@dataclass(frozen=True)
class ProductionEntry:
    """A production commit for the app: a promote or a rollback of a candidate commit."""

    commit: str
    time: str
    kind: str  # "promote" or "rollback"
    promoted_from: str | None
    images: tuple[str, ...]
    source_commit: str | None
    build_id: str | None
    signature: SignatureCheck | None = None  # None: allowed signers not given, not checked

    @property
    def image(self) -> str | None:
        """The first image (the only one, for a one-image app)."""
        return self.images[0] if self.images else None


@dataclass
class History:
    """Newest first, both lists."""

    app: str
    attempts: list[Attempt] = field(default_factory=list)
    production: list[ProductionEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"app": self.app, "attempts": [asdict(a) for a in self.attempts],
                "production": [asdict(p) for p in self.production]}


def app_log(env: EnvRepo, branch: str, app: str) -> list[LogEntry]:
    """The branch's commits for app, newest first, with their signature checks when the
    allowed signers are configured."""
    tip = env.tip(branch)
    if tip is None:
        return []
    return [e for e in env.log(tip, f"{APPS_DIR}/{app}/", signatures=env.signing.verifies)
            if e.trailers.get("App", app) == app]


def apps_on(env: EnvRepo, *branches: str) -> list[str]:
    """Names of the apps with manifests at the fetched tip of any of the branches."""
    names: set[str] = set()
    for branch in branches:
        entry = env.lookup(env.tip(branch), APPS_DIR)
        if entry is not None and entry.is_tree:
            names.update(env.tree_entries(entry.sha))
    return sorted(names)


def collect(env: EnvRepo, app: str, source: str, target: str) -> History:
    """The app's history from the fetched branches."""
    attempts = [
        # Credentials recorded before Source-Repo was checked are not shown again.
        Attempt(commit=e.sha, time=e.time, images=e.trailers.all("Image"),
                source_repo=strip_userinfo(e.trailers.get("Source-Repo")),
                source_commit=e.trailers.get("Source-Commit"),
                build_id=e.trailers.get("Build-Id"), signature=e.signature,
                provenance=e.trailers.get("Provenance"))
        for e in app_log(env, source, app)
    ]
    production = [
        ProductionEntry(commit=e.sha, time=e.time,
                        kind="rollback" if e.trailers.get("Rollback") == "true" else "promote",
                        promoted_from=e.trailers.get("Promoted-From"),
                        images=e.trailers.all("Image"),
                        source_commit=e.trailers.get("Source-Commit"),
                        build_id=e.trailers.get("Build-Id"), signature=e.signature)
        for e in app_log(env, target, app)
    ]
    by_commit = {attempt.commit: attempt for attempt in attempts}
    for entry in reversed(production):  # oldest first: the first arrival wins
        attempt = by_commit.get(entry.promoted_from or "")
        if attempt is not None and not attempt.promoted:
            attempt.promoted, attempt.promoted_at = True, entry.time
            attempt.production_commit = entry.commit
    return History(app=app, attempts=attempts, production=production)


def history(repo: str, app: str, source: str = "candidate", target: str = "production",
            signing: Signing | None = None) -> History:
    """Fetch both branches whole and tell the app's story; BadInput for an unknown app.

    Signatures are checked when signing (default: the environment) has allowed signers.
    """
    check_app(app)
    check_branch(source)
    check_branch(target)
    with scratch_repo(repo, signing=signing) as env:
        env.fetch_whole(source, target)
        story = collect(env, app, source, target)
    if not story.attempts and not story.production:
        raise BadInput(f"unknown app {app!r}: no commits for {APPS_DIR}/{app}/ on "
                       f"{source} or {target}")
    return story


def table(rows: list[list[str]]) -> str:
    """Aligned columns; cells are escaped first (they hold values from commits)."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def images_cell(images: tuple[str, ...]) -> str:
    return ",".join(short_ref(image) for image in images) or "-"


def signature_cell(check: SignatureCheck | None) -> str:
    return check.describe() if check is not None else "-"


def render_text(story: History, source: str, target: str) -> str:
    """Two tables; a SIGNATURE column when signatures were checked."""
    checked = any(a.signature is not None for a in story.attempts) or \
        any(p.signature is not None for p in story.production)
    signed = ["SIGNATURE"] if checked else []
    attempts = [["WHEN", "COMMIT", "IMAGES", "SOURCE", "BUILD", *signed,
                 "REACHED " + target.upper()]]
    for a in story.attempts:
        reached = f"yes, {a.promoted_at}" if a.promoted else "no"
        signature = [signature_cell(a.signature)] if checked else []
        attempts.append([a.time, a.commit[:12], images_cell(a.images),
                         (a.source_commit or "-")[:12], a.build_id or "-", *signature, reached])
    production = [["WHEN", "COMMIT", "KIND", "FROM " + source.upper(), "IMAGES", "BUILD",
                   *signed]]
    for p in story.production:
        signature = [signature_cell(p.signature)] if checked else []
        production.append([p.time, p.commit[:12], p.kind, (p.promoted_from or "-")[:12],
                           images_cell(p.images), p.build_id or "-", *signature])
    return (f"{story.app}: attempts on {source} (newest first)\n{table(attempts)}\n\n"
            f"{story.app}: {target} (newest first)\n{table(production)}")
