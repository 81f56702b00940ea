"""The stack configuration: one typed model, read once, validated before anything is registered.

Design decisions:
- Every key has a documented default except the project, the region and the deployer, so a CSR
  stack needs three lines of config and a GitHub stack adds its installation id, token secret
  and owner.
- The deployer (who runs `pulumi up`) is configured, never looked up: a lookup answers with
  whoever runs the program, so a preview build or a second operator would plan to replace the
  act-as grants.
- Values are checked against Google's documented naming rules (project and service-account ids,
  cluster, registry, repository and trigger names), including names the program derives from
  them (the node service account id, `deliver-<app>`), so Google never rejects half a stack.
- Validation fails fast with one message that names every bad key and the `pulumi config set`
  line that fixes it; nothing is registered before the model is valid.
- The model is plain data (no Pulumi types), so tests and the config reference in the docs use
  it directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.environments import EnvironmentConfig

NAMESPACE = "gitops"
SOURCE_PROVIDERS = ("github", "csr")
CLUSTER_MODES = ("autopilot", "standard")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
DURATION = re.compile(r"^[1-9][0-9]*s$")
MEMBER = re.compile(r"^(user|serviceAccount|group):[^@\s]+@[^@\s]+$")

# Google's documented naming rules, so a bad value fails here and not half-way through `up`.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Project ids: 6-30 characters, lowercase letters, digits and hyphens, a letter first.
PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# GKE cluster names: at most 40 characters, a letter first, no hyphen last.
CLUSTER_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
# Service account ids: 6-30 characters, a letter first, no hyphen last.
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")
# Artifact Registry repository ids: a letter first, lowercase letters, digits, hyphens, at most
# 63 characters, no hyphen last.
REGISTRY_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# Repository names GitHub and Cloud Source Repositories both accept.
REPO_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
# Custom resource API groups: DNS subdomains with at least one dot (the API server's rule for a
# CustomResourceDefinition's group); resource names: lowercase plural names.
LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
API_GROUP = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})+$")
RESOURCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# API groups the API server serves itself: the delivery Role's built-in kinds are fixed in the
# program, never widened by config (this is what keeps config from granting RBAC, admission or
# certificate kinds). CRD groups of the Kubernetes project, such as the Gateway API's
# gateway.networking.k8s.io, are custom resources and allowed.
BUILT_IN_GROUPS = frozenset({
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
    "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "networking.k8s.io",
    "node.k8s.io", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io",
    "storage.k8s.io", "storagemigration.k8s.io", "metrics.k8s.io",
})
# Cloud Build trigger names: 1-64 letters, digits and hyphens, alphanumeric at both ends.
TRIGGER_NAME_MAX = 64
TRIGGER_PREFIXES = ("ci-", "deliver-")  # trigger names are <prefix><app>
# Pub/Sub topic ids: 3-255 characters, a letter first, never starting with "goog".
TOPIC_NAME = re.compile(r"^(?!goog)[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")
# Cron: five fields of digits, *, ranges, steps and lists (Cloud Scheduler's unix-cron).
CRON = re.compile(r"^([0-9*/,-]+ ){4}[0-9*/,-]+$")
CRON_EXAMPLE = "'*/30 * * * *'"
# VPC and subnet names, and secondary range names (RFC 1035 labels).
NETWORK_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# SSH public keys the signers' private keys match (`ssh-keygen -y`), as `type base64 [comment]`.
SSH_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "ssh-rsa", "sk-ssh-ed25519@openssh.com",
                 "sk-ecdsa-sha2-nistp256@openssh.com")
SSH_PUBLIC_KEY = re.compile(r"^(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,3})( [^;\r\n]*)?$")
SIGNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,62}$")
# The build identity that publishes to the env repo; every environment's delivery identity
# (`delivery`, or `delivery-<env>`) commits too, each signing with its own key.
CI_IDENTITY = "ci"
# Binary Authorization: GKE's own images, admitted without an attestation (the Google-maintained
# global policy covers the system images it knows; these are the registries GKE pulls from).
SYSTEM_IMAGE_PATTERNS = ("gke.gcr.io/**", "gcr.io/gke-release/**", "gcr.io/google-containers/*",
                         "gcr.io/google_containers/*", "gcr.io/stackdriver-agents/*")
# An allowlist name pattern: registry/path with an optional trailing * or **.
IMAGE_PATTERN = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._-]+)*(/\*\*|/\*|\*)?$")
NETWORK_REF = re.compile(r"^(projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/(global/networks|regions/"
                         r"[a-z0-9-]+/subnetworks)/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class ConfigError(ValueError):
    """Stack config values that cannot work; the message names every one and how to fix it."""


@dataclass(frozen=True)
class Setting:
    """Documentation of one config key (used for Pulumi.yaml and the docs reference)."""

    key: str
    default: str
    description: str


@dataclass(frozen=True)
class CustomResources:
    """Custom resource kinds an app's manifests hold: their API group and resource names (the
    plural names of their CustomResourceDefinitions)."""

    group: str
    resources: tuple[str, ...]


@dataclass(frozen=True)
class AppConfig:
    name: str
    repo: str  # GitHub repository name under github_owner, or CSR repository name
    self_heal: bool | None = None  # None: the stack's gitops:selfHeal
    custom_resources: tuple[CustomResources, ...] = ()


DEFAULT_APPS = (AppConfig("hello", "hello"),)


@dataclass(frozen=True)
class StackConfig:
    project: str
    region: str
    deployer: str
    apps: tuple[AppConfig, ...] = DEFAULT_APPS
    source_provider: str = "github"
    github_app_installation_id: int | None = None
    github_token_secret: str | None = None
    github_owner: str | None = None
    env_repo: str = "gitops-env"
    infra_repo: str = "gitops-infra"
    cluster_name: str = "gitops"
    cluster_mode: str = "autopilot"
    release_channel: str = "REGULAR"
    deletion_protection: bool = True
    node_machine_type: str = "e2-standard-2"
    node_count: int = 1
    network: str | None = None  # an existing VPC; None: the program creates one
    subnetwork: str | None = None
    pods_range: str = "pods"
    services_range: str = "services"
    registry_name: str = "apps"
    keep_images: int = 10
    image_retention_days: int = 90
    untagged_retention_days: int = 14
    rollout_timeout: str = "300s"
    iam_propagation_seconds: int = 120
    state_backend: str = ""  # gs://BUCKET or https://api.pulumi.com
    secrets_provider: str = ""  # gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K
    pulumi_token_secret: str | None = None
    # Ordered delivery environments (components/environments.py); parse_config always sets it.
    environments: tuple[EnvironmentConfig, ...] = ()
    events_topic: str = "gitops-events"
    reconcile_schedule: str = "*/30 * * * *"  # "off": no scheduled run
    self_heal: bool = False
    # Signer name -> SSH public key line; empty: commits are not signed.
    signers: tuple[tuple[str, str], ...] = ()
    binary_authorization: bool = False
    binary_authorization_allowlist: tuple[str, ...] = SYSTEM_IMAGE_PATTERNS

    @property
    def heal_apps(self) -> tuple[str, ...]:
        """The apps a reconcile run may heal (each app's selfHeal, else the stack's)."""
        return tuple(app.name for app in self.apps
                     if (self.self_heal if app.self_heal is None else app.self_heal))

    @property
    def signing(self) -> bool:
        return bool(self.signers)

    @property
    def signing_identities(self) -> tuple[str, ...]:
        """The build identities that commit, each with its own key: CI and every environment's
        delivery identity."""
        return (CI_IDENTITY, *(env.identity for env in self.environments))

    def allowed_signers(self) -> list[str]:
        """The allowed_signers lines: `name namespaces="git" type key`, no comment."""
        lines = []
        for name, key in self.signers:
            key_type, blob = key.split()[:2]
            lines.append(f'{name} namespaces="git" {key_type} {blob}')
        return lines

    @property
    def pulumi_cloud(self) -> bool:
        return self.state_backend.startswith("https://")

    @property
    def state_bucket(self) -> str | None:
        return self.state_backend.removeprefix("gs://").split("/")[0] \
            if self.state_backend.startswith("gs://") else None

    @property
    def kms_key(self) -> str | None:
        return self.secrets_provider.removeprefix("gcpkms://") \
            if self.secrets_provider.startswith("gcpkms://") else None

    @property
    def github(self) -> bool:
        return self.source_provider == "github"

    @property
    def node_account_id(self) -> str:
        return node_account_id(self.cluster_name)

    def repo_url(self, repo: str) -> str:
        """The clone URL of a repository of this stack."""
        if self.github:
            return f"https://github.com/{self.github_owner}/{repo}.git"
        return f"https://source.developers.google.com/p/{self.project}/r/{repo}"


def signing_secret_id(identity: str) -> str:
    """The Secret Manager secret holding the commit-signing key of a build identity."""
    return f"gitops-signing-key-{identity}"


def node_account_id(cluster_name: str) -> str:
    """The id of the cluster's node service account (24 characters of the name + "-nodes")."""
    return f"{cluster_name[:24].rstrip('-')}-nodes"


