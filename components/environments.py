"""Delivery environments (`gitops:environments`): an ordered chain such as staging, production.

Design decisions:
- Without `gitops:environments` the stack has one implicit environment, `production`, that behaves
  exactly as before environments existed: branches `candidate` and `production`, trigger
  `deliver-<app>`, identity `gitops-delivery`, namespace `<app>` on the stack's cluster, no
  approval. Every name it derives is today's name, so an existing stack plans no change.
- A configured environment E gets its own names, derived by one documented rule:
  branches `E-candidate` (attempts) and `E-production` (successes), trigger `deliver-<app>-E`,
  identity `gitops-delivery-E`, namespace `<app><namespaceSuffix>`, and for drift the reconcile
  trigger `reconcile-E` (the implicit one's is `reconcile-production` too) run by its own
  identity `gitops-reconcile-E` (the implicit one's: `gitops-reconcile`). An environment name
  is therefore at most 13 characters: the longer prefix, `gitops-reconcile-`, leaves 13 of a
  service account id's 30. Branch names can be set
  explicitly (`candidateBranch`, `productionBranch`), for example to keep a one-environment
  stack's `candidate`/`production` histories for its production environment when staging is
  added in front of it.
- Dashes, not slashes, in derived branch names: git stores `candidate/staging` as a file under
  a folder `candidate`, which cannot exist beside a branch `candidate`. For the same reason no
  branch may be a folder prefix of another (`a` beside `a/b`), which is checked.
- Branch names are checked with git's own ref rules (`git check-ref-format --branch`), which a
  test compares against git for many names.
- Where an environment deploys: its own GKE cluster (`cluster`, a name), or the stack's cluster
  (`gitops:clusterName`, the default). Two environments on one cluster must tell their
  namespaces apart with `namespaceSuffix`: a namespace belongs to one environment.
- Approval: `approval: true` holds every delivery build of that environment until one of its
  `approvers` (IAM members, who get Cloud Build's approver role) approves it.
- Every problem is reported at once, with the `pulumi config set` that fixes it, through the
  stack config's `Problems` (components/config.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.config import Problems

KEY = "gitops:environments"
DEFAULT_NAME = "production"
DEFAULT_CANDIDATE = "candidate"
DEFAULT_PRODUCTION = "production"
# The env repo branch that records the environments for the operator commands.
ENVIRONMENTS_BRANCH = "gitops-environments"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MEMBER = re.compile(r"^((user|serviceAccount|group):[^@\s]+@[^@\s]+|domain:[^@\s]+)$")
SUFFIX = re.compile(r"^(-[a-z0-9]+)*$")
DURATION = re.compile(r"^[1-9][0-9]*s$")
CLUSTER_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")
DELIVERY_ACCOUNT = "gitops-delivery"
DELIVERY_KIND = "delivery"
RECONCILE_ACCOUNT = "gitops-reconcile"
RECONCILE_KIND = "reconcile"
# Service account ids have at most 30 characters; both identities' ids end in `-<name>`.
NAME_MAX = 30 - max(len(DELIVERY_ACCOUNT), len(RECONCILE_ACCOUNT)) - 1
TRIGGER_PREFIX = "deliver-"
TRIGGER_NAME_MAX = 64
ENV_KEYS = ("name", "cluster", "namespaceSuffix", "approval", "approvers", "rolloutTimeout",
            "candidateBranch", "productionBranch")
# Characters git refuses anywhere in a ref name (git-check-ref-format(1), rules 3-5).
REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def branch_name_problem(name: str) -> str | None:
    """Why git would refuse name as a branch (`git check-ref-format --branch`), or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-'"
    if name == "@" or name == "HEAD":
        return f"{name!r} is reserved"
    if REF_FORBIDDEN.search(name):
        return "it holds a space, a control character or one of ~ ^ : ? * [ \\"
    if ".." in name or "@{" in name:
        return "it holds '..' or '@{'"
    if name.endswith("/") or name.endswith(".") or name.startswith("/") or "//" in name:
        return "it starts or ends with '/', ends with '.', or holds '//'"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "a part of it starts with '.' or ends with '.lock'"
    return None


