"""Show an app's deployment history from git alone: attempts on `candidate` beside `production`.

    python scripts/history.py --repo URL --app APP [--from candidate] [--to production] [--json]
        [--allowed-signers FILE]

A readable table by default, `--json` for machines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from gitops.cli import command_parser, run, signing_from
from gitops.history import history, render_text


def main(argv: Sequence[str]) -> str:
    parser = command_parser("history.py", __doc__, "repo", "app", "from", "to", "json",
                            "allowed-signers")
    args = parser.parse_args(argv)
    story = history(args.repo, args.app, args.from_branch, args.to_branch,
                    signing_from(args.allowed_signers))
    if args.json:
        return json.dumps(story.to_json(), indent=2)
    return render_text(story, args.from_branch, args.to_branch)


if __name__ == "__main__":
    sys.exit(run(main, sys.argv[1:]))