SETTINGS: tuple[Setting, ...] = (
    Setting("gcp:project", "(required)", "Google Cloud project that hosts everything."),
    Setting("gcp:region", "(required)", "Region of the cluster, registry, connection and "
            "triggers, for example europe-west1."),
    Setting("gitops:deployer", "(required)", "IAM member that runs `pulumi up`, e.g. "
            "user:you@example.com or serviceAccount:ci@PROJECT.iam.gserviceaccount.com. It gets "
            "actAs on the build identities (to create their triggers) and, with GitHub, the "
            "connection's token (to create the env branches). Fixed in config so that a run by "
            "anyone else (a preview build, a colleague) plans no change."),
    Setting("gitops:apps", '["hello"]', "Apps to deliver: names, or objects "
            '{"name": ..., "repo": ..., "customResources": [...]} when the app repository has '
            "another name or the app holds custom resources. A name is a DNS label of at most "
            "56 characters (trigger names deliver-<app> stay within 64). customResources lists "
            'the custom resource kinds its manifests hold, as {"group": "monitoring.googleapis'
            '.com", "resources": ["podmonitorings"]}: the delivery Role in the app\'s namespace '
            "may then apply and prune them (get, create, patch, delete). Groups the API server "
            "serves itself (rbac.authorization.k8s.io, ...) are refused: the Role's built-in "
            "kinds are fixed (docs/architecture.md)."),
    Setting("gitops:sourceProvider", "github", "Where the repositories live: github (linked "
            "through a Cloud Build 2nd-gen connection) or csr (Cloud Source Repositories)."),
    Setting("gitops:githubAppInstallationId", "(required for github)", "Installation id of the "
            "Cloud Build GitHub App on your organisation or account."),
    Setting("gitops:githubTokenSecret", "(required for github)", "Secret Manager secret id that "
            "holds the GitHub OAuth token of the connection."),
    Setting("gitops:githubOwner", "(required for github)", "GitHub organisation or user that "
            "owns the app, env and infra repositories."),
    Setting("gitops:envRepo", "gitops-env", "Name of the env repository (candidate and "
            "production branches)."),
    Setting("gitops:infraRepo", "gitops-infra", "Name of the repository holding this program "
            "(pull requests run pulumi preview)."),
    Setting("gitops:clusterName", "gitops", "Name of the GKE cluster: a letter first, at most "
            "40 lowercase letters, digits and hyphens. Its node service account is "
            "<first 24 characters>-nodes."),
    Setting("gitops:clusterMode", "autopilot", "autopilot, or standard with its own node pool."),
    Setting("gitops:releaseChannel", "REGULAR", "GKE release channel: RAPID, REGULAR, STABLE "
            "or EXTENDED."),
    Setting("gitops:deletionProtection", "true", "Protect the cluster from `pulumi destroy`; "
            "set false for throw-away stacks."),
    Setting("gitops:nodeMachineType", "e2-standard-2", "Machine type of the Standard node pool."),
    Setting("gitops:nodeCount", "1", "Nodes per zone of the Standard node pool."),
    Setting("gitops:network", "(created)", "An existing VPC for the cluster (name or "
            "projects/P/global/networks/N), with gitops:subnetwork. Unset: the program creates "
            "VPC `gitops` with subnet `gitops` (nodes 10.0.0.0/20, pods 10.4.0.0/14, services "
            "10.8.0.0/20). The `default` network is never used."),
    Setting("gitops:subnetwork", "(created)", "The existing subnet in gcp:region for the "
            "cluster, when gitops:network is set; it must have the two secondary ranges below."),
    Setting("gitops:podsRange", "pods", "Name of the subnet's secondary range for pods."),
    Setting("gitops:servicesRange", "services", "Name of the subnet's secondary range for "
            "services."),
    Setting("gitops:registryName", "apps", "Artifact Registry repository id for app images "
            "and the steps image: a letter first, lowercase letters, digits and hyphens."),
    Setting("gitops:keepImages", "10", "Cleanup policy: the newest N versions of every image "
            "are always kept, whatever their age (production's image is among them unless N "
            "newer builds of that app all failed delivery)."),
    Setting("gitops:imageRetentionDays", "90", "Cleanup policy: image versions older than this "
            "many days, tagged or not, are deleted unless kept by gitops:keepImages."),
    Setting("gitops:untaggedRetentionDays", "14", "Cleanup policy: untagged image versions "
            "older than this many days are deleted unless kept by gitops:keepImages."),
    Setting("gitops:rolloutTimeout", "300s", "How long a delivery build waits for a rollout."),
    Setting("gitops:environments", "(one: candidate -> production)", "Ordered delivery "
            "environments, e.g. staging then production; each an object with name (a DNS label "
            "of at most 13), and optionally cluster (its own GKE cluster; default "
            "gitops:clusterName), namespaceSuffix (e.g. -staging, when environments share a "
            "cluster), approval (true: each delivery build waits for approval) with approvers "
            "(IAM members), rolloutTimeout (default gitops:rolloutTimeout), candidateBranch "
            "and productionBranch (default NAME-candidate and NAME-production). Unset: one "
            "environment with branches candidate and production, exactly as without "
            "environments. A success in one environment publishes the release to the next "
            "one's candidate branch. The apps' CI builds get the names in order as "
            "_ENVIRONMENTS (unset: not passed; the sample pipelines default it to "
            "production), to render each one's kustomize overlay. "
            "See docs/environments.md."),
    Setting("gitops:iamPropagationSeconds", "120", "How long `pulumi up` waits after creating "
            "IAM grants before using them (Google: typically 2 minutes, sometimes 7 or more)."),
    Setting("gitops:stateBackend", "gs://PROJECT-pulumi-state", "Where this stack's state "
            "lives, for the preview build: a GCS bucket (gs://...) or Pulumi Cloud "
            "(https://api.pulumi.com)."),
    Setting("gitops:secretsProvider", "gcpkms://projects/PROJECT/locations/REGION/keyRings/"
            "pulumi/cryptoKeys/state", "The stack's secrets provider with a GCS backend; the "
            "preview identity may decrypt with it, nothing more."),
    Setting("gitops:eventsTopic", "gitops-events", "Pub/Sub topic (created, with the delivery "
            "event schema) that receives one JSON message per delivery outcome and drift "
            "finding; only the delivery and reconcile identities may publish to it."),
    Setting("gitops:reconcileSchedule", "*/30 * * * *", "When Cloud Scheduler ticks each "
            "environment's reconcile build (it publishes to the topic gitops-reconcile-<env> "
            "that trigger reconcile-<env> runs on), which compares each app's namespace in "
            "that environment with its production branch (cron, UTC), or off. A tick "
            "published by hand always runs one."),
    Setting("gitops:selfHeal", "false", "Whether a reconcile run re-applies production (and "
            "prunes) when it finds drift, for every app in every environment; an app "
            "overrides it with "
            '{"name": ..., "selfHeal": true|false} in gitops:apps. Without it drift is only '
            "reported."),
    Setting("gitops:pulumiTokenSecret", "(required for Pulumi Cloud)", "Secret Manager secret "
            "id holding PULUMI_ACCESS_TOKEN for the preview build."),
    Setting("gitops:signers", "(none: commits unsigned)", "Turns on signed env-repo commits. "
            "SSH public keys by signer name, e.g. {\"ci\": \"ssh-ed25519 AAAA...\", "
            "\"delivery\": \"ssh-ed25519 AAAA...\"}: one for each build identity that commits "
            "is required (ci, and delivery, or delivery-<env> for each of gitops:environments); "
            "other names (people who freeze apps or create branches) are optional. The program "
            "creates a Secret Manager secret per such identity (gitops-signing-key-<identity>) "
            "that only that identity may read; you add the private keys as versions "
            "(docs/supply-chain.md). These keys are the allowed signers that deploy, heals, "
            "history and status check signatures against."),
    Setting("gitops:binaryAuthorization", "false", "Admit to the cluster only images built by "
            "this project's Cloud Build (the built-by-cloud-build attestor) and the allowlist "
            "below: enables the API, sets the project's Binary Authorization policy and enforces "
            "it on the cluster."),
    Setting("gitops:binaryAuthorizationAllowlist", ", ".join(SYSTEM_IMAGE_PATTERNS),
            "Image name patterns admitted without an attestation when gitops:binaryAuthorization "
            "is on (registry/path, a trailing * or **): GKE's system images by default."),
)