@dataclass(frozen=True)
class EnvironmentConfig:
    """One delivery environment and every name derived from it."""

    name: str
    candidate_branch: str
    production_branch: str
    cluster_name: str
    namespace_suffix: str = ""
    approval_required: bool = False
    approvers: tuple[str, ...] = ()
    rollout_timeout: str = "300s"
    implicit: bool = False  # the one environment of a stack without gitops:environments

    def trigger_name(self, app: str) -> str:
        return f"{TRIGGER_PREFIX}{app}" if self.implicit else f"{TRIGGER_PREFIX}{app}-{self.name}"

    def namespace(self, app: str) -> str:
        return f"{app}{self.namespace_suffix}"

    @property
    def identity(self) -> str:
        """The build kind of this environment's delivery identity (see BuildIdentities)."""
        return DELIVERY_KIND if self.implicit else f"{DELIVERY_KIND}-{self.name}"

    @property
    def account_id(self) -> str:
        return DELIVERY_ACCOUNT if self.implicit else f"{DELIVERY_ACCOUNT}-{self.name}"

    @property
    def reconcile_identity(self) -> str:
        """The build kind of this environment's reconcile identity (see BuildIdentities)."""
        return RECONCILE_KIND if self.implicit else f"{RECONCILE_KIND}-{self.name}"

    @property
    def reconcile_account_id(self) -> str:
        return RECONCILE_ACCOUNT if self.implicit else f"{RECONCILE_ACCOUNT}-{self.name}"

    @property
    def reconcile_trigger_name(self) -> str:
        """The manual trigger of this environment's reconcile build (today's for the implicit
        environment, whose name is `production`)."""
        return f"reconcile-{self.name}"

    @property
    def resource_prefix(self) -> str:
        """Prefix of this environment's Pulumi resource names ("" keeps today's names)."""
        return "" if self.implicit else f"{self.name}-"

    def to_json(self) -> dict[str, Any]:
        """What the env repo records for the operator commands (status, history, ...)."""
        return {"name": self.name, "candidate": self.candidate_branch,
                "production": self.production_branch, "cluster": self.cluster_name,
                "namespaceSuffix": self.namespace_suffix, "approval": self.approval_required}


def implicit_environment(cluster_name: str, rollout_timeout: str) -> EnvironmentConfig:
    return EnvironmentConfig(name=DEFAULT_NAME, candidate_branch=DEFAULT_CANDIDATE,
                             production_branch=DEFAULT_PRODUCTION, cluster_name=cluster_name,
                             rollout_timeout=rollout_timeout, implicit=True)


def environments_json(environments: tuple[EnvironmentConfig, ...]) -> str:
    """The ordered environments as the env repo records them (one line of JSON)."""
    return json.dumps([env.to_json() for env in environments], sort_keys=True)


def fix_env(path: str, example: str) -> str:
    return f"set it with: pulumi config set --path '{path}' {example}"


def parse_environments(raw: Any, problems: Problems, cluster_name: str, rollout_timeout: str,
                       apps: list[str]) -> tuple[EnvironmentConfig, ...]:
    """The ordered environments from config (None: the implicit one), every problem reported."""
    if raw is None:
        return (implicit_environment(cluster_name, rollout_timeout),)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raw = None
    if not isinstance(raw, list) or not raw:
        problems.add(f"config {KEY} must be a non-empty list of environments: "
                     f"{fix_env(KEY + '[0].name', 'staging')}")
        return (implicit_environment(cluster_name, rollout_timeout),)
    found: list[EnvironmentConfig] = []
    positions: dict[str, int] = {}  # name -> index in the config list, for the fixes
    for index, item in enumerate(raw):
        env = parse_one(item, f"{KEY}[{index}]", problems, cluster_name, rollout_timeout, apps)
        if env is not None:
            found.append(env)
            positions.setdefault(env.name, index)
    check_together(found, problems, apps, positions)
    return tuple(found) or (implicit_environment(cluster_name, rollout_timeout),)


