"""Create the env repo's `candidate` and `production` branches if they do not exist yet.

Idempotent and safe: an existing branch is never touched, so running it again (every
`pulumi up` may) changes nothing. A missing branch starts from a commit holding a README that
explains the layout. Prints one line per branch: `created <branch> <sha>` or `exists <branch>`.
"""

from __future__ import annotations

import sys

from envrepo import (
    FILE_MODE,
    ArgumentParser,
    check_branch,
    commit_message,
    run_main,
    scratch_repo,
)

README = """\
# Env repository

Written by the GitOps delivery builds; do not edit by hand.

- `candidate`: every deployment attempt, one commit per app build.
- `production`: every successful deployment (promotions and rollbacks).
- `apps/<app>/`: the rendered manifests of one app, images pinned by digest.
- `.gitops/`: control state the builds read (last promoted commit per app, freezes).
"""


def main(argv: list[str]) -> str:
    parser = ArgumentParser(prog="init_branches.py", description=__doc__)
    parser.add_argument("--repo", required=True, help="env repo URL (anything git accepts)")
    parser.add_argument("--branch", action="append", dest="branches",
                        help="branch to create (repeatable; default candidate and production)")
    args = parser.parse_args(argv)
    branches = [check_branch(b) for b in args.branches or ["candidate", "production"]]
    lines = []
    with scratch_repo(args.repo) as env:
        readme = env.store(b"blob", README.encode())
        tree = env.edit_tree(None, "README.md", (readme, FILE_MODE))
        root = env.commit(tree, None, commit_message("Initialize env repository", []))
        for branch in branches:
            if env.fetch_branch(branch) is not None:
                lines.append(f"exists {branch}")
            elif env.push(root, branch):
                lines.append(f"created {branch} {root}")
            else:  # someone created it between our fetch and our push: theirs stands
                lines.append(f"exists {branch}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:])))