def fix(key: str, example: str) -> str:
    return f"set it with: pulumi config set {key} {example}"


class Problems:
    """Collects every bad key, so one run reports them all."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def raise_any(self) -> None:
        if len(self.messages) == 1:
            raise ConfigError(self.messages[0])
        if self.messages:
            raise ConfigError(f"{len(self.messages)} stack config problems:\n" +
                              "\n".join(f"- {m}" for m in self.messages))


def require(values: Mapping[str, Any], problems: Problems, key: str, example: str,
            why: str = "") -> str | None:
    value = values.get(key)
    if value in (None, ""):
        reason = f" ({why})" if why else ""
        problems.add(f"missing config {key}{reason}: {fix(key, example)}")
        return None
    return str(value)


def as_int(values: Mapping[str, Any], problems: Problems, key: str, default: int,
           minimum: int) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        number = int(raw)
    except (TypeError, ValueError):
        problems.add(f"config {key} must be a whole number, not {raw!r}: "
                     f"{fix(key, str(default))}")
        return default
    if number < minimum:
        problems.add(f"config {key} must be at least {minimum}, not {number}: "
                     f"{fix(key, str(default))}")
    return number


def as_bool(values: Mapping[str, Any], problems: Problems, key: str, default: bool) -> bool:
    raw = values.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    problems.add(f"config {key} must be true or false, not {raw!r}: {fix(key, 'true')}")
    return default


def one_of(values: Mapping[str, Any], problems: Problems, key: str, default: str,
           allowed: tuple[str, ...]) -> str:
    raw = values.get(key, default)
    if raw not in allowed:
        problems.add(f"config {key} must be one of {', '.join(allowed)}, not {raw!r}: "
                     f"{fix(key, default)}")
        return default
    return str(raw)


def matching(values: Mapping[str, Any], problems: Problems, key: str, default: str,
             rule: re.Pattern[str], what: str, example: str) -> str:
    """The value of key when it matches Google's rule (what says the rule in words)."""
    value = values.get(key, default)
    if not isinstance(value, str) or not rule.match(value):
        problems.add(f"config {key} {value!r} is not {what}: {fix(key, example)}")
        return default
    return value