def parse_one(item: Any, path: str, problems: Problems, default_cluster: str,
              default_timeout: str, apps: list[str]) -> EnvironmentConfig | None:
    if not isinstance(item, dict):
        problems.add(f"config {path} must be an object with a name: "
                     f"{fix_env(path + '.name', 'staging')}")
        return None
    before = len(problems.messages)
    for key in sorted(set(item) - set(ENV_KEYS)):
        problems.add(f"config {path}.{key} is not an environment setting (known: "
                     f"{', '.join(ENV_KEYS)})")
    name = item.get("name")
    if not isinstance(name, str) or not DNS_LABEL.match(name) or len(name) > NAME_MAX:
        problems.add(f"config {path}.name {name!r} is not an environment name (a DNS label of "
                     f"at most {NAME_MAX} characters, so that its identities "
                     f"{DELIVERY_ACCOUNT}-NAME and {RECONCILE_ACCOUNT}-NAME are service "
                     f"account ids): "
                     f"{fix_env(path + '.name', 'staging')}")
        return None
    candidate = item.get("candidateBranch", f"{name}-candidate")
    production = item.get("productionBranch", f"{name}-production")
    for key, branch in (("candidateBranch", candidate), ("productionBranch", production)):
        why = branch_name_problem(branch) if isinstance(branch, str) else "it is not text"
        if why:
            problems.add(f"config {path}.{key} {branch!r} is not a valid git branch name "
                         f"({why}): {fix_env(f'{path}.{key}', f'{name}-{key[:-6]}')}")
        elif branch == ENVIRONMENTS_BRANCH or branch.startswith(ENVIRONMENTS_BRANCH + "/"):
            problems.add(f"config {path}.{key} {branch!r} is reserved: the env repo records "
                         f"the environments on {ENVIRONMENTS_BRANCH}")
    cluster = item.get("cluster", default_cluster)
    if not isinstance(cluster, str) or not CLUSTER_NAME.match(cluster):
        problems.add(f"config {path}.cluster {cluster!r} is not a GKE cluster name (a letter "
                     f"first, at most 40 lowercase letters, digits and hyphens): "
                     f"{fix_env(path + '.cluster', f'gitops-{name}')}")
    suffix = item.get("namespaceSuffix", "")
    if not isinstance(suffix, str) or not SUFFIX.match(suffix):
        problems.add(f"config {path}.namespaceSuffix {suffix!r} must be empty or like "
                     f"'-{name}' (dash-separated lowercase letters and digits): "
                     f"{fix_env(path + '.namespaceSuffix', f'-{name}')}")
        suffix = ""
    approval = item.get("approval", False)
    if isinstance(approval, str) and approval.lower() in ("true", "false"):
        approval = approval.lower() == "true"
    if not isinstance(approval, bool):
        problems.add(f"config {path}.approval must be true or false, not {approval!r}: "
                     f"{fix_env(path + '.approval', 'true')}")
        approval = False
    approvers = item.get("approvers", [])
    if not isinstance(approvers, list) or not all(isinstance(m, str) and MEMBER.match(m)
                                                  for m in approvers):
        problems.add(f"config {path}.approvers must be a list of IAM members like "
                     f"user:lead@example.com or group:release@example.com, not {approvers!r}: "
                     f"{fix_env(path + '.approvers[0]', 'user:lead@example.com')}")
        approvers = []
    if approval and not approvers:
        problems.add(f"config {path}: approval is required but nobody may approve; name the "
                     f"approvers: {fix_env(path + '.approvers[0]', 'user:lead@example.com')}")
    if approvers and not approval:
        problems.add(f"config {path}: approvers are named but approval is off; turn it on: "
                     f"{fix_env(path + '.approval', 'true')}")
    timeout = item.get("rolloutTimeout", default_timeout)
    if not isinstance(timeout, str) or not DURATION.match(timeout):
        problems.add(f"config {path}.rolloutTimeout must be seconds like 300s, not "
                     f"{timeout!r}: {fix_env(path + '.rolloutTimeout', '300s')}")
    else:
        from components.config import ConfigError
        from components.delivery_timing import DeliveryTiming

        try:
            DeliveryTiming.from_setting(timeout)
        except ConfigError as error:
            problems.add(f"config {path}.rolloutTimeout: {error}")
    for app in apps:
        trigger = f"{TRIGGER_PREFIX}{app}-{name}"
        if len(trigger) > TRIGGER_NAME_MAX:
            problems.add(f"config {path}.name {name!r}: the trigger {trigger} of app {app!r} "
                         f"would have {len(trigger)} characters, Cloud Build allows "
                         f"{TRIGGER_NAME_MAX}; shorten the environment or the app name")
        namespace = f"{app}{suffix}"
        if len(namespace) > 63:
            problems.add(f"config {path}.namespaceSuffix {suffix!r}: namespace {namespace} of "
                         f"app {app!r} would have {len(namespace)} characters, at most 63")
    if len(problems.messages) > before:
        return None
    return EnvironmentConfig(name=name, candidate_branch=candidate, production_branch=production,
                             cluster_name=cluster, namespace_suffix=suffix,
                             approval_required=approval, approvers=tuple(approvers),
                             rollout_timeout=timeout)


