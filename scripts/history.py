"""Show an app's deployment history from git alone: attempts on `candidate` beside `production`.

Each candidate attempt (time, image, source commit, build id) says whether and when it reached
production; each production entry says whether it was a promote or a rollback. A readable table
by default, `--json` for machines. History is inherently as long as the branches, so this is the
one script that fetches them whole.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from envrepo import (
    APPS_DIR,
    ArgumentParser,
    BadInput,
    EnvRepo,
    check_app,
    check_branch,
    parse_trailers,
    run_main,
    scratch_repo,
    short_ref,
)

RECORD_SEP, FIELD_SEP = "\x1e", "\x1f"


@dataclass
class Attempt:
    commit: str
    time: str
    image: str | None
    source_repo: str | None
    source_commit: str | None
    build_id: str | None
    promoted: bool = False
    promoted_at: str | None = None
    production_commit: str | None = None


@dataclass
class ProductionEntry:
    commit: str
    time: str
    kind: str  # "promote" or "rollback"
    promoted_from: str | None
    image: str | None
    source_commit: str | None
    build_id: str | None


def app_commits(env: EnvRepo, branch: str, app: str) -> list[tuple[str, str, dict[str, str]]]:
    """(sha, committer time, trailers) of the branch's commits for app, newest first."""
    tip = env.tip(branch)
    if tip is None:
        return []
    log = env.g.log(f"--format=%H{FIELD_SEP}%cI{FIELD_SEP}%B{RECORD_SEP}", tip, "--",
                    f"{APPS_DIR}/{app}/")
    commits = []
    for record in filter(str.strip, log.split(RECORD_SEP)):
        sha, when, body = record.strip("\n").split(FIELD_SEP, 2)
        trailers = parse_trailers(body)
        if trailers.get("App", app) == app:
            commits.append((sha, when, trailers))
    return commits


def fetch_history(env: EnvRepo, *branches: str) -> None:
    """Fetch the branches whole: history is as long as they are."""
    for branch in branches:
        env.depths[branch] = 0
        env.fetch_branch(branch)


def apps_on(env: EnvRepo, *branches: str) -> list[str]:
    """Names of the apps with manifests at the tip of any of the branches."""
    names: set[str] = set()
    for branch in branches:
        entry = env.lookup(env.tip(branch), APPS_DIR)
        if entry is not None:
            names.update(env.entries(entry[0]))
    return sorted(names)


def collect(env: EnvRepo, app: str, source: str, target: str) -> dict[str, Any]:
    attempts = [
        Attempt(commit=sha, time=when, image=t.get("Image"), source_repo=t.get("Source-Repo"),
                source_commit=t.get("Source-Commit"), build_id=t.get("Build-Id"))
        for sha, when, t in app_commits(env, source, app)
    ]
    production = [
        ProductionEntry(commit=sha, time=when,
                        kind="rollback" if t.get("Rollback") == "true" else "promote",
                        promoted_from=t.get("Promoted-From"), image=t.get("Image"),
                        source_commit=t.get("Source-Commit"), build_id=t.get("Build-Id"))
        for sha, when, t in app_commits(env, target, app)
    ]
    by_commit = {attempt.commit: attempt for attempt in attempts}
    for entry in reversed(production):  # oldest first: the first arrival wins
        attempt = by_commit.get(entry.promoted_from or "")
        if attempt is not None and not attempt.promoted:
            attempt.promoted, attempt.promoted_at = True, entry.time
            attempt.production_commit = entry.commit
    return {
        "app": app,
        "attempts": [asdict(a) for a in attempts],
        "production": [asdict(p) for p in production],
    }


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def image_cell(image: str | None) -> str:
    return short_ref(image) if image else "-"


def render_text(story: dict[str, Any], source: str, target: str) -> str:
    app = story["app"]
    attempts = [["WHEN", "COMMIT", "IMAGE", "SOURCE", "BUILD", "REACHED " + target.upper()]]
    for a in story["attempts"]:
        reached = f"yes, {a['promoted_at']}" if a["promoted"] else "no"
        attempts.append([a["time"], a["commit"][:12], image_cell(a["image"]),
                         (a["source_commit"] or "-")[:12], a["build_id"] or "-", reached])
    production = [["WHEN", "COMMIT", "KIND", "FROM " + source.upper(), "IMAGE", "BUILD"]]
    for p in story["production"]:
        production.append([p["time"], p["commit"][:12], p["kind"],
                           (p["promoted_from"] or "-")[:12], image_cell(p["image"]),
                           p["build_id"] or "-"])
    return (f"{app}: attempts on {source} (newest first)\n{table(attempts)}\n\n"
            f"{app}: {target} (newest first)\n{table(production)}")


def main(argv: list[str]) -> str:
    parser = ArgumentParser(prog="history.py", description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--from", dest="source", default="candidate")
    parser.add_argument("--to", dest="target", default="production")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    app = check_app(args.app)
    source, target = check_branch(args.source), check_branch(args.target)
    with scratch_repo(args.repo) as env:
        fetch_history(env, source, target)
        story = collect(env, app, source, target)
    if not story["attempts"] and not story["production"]:
        raise BadInput(f"unknown app {app!r}: no commits for {APPS_DIR}/{app}/ on "
                       f"{source} or {target}")
    if args.json:
        return json.dumps(story, indent=2)
    return render_text(story, source, target)


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