def parse_apps(raw: Any, problems: Problems) -> tuple[AppConfig, ...]:
    key = "gitops:apps"
    default = DEFAULT_APPS
    if raw is None:
        return default
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            problems.add(f"config {key} must be a JSON list: "
                         f"pulumi config set --path '{key}[0]' hello")
            return default
    if not isinstance(raw, list) or not raw:
        problems.add(f"config {key} must be a non-empty list: "
                     f"pulumi config set --path '{key}[0]' hello")
        return default
    apps = []
    for index, item in enumerate(raw):
        path = f"{key}[{index}]"
        heal: bool | None = None
        if isinstance(item, dict):
            name, repo, name_path = item.get("name"), item.get("repo", item.get("name")), \
                f"{path}.name"
            if "selfHeal" in item:
                heal = as_bool(item, problems, "selfHeal", False)
        elif isinstance(item, str):
            name, repo, name_path = item, item, path
        else:
            problems.add(f"config {path} must be an app name or an object with a name: "
                         f"pulumi config set --path '{path}' hello")
            continue
        longest = max(len(prefix) for prefix in TRIGGER_PREFIXES)
        if not isinstance(name, str) or len(name) > 63 or not DNS_LABEL.match(name):
            problems.add(f"config {name_path} {name!r} is not a DNS label (lowercase letters, "
                         f"digits and '-', at most 63): pulumi config set --path "
                         f"'{name_path}' hello")
            continue
        if len(name) + longest > TRIGGER_NAME_MAX:
            problems.add(f"config {name_path} {name!r} is too long: its trigger deliver-{name} "
                         f"would have {len(name) + longest} characters, Cloud Build allows "
                         f"{TRIGGER_NAME_MAX}; name the app with at most "
                         f"{TRIGGER_NAME_MAX - longest} characters and keep the repository's "
                         f"name: pulumi config set --path '{path}.name' SHORT && pulumi "
                         f"config set --path '{path}.repo' {repo}")
            continue
        if not isinstance(repo, str) or not REPO_NAME.match(repo):
            problems.add(f"config {path}.repo {repo!r} is not a repository name (letters, "
                         f"digits, '.', '_', '-', at most 100, not starting with '.'): "
                         f"pulumi config set --path '{path}.repo' {name}")
            continue
        custom = parse_custom_resources(item.get("customResources") if isinstance(item, dict)
                                        else None, f"{path}.customResources", problems)
        apps.append(AppConfig(name=name, repo=repo, self_heal=heal, custom_resources=custom))
    names = [app.name for app in apps]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.add(f"config {key} names app {duplicate!r} twice: each app once")
    return tuple(apps) or default