def check_together(envs: list[EnvironmentConfig], problems: Problems, apps: list[str],
                   positions: dict[str, int]) -> None:
    """Names, branches and namespaces belong to one environment each."""
    names = [env.name for env in envs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add(f"config {KEY} names environment {name!r} twice: each environment once")
    branches = [(b, env.name) for env in envs for b in (env.candidate_branch,
                                                       env.production_branch)]
    seen: dict[str, str] = {}
    for branch, owner in branches:
        if branch in seen:
            problems.add(f"config {KEY}: branch {branch!r} is used twice (environments "
                         f"{seen[branch]!r} and {owner!r}): each history has its own branch")
        seen.setdefault(branch, owner)
    for branch, owner in branches:
        for other, other_owner in branches:
            if other.startswith(branch + "/"):
                problems.add(f"config {KEY}: branch {branch!r} ({owner}) cannot exist beside "
                             f"{other!r} ({other_owner}): git keeps {branch!r} as a file where "
                             f"{other!r} needs a folder")
    places: dict[tuple[str, str], str] = {}
    for env in envs:
        for app in apps:
            place = (env.cluster_name, env.namespace(app))
            if place in places and places[place] != env.name:
                problems.add(f"config {KEY}: environments {places[place]!r} and {env.name!r} "
                             f"both deploy {app} to namespace {place[1]} of cluster "
                             f"{place[0]}; give one a namespaceSuffix: pulumi config set "
                             f"--path '{KEY}[{positions[env.name]}].namespaceSuffix' "
                             f"-{env.name}")
            places.setdefault(place, env.name)
    node_ids: dict[str, str] = {}
    for cluster in sorted({env.cluster_name for env in envs}):
        node_id = f"{cluster[:24].rstrip('-')}-nodes"
        if not ACCOUNT_ID.match(node_id):
            problems.add(f"config {KEY}: cluster {cluster!r} yields the node service account "
                         f"id {node_id!r}, which is not 6-30 characters with a letter first")
        if node_id in node_ids:
            problems.add(f"config {KEY}: clusters {node_ids[node_id]!r} and {cluster!r} share "
                         f"their first 24 characters, so both node identities would be "
                         f"{node_id!r}; name them apart earlier")
        node_ids.setdefault(node_id, cluster)
