"""The stack configuration: one typed model, read once, validated before anything is registered.

Design decisions:
- Every key has a documented default except the project and region, so a CSR stack needs two
  lines of config and a GitHub stack adds its installation id, token secret and owner.
- Validation fails fast with one message that names the key and the `pulumi config set` line
  that fixes it; nothing is registered before the model is valid.
- The model is plain data (no Pulumi types), so tests and the config reference in the docs use
  it directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NAMESPACE = "gitops"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SOURCE_PROVIDERS = ("github", "csr")
CLUSTER_MODES = ("autopilot", "standard")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
DURATION = re.compile(r"^[1-9][0-9]*s$")
MEMBER = re.compile(r"^(user|serviceAccount|group):[^@\s]+@[^@\s]+$")


class ConfigError(ValueError):
    """A stack config value that cannot work; the message says how to fix it."""


@dataclass(frozen=True)
class Setting:
    """Documentation of one config key (used for Pulumi.yaml and the docs reference)."""

    key: str
    default: str
    description: str


@dataclass(frozen=True)
class AppConfig:
    name: str
    repo: str  # GitHub repository name under github_owner, or CSR repository name


@dataclass(frozen=True)
class StackConfig:
    project: str
    region: str
    apps: tuple[AppConfig, ...] = (AppConfig("hello", "hello"),)
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
    registry_name: str = "apps"
    keep_images: int = 10
    untagged_retention_days: int = 14
    rollout_timeout: str = "300s"
    deployer: str | None = None
    state_backend: str = ""  # gs://BUCKET or https://api.pulumi.com
    secrets_provider: str = ""  # gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K
    pulumi_token_secret: str | None = None

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

    def repo_url(self, repo: str) -> str:
        """The clone URL of a repository of this stack."""
        if self.github:
            return f"https://github.com/{self.github_owner}/{repo}.git"
        return f"https://source.developers.google.com/p/{self.project}/r/{repo}"


SETTINGS: tuple[Setting, ...] = (
    Setting("gcp:project", "(required)", "Google Cloud project that hosts everything."),
    Setting("gcp:region", "(required)", "Region of the cluster, registry, connection and "
            "triggers, for example europe-west1."),
    Setting("gitops:apps", '["hello"]', "Apps to deliver: names, or objects "
            '{"name": ..., "repo": ...} when the app repository has another name.'),
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
    Setting("gitops:clusterName", "gitops", "Name of the GKE cluster."),
    Setting("gitops:clusterMode", "autopilot", "autopilot, or standard with its own node pool."),
    Setting("gitops:releaseChannel", "REGULAR", "GKE release channel: RAPID, REGULAR, STABLE "
            "or EXTENDED."),
    Setting("gitops:deletionProtection", "true", "Protect the cluster from `pulumi destroy`; "
            "set false for throw-away stacks."),
    Setting("gitops:nodeMachineType", "e2-standard-2", "Machine type of the Standard node pool."),
    Setting("gitops:nodeCount", "1", "Nodes per zone of the Standard node pool."),
    Setting("gitops:registryName", "apps", "Artifact Registry repository id for app images."),
    Setting("gitops:keepImages", "10", "Cleanup policy: newest image versions kept per image."),
    Setting("gitops:untaggedRetentionDays", "14", "Cleanup policy: untagged images older than "
            "this are deleted."),
    Setting("gitops:rolloutTimeout", "300s", "How long a delivery build waits for a rollout."),
    Setting("gitops:stateBackend", "gs://PROJECT-pulumi-state", "Where this stack's state "
            "lives, for the preview build: a GCS bucket (gs://...) or Pulumi Cloud "
            "(https://api.pulumi.com)."),
    Setting("gitops:secretsProvider", "gcpkms://projects/PROJECT/locations/REGION/keyRings/"
            "pulumi/cryptoKeys/state", "The stack's secrets provider with a GCS backend; the "
            "preview identity may decrypt with it, nothing more."),
    Setting("gitops:pulumiTokenSecret", "(required for Pulumi Cloud)", "Secret Manager secret "
            "id holding PULUMI_ACCESS_TOKEN for the preview build."),
    Setting("gitops:deployer", "(the identity running pulumi)", "IAM member that runs "
            "`pulumi up` and needs actAs on the build identities, e.g. user:you@example.com."),
)


def fix(key: str, example: str) -> str:
    return f"set it with: pulumi config set {key} {example}"


def require(values: Mapping[str, Any], key: str, example: str, why: str = "") -> Any:
    value = values.get(key)
    if value in (None, ""):
        reason = f" ({why})" if why else ""
        raise ConfigError(f"missing config {key}{reason}: {fix(key, example)}")
    return value


def as_int(values: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config {key} must be a whole number, not {raw!r}: "
                          f"{fix(key, str(default))}") from None
    if number < minimum:
        raise ConfigError(f"config {key} must be at least {minimum}: {fix(key, str(default))}")
    return number


def as_bool(values: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = values.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true"
    raise ConfigError(f"config {key} must be true or false, not {raw!r}: {fix(key, 'true')}")


def one_of(values: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = values.get(key, default)
    if raw not in allowed:
        raise ConfigError(f"config {key} must be one of {', '.join(allowed)}, not {raw!r}: "
                          f"{fix(key, default)}")
    return str(raw)


def dns_label(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise ConfigError(f"config {key} {value!r} is not a DNS label (lowercase letters, "
                          f"digits and '-', at most 63): {fix(key, 'hello')}")
    return value


def parse_apps(raw: Any) -> tuple[AppConfig, ...]:
    key = "gitops:apps"
    if raw is None:
        return StackConfig.__dataclass_fields__["apps"].default  # type: ignore[no-any-return]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"config {key} must be a JSON list: "
                              f"pulumi config set --path '{key}[0]' hello") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"config {key} must be a non-empty list: "
                          f"pulumi config set --path '{key}[0]' hello")
    apps = []
    for index, item in enumerate(raw):
        path = f"{key}[{index}]"
        if isinstance(item, str):
            name, repo = dns_label(item, path), item
        elif isinstance(item, dict):
            name = dns_label(item.get("name"), f"{path}.name")
            repo = item.get("repo", name)
            if not isinstance(repo, str) or not re.match(r"^[A-Za-z0-9._-]{1,100}$", repo):
                raise ConfigError(f"config {path}.repo {repo!r} is not a repository name: "
                                  f"pulumi config set --path '{path}.repo' {name}")
        else:
            raise ConfigError(f"config {path} must be an app name or an object with a name: "
                              f"pulumi config set --path '{path}' hello")
        apps.append(AppConfig(name=name, repo=repo))
    names = [app.name for app in apps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"config {key} names app {duplicates[0]!r} twice: each app once")
    return tuple(apps)


def parse_config(values: Mapping[str, Any]) -> StackConfig:
    """Build the model from full config keys (`gcp:project`, `gitops:apps`, ...)."""
    project = require(values, "gcp:project", "my-project-id")
    region = require(values, "gcp:region", "europe-west1")
    provider = one_of(values, "gitops:sourceProvider", "github", SOURCE_PROVIDERS)
    installation: int | None = None
    token_secret = owner = None
    if provider == "github":
        why = "needed when gitops:sourceProvider is github"
        require(values, "gitops:githubAppInstallationId", "12345678", why)
        installation = as_int(values, "gitops:githubAppInstallationId", 0, 1)
        token_secret = str(require(values, "gitops:githubTokenSecret", "github-token", why))
        owner = str(require(values, "gitops:githubOwner", "my-org", why))
    deployer = values.get("gitops:deployer")
    if deployer is not None and not MEMBER.match(str(deployer)):
        raise ConfigError(f"config gitops:deployer {deployer!r} is not an IAM member: "
                          f"{fix('gitops:deployer', 'user:you@example.com')}")
    rollout_timeout = str(values.get("gitops:rolloutTimeout", "300s"))
    if not DURATION.match(rollout_timeout):
        raise ConfigError(f"config gitops:rolloutTimeout must be seconds like 300s, not "
                          f"{rollout_timeout!r}: {fix('gitops:rolloutTimeout', '300s')}")
    backend = str(values.get("gitops:stateBackend", f"gs://{project}-pulumi-state"))
    if not re.match(r"^(gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?|https://\S+)$", backend):
        raise ConfigError(f"config gitops:stateBackend must be gs://BUCKET or https://... "
                          f"(Pulumi Cloud), not {backend!r}: "
                          f"{fix('gitops:stateBackend', f'gs://{project}-pulumi-state')}")
    secrets_provider = str(values.get(
        "gitops:secretsProvider",
        f"gcpkms://projects/{project}/locations/{region}/keyRings/pulumi/cryptoKeys/state"))
    token_secret_id = values.get("gitops:pulumiTokenSecret")
    if backend.startswith("https://"):
        token_secret_id = require(values, "gitops:pulumiTokenSecret", "pulumi-access-token",
                                  "needed when gitops:stateBackend is Pulumi Cloud")
    return StackConfig(
        project=str(project),
        region=str(region),
        apps=parse_apps(values.get("gitops:apps")),
        source_provider=provider,
        github_app_installation_id=installation,
        github_token_secret=token_secret,
        github_owner=owner,
        env_repo=str(values.get("gitops:envRepo", "gitops-env")),
        infra_repo=str(values.get("gitops:infraRepo", "gitops-infra")),
        cluster_name=dns_label(values.get("gitops:clusterName", "gitops"), "gitops:clusterName"),
        cluster_mode=one_of(values, "gitops:clusterMode", "autopilot", CLUSTER_MODES),
        release_channel=one_of(values, "gitops:releaseChannel", "REGULAR", RELEASE_CHANNELS),
        deletion_protection=as_bool(values, "gitops:deletionProtection", True),
        node_machine_type=str(values.get("gitops:nodeMachineType", "e2-standard-2")),
        node_count=as_int(values, "gitops:nodeCount", 1, 1),
        registry_name=dns_label(values.get("gitops:registryName", "apps"),
                                "gitops:registryName"),
        keep_images=as_int(values, "gitops:keepImages", 10, 1),
        untagged_retention_days=as_int(values, "gitops:untaggedRetentionDays", 14, 1),
        rollout_timeout=rollout_timeout,
        deployer=str(deployer) if deployer else None,
        state_backend=backend,
        secrets_provider=secrets_provider,
        pulumi_token_secret=str(token_secret_id) if token_secret_id else None,
    )


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
