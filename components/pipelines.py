"""The Cloud Build configs under `pipelines/`, and the steps image they run in.

The delivery pipeline is inlined into its trigger (it runs on the env repo, which holds no build
config), so it is read here and converted from the Cloud Build YAML field names to the
provider's argument names. The steps and preview images are tagged by the content hash of what
goes into them (the scripts folder, its Dockerfile with every version pinned, and the build
config that builds them), so a trigger always names exactly the scripts and tools it runs.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import yaml

from components.config import signing_secret_id

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "pipelines"
SCRIPTS = ROOT / "scripts"
STEPS_IMAGE_NAME = "gitops-steps"
PREVIEW_IMAGE_NAME = "gitops-preview"
IMAGES_BUILD = PIPELINES / "steps-image.yaml"

# Cloud Build YAML (camelCase) -> pulumi-gcp trigger build arguments (snake_case).
STEP_FIELDS = {"name": "name", "args": "args", "entrypoint": "entrypoint", "env": "envs",
               "id": "id", "waitFor": "wait_fors", "dir": "dir", "script": "script",
               "secretEnv": "secret_envs", "timeout": "timeout",
               "allowFailure": "allow_failure"}
OPTION_FIELDS = {"logging": "logging", "machineType": "machine_type",
                 "substitutionOption": "substitution_option",
                 "dynamicSubstitutions": "dynamic_substitutions", "env": "envs",
                 "requestedVerifyOption": "requested_verify_option"}
BUILD_FIELDS = {"timeout": "timeout", "substitutions": "substitutions", "tags": "tags",
                "images": "images", "availableSecrets": "available_secrets"}
SECRET_MANAGER_FIELDS = {"versionName": "version_name", "env": "env"}
ALLOWED_SIGNERS_SUBSTITUTION = "_ALLOWED_SIGNERS"
# What the step scripts read (scripts/gitops/signing.py): the key, and the allowed signers.
KEY_ENV = "GITOPS_SIGNING_KEY"
ALLOWED_SIGNERS_ENV = "GITOPS_ALLOWED_SIGNERS"


def version_name(project: str, identity: str) -> str:
    """The secret version a build of this identity reads (the newest: rotation adds one)."""
    return f"projects/{project}/secrets/{signing_secret_id(identity)}/versions/latest"


def load(name: str) -> dict[str, Any]:
    """A pipeline file of `pipelines/` as a dict."""
    loaded: dict[str, Any] = yaml.safe_load((PIPELINES / name).read_text())
    return loaded


def rename(source: dict[str, Any], fields: dict[str, str], what: str) -> dict[str, Any]:
    unknown = sorted(set(source) - set(fields))
    if unknown:
        raise ValueError(f"{what}: no mapping for field(s) {', '.join(unknown)}")
    return {fields[key]: value for key, value in source.items()}


def trigger_build(build: dict[str, Any]) -> dict[str, Any]:
    """A Cloud Build config as the `build` argument of `gcp.cloudbuild.Trigger`."""
    rest = {k: v for k, v in build.items() if k not in ("steps", "options")}
    converted = rename(rest, BUILD_FIELDS, "build")
    if "available_secrets" in converted:
        secrets = rename(converted["available_secrets"], {"secretManager": "secret_managers"},
                         "availableSecrets")
        secrets["secret_managers"] = [rename(s, SECRET_MANAGER_FIELDS, "secretManager")
                                      for s in secrets["secret_managers"]]
        converted["available_secrets"] = secrets
    converted["steps"] = [rename(step, STEP_FIELDS, f"step {step.get('id', '?')}")
                          for step in build["steps"]]
    if "options" in build:
        converted["options"] = rename(build["options"], OPTION_FIELDS, "options")
    return converted


def with_signing(build: dict[str, Any], step_ids: tuple[str, ...], version: str | None,
                 verify: bool = False) -> dict[str, Any]:
    """A copy of a Cloud Build config whose steps step_ids sign their commits.

    The key comes from Secret Manager (`availableSecrets`, version `version`; None: no key, for
    a build that only checks) into the steps' environment (`secretEnv`); with verify, the steps
    also get the allowed signers from the trigger's `_ALLOWED_SIGNERS` substitution. The
    program applies this to the delivery and reconcile builds; docs/supply-chain.md shows what
    it adds to an app's own pipeline.
    """
    signed = copy.deepcopy(build)
    steps = {step.get("id"): step for step in signed["steps"]}
    missing = sorted(set(step_ids) - set(steps))
    if missing:
        raise ValueError(f"no step {', '.join(missing)} to sign in this build")
    if version is not None:
        secrets = signed.setdefault("availableSecrets", {}).setdefault("secretManager", [])
        secrets.append({"versionName": version, "env": KEY_ENV})
    for step_id in step_ids:
        step = steps[step_id]
        if version is not None:
            step["secretEnv"] = [*step.get("secretEnv", []), KEY_ENV]
        if verify:
            step["env"] = [*step.get("env", []),
                           f"{ALLOWED_SIGNERS_ENV}=${{{ALLOWED_SIGNERS_SUBSTITUTION}}}"]
    return signed


def steps_image_files() -> list[Path]:
    return sorted(p for p in SCRIPTS.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def steps_image_tag() -> str:
    """Content hash of everything that makes the images: names (relative) and bytes."""
    digest = hashlib.sha256()
    for path in steps_image_files():
        digest.update(path.relative_to(SCRIPTS).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(b"build-config\0" + IMAGES_BUILD.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
