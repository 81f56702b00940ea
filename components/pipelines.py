"""The Cloud Build configs under `pipelines/`, and the steps image they run in.

The delivery pipeline is inlined into its trigger (it runs on the env repo, which holds no build
config), so it is read here and converted from the Cloud Build YAML field names to the
provider's argument names. The steps and preview images are tagged by the content hash of what
goes into them (the scripts folder, its Dockerfile with every version pinned, and the build
config that builds them), so a trigger always names exactly the scripts and tools it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

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
                 "dynamicSubstitutions": "dynamic_substitutions", "env": "envs"}
BUILD_FIELDS = {"timeout": "timeout", "substitutions": "substitutions", "tags": "tags",
                "images": "images"}


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
    converted["steps"] = [rename(step, STEP_FIELDS, f"step {step.get('id', '?')}")
                          for step in build["steps"]]
    if "options" in build:
        converted["options"] = rename(build["options"], OPTION_FIELDS, "options")
    return converted


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
