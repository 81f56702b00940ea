"""Show an app's deployment history from git alone: attempts on `candidate` beside `production`.

    python scripts/history.py --repo URL --app APP [--environment NAME]
        [--from candidate] [--to production] [--json] [--allowed-signers FILE]

--environment picks a delivery environment's two branches (default: the last one).

A readable table by default, `--json` for machines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gitops.cli import command_parser, run, signing_from
from gitops.environments import for_command
from gitops.history import history, render_text


def main(argv: Sequence[str]) -> str:
    parser = command_parser("history.py", __doc__, "repo", "app", "environment", "from", "to",
                            "json", "allowed-signers")
    args = parser.parse_args(argv)
    env = for_command(args.repo, args.environment, args.from_branch, args.to_branch)
    story = history(args.repo, args.app, env.candidate, env.production,
                    signing_from(args.allowed_signers))
    if args.json:
        return json.dumps({**story.to_json(), "environment": env.name}, indent=2)
    title = f"environment {env.name}\n" if env.recorded else ""
    return title + render_text(story, env.candidate, env.production)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
