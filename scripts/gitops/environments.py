"""The delivery environments as the env repo records them, for the operator commands.

`pulumi up` records the stack's ordered environments (name, branches, cluster, namespace
suffix, approval) as `environments.json` on the branch `gitops-environments`, so `status`,
`history`, `rollback` and `freeze` find an environment's branches from git alone. A repository
without that branch has one environment, `production`, with `candidate` and `production`: the
stack has no `gitops:environments`.

The file is input like any other: every name is checked before it reaches git. Only
`gitops.branches` writes it (read-only commands import this module and push nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gitops.checks import check_app, check_branch
from gitops.envrepo import EnvRepo, scratch_repo
from gitops.errors import BadInput

ENVIRONMENTS_BRANCH = "gitops-environments"
ENVIRONMENTS_FILE = "environments.json"
DEFAULT_NAME = "production"


@dataclass(frozen=True)
class Environment:
    name: str
    candidate: str  # branch of attempts
    production: str  # branch of successes
    cluster: str = ""
    namespace_suffix: str = ""
    approval: bool = False
    recorded: bool = True  # False: the implicit environment of a repository without a record

    def namespace(self, app: str) -> str:
        return f"{app}{self.namespace_suffix}"

    def trigger(self, app: str) -> str:
        """The app's delivery trigger in this environment (components/environments.py)."""
        return f"deliver-{app}-{self.name}" if self.recorded else f"deliver-{app}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "production": self.production,
                "cluster": self.cluster, "namespaceSuffix": self.namespace_suffix,
                "approval": self.approval}


DEFAULT = Environment(DEFAULT_NAME, "candidate", "production", recorded=False)


def parse(text: str) -> list[Environment]:
    """The recorded environments; BadInput naming what is wrong with the record."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{ENVIRONMENTS_FILE} is not JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise BadInput(f"{ENVIRONMENTS_FILE} must be a non-empty list of environments")
    found = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadInput(f"{ENVIRONMENTS_FILE}: {item!r} is not an environment")
        name, candidate, production = (item.get(k) for k in ("name", "candidate", "production"))
        if not all(isinstance(v, str) for v in (name, candidate, production)):
            raise BadInput(f"{ENVIRONMENTS_FILE}: {item!r} needs name, candidate, production")
        assert isinstance(name, str) and isinstance(candidate, str)
        assert isinstance(production, str)
        check_app(name)  # environment names are DNS labels too
        suffix = str(item.get("namespaceSuffix") or "")
        if suffix:
            check_app(f"x{suffix}")
        found.append(Environment(name, check_branch(candidate), check_branch(production),
                                 str(item.get("cluster") or ""), suffix,
                                 item.get("approval") is True))
    names = [env.name for env in found]
    if len(set(names)) != len(names):
        raise BadInput(f"{ENVIRONMENTS_FILE} names an environment twice")
    return found


def read(env: EnvRepo) -> list[Environment]:
    """The environments recorded in the repository (fetched here), or [DEFAULT]."""
    tip = env.fetch(ENVIRONMENTS_BRANCH)
    text = env.read_blob(tip, ENVIRONMENTS_FILE) if tip else None
    return parse(text) if text else [DEFAULT]


def choose(environments: list[Environment], name: str | None) -> Environment:
    """The named environment, or the last one (production) when name is None."""
    if name is None:
        return environments[-1]
    for env in environments:
        if env.name == name:
            return env
    raise BadInput(f"unknown environment {name!r}: the env repo has "
                   f"{', '.join(e.name for e in environments)}")


def resolve(repo: str, name: str | None) -> Environment:
    """One environment of the repository (default: the last)."""
    if name is not None:
        check_app(name)
    with scratch_repo(repo) as env:
        return choose(read(env), name)


def for_command(repo: str, name: str | None, source: str = "candidate",
                target: str = "production") -> Environment:
    """The environment an operator command works on.

    With recorded environments: the named one, or the last. Without: the implicit one, on the
    branches given (--from/--to, as before environments existed); naming an environment other
    than `production` there is an error.
    """
    if name is not None:
        check_app(name)
    with scratch_repo(repo) as env:
        return in_repo(env, name, source, target)


def in_repo(env: EnvRepo, name: str | None, source: str = "candidate",
            target: str = "production") -> Environment:
    """`for_command` on a repository already open (its record is fetched here)."""
    chosen = choose(read(env), name)
    if chosen.recorded:
        return chosen
    return Environment(DEFAULT_NAME, check_branch(source), check_branch(target), recorded=False)


def next_after(environments: list[Environment], name: str) -> Environment | None:
    index = [e.name for e in environments].index(name)
    return environments[index + 1] if index + 1 < len(environments) else None