def parse_custom_resources(raw: Any, path: str, problems: Problems
                           ) -> tuple[CustomResources, ...]:
    """An app's customResources: [{group, resources}], each checked (see CustomResources)."""
    if raw is None:
        return ()
    example = "monitoring.googleapis.com"
    if not isinstance(raw, list):
        problems.add(f"config {path} must be a list of {{group, resources}}: pulumi config set "
                     f"--path '{path}[0].group' {example}")
        return ()
    found = []
    for index, entry in enumerate(raw):
        where = f"{path}[{index}]"
        group = entry.get("group") if isinstance(entry, dict) else None
        resources = entry.get("resources") if isinstance(entry, dict) else None
        if not isinstance(group, str) or not API_GROUP.match(group):
            problems.add(f"config {where}.group {group!r} is not a custom resource API group "
                         f"(a DNS subdomain with at least one dot, as in a "
                         f"CustomResourceDefinition): pulumi config set --path '{where}.group' "
                         f"{example}")
            continue
        if group in BUILT_IN_GROUPS or group.endswith(".apiserver.k8s.io"):
            problems.add(f"config {where}.group {group!r} is served by Kubernetes itself: the "
                         f"delivery Role's built-in kinds are fixed by the program "
                         f"(docs/architecture.md), customResources names custom resource "
                         f"groups only: pulumi config set --path '{where}.group' {example}")
            continue
        if not isinstance(resources, list) or not resources or not all(
                isinstance(r, str) and RESOURCE_NAME.match(r) for r in resources):
            problems.add(f"config {where}.resources {resources!r} must list resource names "
                         f"(the plural names of the CRDs, lowercase; no '*', no "
                         f"subresources): pulumi config set --path '{where}.resources[0]' "
                         f"podmonitorings")
            continue
        found.append(CustomResources(group, tuple(resources)))
    return tuple(found)


