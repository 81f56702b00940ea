"""Create the env repo's `candidate` and `production` branches if they do not exist yet.

Idempotent and safe: an existing branch is never touched, so running it again (every
`pulumi up` may) changes nothing. A missing branch starts from a commit holding a README that
explains the layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gitops.checks import check_branch
from gitops.environments import ENVIRONMENTS_BRANCH, ENVIRONMENTS_FILE, Environment, parse
from gitops.envrepo import Entry, EnvRepo, scratch_repo
from gitops.retry import RetryPolicy, retry_push
from gitops.trailers import commit_message

DEFAULT_BRANCHES = ("candidate", "production")
README = """\
# Env repository

Written by the GitOps delivery builds; do not edit by hand.

- `candidate`: every deployment attempt, one commit per app build.
- `production`: every successful deployment (promotions and rollbacks).
- `apps/<app>/`: the rendered manifests of one app, images pinned by digest.
- `.gitops/`: control state the builds read (last promoted commit per app, freezes).
"""


@dataclass(frozen=True)
class BranchInit:
    branch: str
    created: str | None  # the root commit pushed, or None when the branch existed

    def describe(self) -> str:
        return f"created {self.branch} {self.created}" if self.created else \
            f"exists {self.branch}"


def init_branches(repo: str, branches: tuple[str, ...] | list[str] = DEFAULT_BRANCHES,
                  environments: list[Environment] | None = None) -> list[BranchInit]:
    """Create each missing branch from one root commit; existing branches stay as they are.

    With environments: every environment's two branches, and the environments recorded on
    their own branch (a new commit there only when they changed).
    """
    if environments:
        branches = [b for env in environments for b in (env.candidate, env.production)]
    for branch in branches:
        check_branch(branch)
    results = []
    with scratch_repo(repo) as env:
        readme = Entry.file(env.write_blob(README.encode()))
        tree = env.edit_tree(None, "README.md", readme)
        root = env.commit(tree, None, commit_message("Initialize env repository", []))
        for branch in branches:
            if env.fetch(branch) is not None:
                results.append(BranchInit(branch, None))
            elif env.push(root, branch, None):
                results.append(BranchInit(branch, root))
            else:  # someone created it between our fetch and our push: theirs stands
                results.append(BranchInit(branch, None))
        if environments:
            before = env.fetch(ENVIRONMENTS_BRANCH)
            after = record(env, environments)
            results.append(BranchInit(ENVIRONMENTS_BRANCH, after if after != before else None))
    return results


def record(env: EnvRepo, environments: list[Environment],
           policy: RetryPolicy | None = None) -> str | None:
    """Write the environments to their branch (a new commit only when they changed)."""
    text = json.dumps([e.to_json() for e in environments], indent=2, sort_keys=True) + "\n"
    parse(text)  # what we write must read back
    blob = Entry.file(env.write_blob(text.encode()))
    message = commit_message("Record delivery environments",
                             [("Environments", " ".join(e.name for e in environments))])

    def attempt() -> str | None:
        tip = env.fetch(ENVIRONMENTS_BRANCH)
        if env.lookup(tip, ENVIRONMENTS_FILE) == blob:
            return tip
        tree = env.edit_tree(env.root_tree(tip), ENVIRONMENTS_FILE, blob)
        commit = env.commit(tree, tip, message)
        return commit if env.push(commit, ENVIRONMENTS_BRANCH, tip) else None

    return retry_push(attempt, policy or RetryPolicy.from_env()).value
