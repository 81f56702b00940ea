"""The CrossGuard rules of the GitOps delivery stack, as plain functions that tests call directly.

Each rule takes a resource's type, its name and its input properties (camelCase, as the policy
engine passes them) and returns the violations, each saying which resource and how to fix it.
`POLICIES` wraps them for pulumi-policy; `__main__.py` only assembles the pack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRIGGER = "gcp:cloudbuild/trigger:Trigger"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
REGISTRY = "gcp:artifactregistry/repository:Repository"
LOGGING_OK = ("CLOUD_LOGGING_ONLY", "NONE")
DEFAULT_ACCOUNTS = re.compile(r"(-compute@developer\.gserviceaccount\.com|"
                              r"@cloudbuild\.gserviceaccount\.com)$")
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
SECRET_NAME = re.compile(r"token|secret|password|passwd|api[_-]?key|private[_-]?key|credential",
                         re.I)
SECRET_VALUE = re.compile(r"(ghp_|gho_|ghs_|ghu_|github_pat_)[A-Za-z0-9_]{20,}"
                          r"|AIza[0-9A-Za-z_-]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
                          r"|xox[abpr]-[A-Za-z0-9-]{10,}|pul-[0-9a-f]{40}")
# A Secret Manager reference names a secret without carrying it.
SECRET_REFERENCE = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")
PRODUCTION_STACK = re.compile(r"prod", re.I)

Props = Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[str, str, Props, str], list[str]]  # (type, name, props, stack) -> messages
    advisory: bool = False


def where(resource_type: str, name: str) -> str:
    return f"{resource_type.split(':')[-1]} '{name}'"


def members(props: Props) -> Iterable[str]:
    if isinstance(props.get("member"), str):
        yield props["member"]
    yield from (m for m in props.get("members") or [] if isinstance(m, str))


def account_email(value: str) -> str:
    """The email in `serviceAccount:EMAIL` or `projects/P/serviceAccounts/EMAIL`."""
    return value.split(":", 1)[-1].rsplit("/", 1)[-1]


# --- rules ------------------------------------------------------------------------------------


def trigger_identity_and_logging(resource_type: str, name: str, props: Props,
                                 stack: str) -> list[str]:
    """A trigger names a dedicated service account and its build sets the logging rule."""
    if resource_type != TRIGGER:
        return []
    problems = []
    account = props.get("serviceAccount") or ""
    if not re.match(r"^projects/[^/]+/serviceAccounts/[^/]+@[^/]+$", account):
        problems.append(f"{where(resource_type, name)} names no service account. Fix: set "
                        "service_account='projects/PROJECT/serviceAccounts/EMAIL' of a "
                        "dedicated build identity.")
    elif DEFAULT_ACCOUNTS.search(account_email(account)):
        problems.append(f"{where(resource_type, name)} runs as a default account "
                        f"({account_email(account)}). Fix: use a dedicated service account.")
    build = props.get("build")
    if build is not None:
        options = build.get("options") or {}
        if options.get("logging") not in LOGGING_OK and not build.get("logsBucket"):
            problems.append(f"{where(resource_type, name)}: a build with a user-specified "
                            "service account needs options.logging CLOUD_LOGGING_ONLY or NONE, "
                            "or a logsBucket. Fix: set build.options.logging.")
    elif not props.get("filename") and not props.get("gitFileSource"):
        problems.append(f"{where(resource_type, name)} has neither an inline build nor a build "
                        "config file. Fix: set build or filename.")
    return problems


def no_default_accounts_or_primitive_roles(resource_type: str, name: str, props: Props,
                                           stack: str) -> list[str]:
    """No grant to a default account; no owner, editor or viewer for a service account."""
    problems = []
    for member in members(props):
        if DEFAULT_ACCOUNTS.search(member):
            problems.append(f"{where(resource_type, name)} grants {props.get('role')} to the "
                            f"default account {member}. Fix: grant it to a dedicated service "
                            "account instead.")
        elif member.startswith("serviceAccount:") and props.get("role") in PRIMITIVE_ROLES:
            problems.append(f"{where(resource_type, name)} grants the primitive role "
                            f"{props['role']} to {member}. Fix: grant only the predefined roles "
                            "its steps need, on the narrowest resource.")
    return problems


def gke_identity(resource_type: str, name: str, props: Props, stack: str) -> list[str]:
    """Workload Identity on clusters; dedicated accounts and GKE_METADATA on node pools;
    deletion protection on production stacks."""
    problems = []
    if resource_type == CLUSTER:
        if not props.get("enableAutopilot") and not (props.get("workloadIdentityConfig") or
                                                     {}).get("workloadPool"):
            problems.append(f"{where(resource_type, name)} has no Workload Identity. Fix: set "
                            "workload_identity_config.workload_pool='PROJECT.svc.id.goog' (or "
                            "use Autopilot).")
        if PRODUCTION_STACK.search(stack) and props.get("deletionProtection") is False:
            problems.append(f"{where(resource_type, name)} has deletion_protection off in the "
                            f"production stack '{stack}'. Fix: pulumi config set "
                            "gitops:deletionProtection true.")
    if resource_type == NODE_POOL:
        node = props.get("nodeConfig") or {}
        account = node.get("serviceAccount") or ""
        if not account or account == "default" or DEFAULT_ACCOUNTS.search(account):
            problems.append(f"{where(resource_type, name)} runs nodes as the Compute Engine "
                            "default account. Fix: set node_config.service_account to a "
                            "dedicated node service account.")
        if (node.get("workloadMetadataConfig") or {}).get("mode") != "GKE_METADATA":
            problems.append(f"{where(resource_type, name)} does not use the GKE metadata "
                            "server. Fix: set node_config.workload_metadata_config.mode="
                            "'GKE_METADATA'.")
    return problems


def registry_docker_with_cleanup(resource_type: str, name: str, props: Props,
                                 stack: str) -> list[str]:
    """Artifact Registry repositories are Docker format with at least one cleanup policy."""
    if resource_type != REGISTRY:
        return []
    problems = []
    if props.get("format") != "DOCKER":
        problems.append(f"{where(resource_type, name)} is {props.get('format')} format. Fix: "
                        "format='DOCKER'.")
    if not props.get("cleanupPolicies"):
        problems.append(f"{where(resource_type, name)} has no cleanup policy, so storage grows "
                        "without bound. Fix: add cleanup_policies (keep the newest N, delete "
                        "old untagged).")
    return problems


def no_plain_secrets(resource_type: str, name: str, props: Props, stack: str) -> list[str]:
    """No secret in a trigger substitution or a build step's plain environment."""
    if resource_type != TRIGGER:
        return []
    problems = []
    for key, value in (props.get("substitutions") or {}).items():
        named = SECRET_NAME.search(key) and not SECRET_REFERENCE.match(str(value))
        if named or SECRET_VALUE.search(str(value)):
            problems.append(f"{where(resource_type, name)}: substitution {key} carries a "
                            "secret; substitutions show in the console and logs. Fix: read it "
                            "from Secret Manager (availableSecrets + secretEnv).")
    for step in (props.get("build") or {}).get("steps") or []:
        for item in step.get("envs") or []:
            key, _, value = str(item).partition("=")
            if SECRET_VALUE.search(value) or (SECRET_NAME.search(key) and value and
                                              not value.startswith("$")):
                problems.append(f"{where(resource_type, name)}: step "
                                f"{step.get('id', step.get('name'))} sets {key} in its plain "
                                "environment. Fix: use secretEnv with availableSecrets.")
    return problems