def as_json(raw: Any) -> Any:
    """A structured value as Pulumi gives it: already parsed, or JSON text."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None
    return raw


def parse_signers(raw: Any, problems: Problems, identities: tuple[str, ...]
                  ) -> tuple[tuple[str, str], ...]:
    """Signer name -> public key; identities (the committing build identities) are required."""
    key = "gitops:signers"
    if raw is None or raw == "":
        return ()
    signers = as_json(raw)
    example = f"pulumi config set --path '{key}.ci' \"$(cat ci_signing.pub)\""
    if not isinstance(signers, dict) or not signers:
        problems.add(f"config {key} must be an object of signer name -> SSH public key: "
                     f"{example}")
        return ()
    parsed = []
    for name, public_key in signers.items():
        path = f"{key}.{name}"
        if not SIGNER_NAME.match(str(name)):
            problems.add(f"config {path}: a signer name is letters, digits and . _ @ + -")
            continue
        text = str(public_key).strip() if isinstance(public_key, str) else ""
        if "PRIVATE KEY" in text:
            problems.add(f"config {path} is a private key: give the public key (the .pub "
                         f"file) and put the private key in Secret Manager only")
            continue
        match = SSH_PUBLIC_KEY.match(text)
        if not match or match["type"] not in SSH_KEY_TYPES:
            problems.add(f"config {path} is not an SSH public key (ssh-ed25519 AAAA...): "
                         f"pulumi config set --path '{path}' \"$(cat {name}_signing.pub)\"")
            continue
        parsed.append((str(name), text))
    for identity in identities:
        if identity not in signers:
            problems.add(f"config {key} has no key for {identity!r}, a build identity that "
                         f"commits: pulumi config set --path '{key}.{identity}' "
                         f"\"$(cat {identity}_signing.pub)\"")
    return tuple(parsed)


def parse_allowlist(raw: Any, problems: Problems) -> tuple[str, ...]:
    key = "gitops:binaryAuthorizationAllowlist"
    if raw is None:
        return SYSTEM_IMAGE_PATTERNS
    patterns = as_json(raw)
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        problems.add(f"config {key} must be a list of image name patterns: "
                     f"pulumi config set --path '{key}[0]' 'gke.gcr.io/**'")
        return SYSTEM_IMAGE_PATTERNS
    for pattern in patterns:
        if not IMAGE_PATTERN.match(pattern) or "/" not in pattern:
            problems.add(f"config {key} entry {pattern!r} is not registry/path with an "
                         f"optional trailing * or **")
    return tuple(patterns)


def parse_config(values: Mapping[str, Any]) -> StackConfig:
    """Build the model from full config keys (`gcp:project`, `gitops:apps`, ...).

    Every key is checked against Google's documented rule before anything is registered, and
    every bad key is reported in one ConfigError.
    """
    problems = Problems()
    project = require(values, problems, "gcp:project", "my-project-id")
    if project is not None and not PROJECT_ID.match(project):
        problems.add(f"config gcp:project {project!r} is not a project id (6-30 lowercase "
                     f"letters, digits and hyphens, a letter first): "
                     f"{fix('gcp:project', 'my-project-id')}")
        project = None  # values derived from it would only repeat the problem
    project = project or "my-project-id"
    region = require(values, problems, "gcp:region", "europe-west1")
    if region is not None and not REGION.match(region):
        problems.add(f"config gcp:region {region!r} is not a region like europe-west1: "
                     f"{fix('gcp:region', 'europe-west1')}")
    region = region or "europe-west1"
    deployer = require(values, problems, "gitops:deployer", "user:you@example.com",
                       "the IAM member that runs pulumi up; it is not looked up, so that every "
                       "run plans the same grants")
    if deployer is not None and not MEMBER.match(deployer):
        problems.add(f"config gitops:deployer {deployer!r} is not an IAM member: "
                     f"{fix('gitops:deployer', 'user:you@example.com')}")
    provider = one_of(values, problems, "gitops:sourceProvider", "github", SOURCE_PROVIDERS)
    installation: int | None = None
    token_secret = owner = None
    if provider == "github":
        why = "needed when gitops:sourceProvider is github"
        if require(values, problems, "gitops:githubAppInstallationId", "12345678", why):
            installation = as_int(values, problems, "gitops:githubAppInstallationId", 0, 1)
        token_secret = require(values, problems, "gitops:githubTokenSecret", "github-token", why)
        owner = require(values, problems, "gitops:githubOwner", "my-org", why)
    apps = parse_apps(values.get("gitops:apps"), problems)
    repo_rule = "a repository name (letters, digits, '.', '_', '-', at most 100)"
    env_repo = matching(values, problems, "gitops:envRepo", "gitops-env", REPO_NAME, repo_rule,
                        "gitops-env")
    infra_repo = matching(values, problems, "gitops:infraRepo", "gitops-infra", REPO_NAME,
                          repo_rule, "gitops-infra")
    repos = [*{app.name: app.repo for app in apps}.values(), env_repo, infra_repo]
    for repo in sorted({r for r in repos if repos.count(r) > 1}):
        problems.add(f"repository {repo!r} is named twice (apps, gitops:envRepo, "
                     f"gitops:infraRepo): each repository has one role")
    cluster_name = matching(values, problems, "gitops:clusterName", "gitops", CLUSTER_NAME,
                            "a GKE cluster name (a letter first, at most 40 lowercase letters, "
                            "digits and hyphens, no hyphen last)", "gitops")
    if not ACCOUNT_ID.match(node_account_id(cluster_name)):
        problems.add(f"config gitops:clusterName {cluster_name!r} yields the node service "
                     f"account id {node_account_id(cluster_name)!r}, which is not 6-30 "
                     f"characters with a letter first: {fix('gitops:clusterName', 'gitops')}")
    network, subnetwork = values.get("gitops:network"), values.get("gitops:subnetwork")
    if bool(network) != bool(subnetwork):
        missing = "gitops:subnetwork" if network else "gitops:network"
        problems.add(f"config gitops:network and gitops:subnetwork go together (an existing "
                     f"VPC and its subnet in {region}), or neither (the program creates "
                     f"them): {fix(missing, 'gitops')}")
    for key, value in (("gitops:network", network), ("gitops:subnetwork", subnetwork)):
        if value and not NETWORK_REF.match(str(value)):
            problems.add(f"config {key} {value!r} is not a VPC or subnet name or path: "
                         f"{fix(key, 'gitops')}")
    range_rule = "a secondary range name (RFC 1035: a letter first, lowercase, at most 63)"
    pods_range = matching(values, problems, "gitops:podsRange", "pods", NETWORK_NAME,
                          range_rule, "pods")
    services_range = matching(values, problems, "gitops:servicesRange", "services",
                              NETWORK_NAME, range_rule, "services")
    registry_name = matching(values, problems, "gitops:registryName", "apps", REGISTRY_ID,
                             "an Artifact Registry repository id (a letter first, lowercase "
                             "letters, digits and hyphens, at most 63, no hyphen last)", "apps")
    rollout_timeout = str(values.get("gitops:rolloutTimeout", "300s"))
    if not DURATION.match(rollout_timeout):
        problems.add(f"config gitops:rolloutTimeout must be seconds like 300s, not "
                     f"{rollout_timeout!r}: {fix('gitops:rolloutTimeout', '300s')}")
    backend = str(values.get("gitops:stateBackend", f"gs://{project}-pulumi-state"))
    if not re.match(r"^(gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?|https://\S+)$", backend):
        problems.add(f"config gitops:stateBackend must be gs://BUCKET or https://... "
                     f"(Pulumi Cloud), not {backend!r}: "
                     f"{fix('gitops:stateBackend', f'gs://{project}-pulumi-state')}")
    secrets_provider = str(values.get(
        "gitops:secretsProvider",
        f"gcpkms://projects/{project}/locations/{region}/keyRings/pulumi/cryptoKeys/state"))
    token_secret_id = values.get("gitops:pulumiTokenSecret")
    if backend.startswith("https://"):
        token_secret_id = require(values, problems, "gitops:pulumiTokenSecret",
                                  "pulumi-access-token",
                                  "needed when gitops:stateBackend is Pulumi Cloud")
    from components.environments import parse_environments

    environments = parse_environments(values.get("gitops:environments"), problems,
                                      cluster_name, rollout_timeout,
                                      [app.name for app in apps])
    events_topic = matching(values, problems, "gitops:eventsTopic", "gitops-events", TOPIC_NAME,
                            "a Pub/Sub topic name (3-255 letters, digits, -_.~+%, a letter "
                            "first, not starting with goog)", "gitops-events")
    # Each environment's reconcile ticks have a topic named like its reconcile identity
    # (components/reconcile_schedule.py): the events topic may not take one of those names.
    ticks = [env.reconcile_account_id for env in environments]
    if events_topic in ticks:
        problems.add(f"config gitops:eventsTopic {events_topic!r} is the name of a reconcile "
                     f"tick topic ({', '.join(ticks)}): "
                     f"{fix('gitops:eventsTopic', 'gitops-events')}")
    schedule = str(values.get("gitops:reconcileSchedule", "*/30 * * * *"))
    if schedule != "off" and not CRON.match(schedule):
        problems.add(f"config gitops:reconcileSchedule {schedule!r} is not a cron schedule of "
                     f"five fields, or off: {fix('gitops:reconcileSchedule', CRON_EXAMPLE)}")
    config = StackConfig(
        project=project,
        region=region,
        deployer=deployer or "",
        apps=apps,
        source_provider=provider,
        github_app_installation_id=installation,
        github_token_secret=token_secret,
        github_owner=owner,
        env_repo=env_repo,
        infra_repo=infra_repo,
        cluster_name=cluster_name,
        cluster_mode=one_of(values, problems, "gitops:clusterMode", "autopilot", CLUSTER_MODES),
        release_channel=one_of(values, problems, "gitops:releaseChannel", "REGULAR",
                               RELEASE_CHANNELS),
        deletion_protection=as_bool(values, problems, "gitops:deletionProtection", True),
        node_machine_type=str(values.get("gitops:nodeMachineType", "e2-standard-2")),
        node_count=as_int(values, problems, "gitops:nodeCount", 1, 1),
        network=str(network) if network else None,
        subnetwork=str(subnetwork) if subnetwork else None,
        pods_range=pods_range,
        services_range=services_range,
        registry_name=registry_name,
        keep_images=as_int(values, problems, "gitops:keepImages", 10, 1),
        image_retention_days=as_int(values, problems, "gitops:imageRetentionDays", 90, 1),
        untagged_retention_days=as_int(values, problems, "gitops:untaggedRetentionDays", 14, 1),
        rollout_timeout=rollout_timeout,
        iam_propagation_seconds=as_int(values, problems, "gitops:iamPropagationSeconds", 120,
                                       0),
        state_backend=backend,
        secrets_provider=secrets_provider,
        pulumi_token_secret=str(token_secret_id) if token_secret_id else None,
        environments=environments,
        events_topic=events_topic,
        reconcile_schedule=schedule,
        self_heal=as_bool(values, problems, "gitops:selfHeal", False),
        signers=parse_signers(values.get("gitops:signers"), problems,
                              (CI_IDENTITY, *(env.identity for env in environments))),
        binary_authorization=as_bool(values, problems, "gitops:binaryAuthorization", False),
        binary_authorization_allowlist=parse_allowlist(
            values.get("gitops:binaryAuthorizationAllowlist"), problems),
    )
    problems.raise_any()
    return config


def load_config() -> StackConfig:
    """Read the stack's config through Pulumi and validate it."""
    import pulumi

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        namespace, name = setting.key.split(":")
        raw = pulumi.Config(namespace).get(name)
        if raw is not None:
            values[setting.key] = raw
    return parse_config(values)


def pulumi_yaml_reference() -> str:
    """The comment block of Pulumi.yaml that documents every key (regenerated by tests)."""
    import textwrap

    lines = [
        "# Stack config: every key, its default, what it does. Set one with",
        "# `pulumi config set KEY VALUE` (lists and objects: `pulumi config set --path`).",
        "# This block is generated from components/config.py (tests check it matches).",
    ]
    for setting in SETTINGS:
        lines.append(f"#   {setting.key}  (default: {setting.default})")
        lines += [f"#       {line}" for line in textwrap.wrap(setting.description, 90)]
    return "\n".join(lines) + "\n"


def config_reference_markdown() -> str:
    """docs/config.md, generated from SETTINGS (a test regenerates and compares)."""
    lines = [
        "# Config reference",
        "",
        "Generated from `components/config.py` by `python -m components.config > "
        "docs/config.md`; a test fails when the two differ.",
        "",
        "Set a key with `pulumi config set KEY VALUE`; lists and objects with "
        "`pulumi config set --path 'gitops:apps[0]' hello`.",
        "",
        "| key | default | what it does |",
        "|---|---|---|",
    ]
    lines += [f"| `{s.key}` | `{s.default}` | {s.description} |" for s in SETTINGS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference_markdown(), end="")
