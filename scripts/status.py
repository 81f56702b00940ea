"""What each app runs, from git alone: what production holds beside the newest attempt.

    python scripts/status.py --repo URL [--app APP] [--json]

Per app: production's image, source commit, time and build; the newest candidate attempt; and
whether they differ (the newest attempt is pending, or its delivery failed) or the app is frozen.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from envrepo import (
    ArgumentParser,
    BadInput,
    check_app,
    check_branch,
    run_main,
    scratch_repo,
    short_ref,
)
from history import apps_on, collect, fetch_history, table


def app_status(story: dict[str, Any], frozen: str | None) -> dict[str, Any]:
    production = story["production"][0] if story["production"] else None
    newest = story["attempts"][0] if story["attempts"] else None
    if newest is None or (production and production["promoted_from"] == newest["commit"]):
        state = "in sync"
    elif newest["promoted"]:
        state = "rolled back"  # the newest attempt was in production, an older one is now
    else:
        state = "differs: newest attempt not in production (pending or failed)"
    return {
        "app": story["app"],
        "state": state,
        "frozen": frozen is not None,
        "frozen_reason": (frozen or "").strip() or None,
        "production": production and {
            "commit": production["commit"], "time": production["time"],
            "kind": production["kind"], "image": production["image"],
            "source_commit": production["source_commit"], "build_id": production["build_id"],
            "candidate": production["promoted_from"]},
        "newest_attempt": newest and {
            "commit": newest["commit"], "time": newest["time"], "image": newest["image"],
            "source_commit": newest["source_commit"], "build_id": newest["build_id"]},
    }


def render_text(statuses: list[dict[str, Any]]) -> str:
    rows = [["APP", "PRODUCTION IMAGE", "SOURCE", "SINCE", "BUILD", "NEWEST ATTEMPT", "STATE"]]
    for s in statuses:
        prod, new = s["production"] or {}, s["newest_attempt"] or {}
        state = s["state"] + (" [FROZEN]" if s["frozen"] else "")
        rows.append([s["app"], short_ref(prod["image"]) if prod.get("image") else "-",
                     (prod.get("source_commit") or "-")[:12], prod.get("time") or "-",
                     prod.get("build_id") or "-",
                     short_ref(new["image"]) if new.get("image") else "-", state])
    return table(rows)


def main(argv: list[str]) -> str:
    parser = ArgumentParser(prog="status.py", description=__doc__)
    parser.add_repo_and_app(app_required=False)
    parser.add_argument("--from", dest="source", default="candidate")
    parser.add_argument("--to", dest="target", default="production")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    source, target = check_branch(args.source), check_branch(args.target)
    with scratch_repo(args.repo) as env:
        fetch_history(env, source, target)
        known = apps_on(env, source, target)
        apps = [check_app(args.app)] if args.app else known
        if args.app and args.app not in known:
            raise BadInput(f"unknown app {args.app!r}: known apps are "
                           f"{', '.join(known) or 'none'}")
        statuses = [app_status(collect(env, app, source, target),
                               env.freeze_note(source, app))
                    for app in apps]
    if args.json:
        return json.dumps(statuses, indent=2)
    return render_text(statuses) if statuses else "no apps yet"


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