def production_needs_approval(resource_type: str, name: str, props: Props,
                              stack: str) -> list[str]:
    """A configured environment named production holds its delivery builds for approval."""
    # The program tags a configured environment's delivery triggers `environment-<name>`; a
    # stack without gitops:environments (one implicit environment) tags none.
    if resource_type != TRIGGER or "environment-production" not in (props.get("tags") or []):
        return []
    if (props.get("approvalConfig") or {}).get("approvalRequired") is True:
        return []
    return [f"{where(resource_type, name)} delivers environment 'production' without an "
            "approval gate. Fix: pulumi config set --path 'gitops:environments[N].approval' "
            "true and name its approvers (gitops:environments[N].approvers[0])."]


RULES = [
    Rule("trigger-identity-and-logging", trigger_identity_and_logging.__doc__ or "",
         trigger_identity_and_logging),
    Rule("no-default-accounts-or-primitive-roles",
         no_default_accounts_or_primitive_roles.__doc__ or "",
         no_default_accounts_or_primitive_roles),
    Rule("gke-workload-identity", " ".join((gke_identity.__doc__ or "").split()), gke_identity),
    Rule("registry-docker-with-cleanup", registry_docker_with_cleanup.__doc__ or "",
         registry_docker_with_cleanup, advisory=True),
    Rule("no-plain-secrets", no_plain_secrets.__doc__ or "", no_plain_secrets),
    Rule("production-needs-approval", production_needs_approval.__doc__ or "",
         production_needs_approval),
]


def stack_of(urn: str) -> str:
    """The stack name in a URN (`urn:pulumi:STACK::PROJECT::...`)."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def violations(resource_type: str, name: str, props: Props, stack: str) -> list[tuple[str, str]]:
    """(rule, message) for every rule a resource breaks."""
    return [(rule.name, message) for rule in RULES
            for message in rule.check(resource_type, name, props, stack)]


def policies() -> list[Any]:
    """The rules as pulumi-policy ResourceValidationPolicies."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

    def validator(rule: Rule) -> Callable[..., None]:
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            for message in rule.check(args.resource_type, args.name, args.props,
                                      stack_of(args.urn)):
                report_violation(message)
        return validate

    return [ResourceValidationPolicy(
        name=rule.name, description=rule.description, validate=validator(rule),
        enforcement_level=EnforcementLevel.ADVISORY if rule.advisory
        else EnforcementLevel.MANDATORY) for rule in RULES]
