"""Kustomize overlays hydrated into plain manifests, images pinned by kustomize itself.

Design decisions:
- The build is `kubectl kustomize` (kustomize built into kubectl: on developer machines, in
  Google's cloud-sdk images and in the steps image), never a separately installed binary.
- The user's files are never edited: a temporary kustomization outside their tree wraps the
  chosen overlay and sets each image with kustomize's own `images:` override (newName, newTag
  and digest), so whatever the overlay does to images (renames, patches, components) is done
  first and the digest is applied last, by the tool that understands it.
- The output is split into one file per object, `<kind>-<name>.yaml` (the group joins the name
  when two kinds share one), so a commit on the env repo reads as a per-object diff.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import yaml

from gitops import processes, scratch
from gitops.checks import check_image_ref
from gitops.errors import BadInput, OperationFailed, one_line
from gitops.manifest_text import Document

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
TIMEOUT = 300  # seconds; remote bases are fetched by kustomize itself
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def kustomization_in(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def image_override(name: str, ref: str) -> dict[str, str]:
    """kustomize's `images:` entry that sets image name to the pinned ref."""
    match = check_image_ref(ref)
    entry = {"name": name, "newName": match["name"], "digest": match["digest"]}
    if match["tag"]:
        entry["newTag"] = match["tag"]
    return entry


def build(overlay: Path, images: dict[str, str]) -> str:
    """The hydrated YAML stream of overlay with images pinned."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise OperationFailed("kubectl is not on PATH: kustomize overlays are built with "
                              "`kubectl kustomize`")
    wrapper = scratch.make()  # a killed run's wrapper is swept by the next one
    try:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(overlay.resolve(), wrapper.resolve())],
            "images": [image_override(name, ref) for name, ref in images.items()],
        }
        (wrapper / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        # Only what kubectl needs (no git token); its process group killed after TIMEOUT.
        code, out, err = processes.run(["kubectl", "kustomize", str(wrapper)],
                                       processes.tool_environment(), TIMEOUT,
                                       f"kubectl kustomize {overlay}")
    finally:
        shutil.rmtree(wrapper, ignore_errors=True)
    if code != 0:
        reason = one_line(err).removeprefix("error: ")
        raise BadInput(f"kustomize build of {overlay} failed: {reason}")
    return out


def object_files(text: str, documents: list[Document]) -> dict[str, str]:
    """One file per object of kustomize's output: relative name -> the object's YAML text."""
    named: dict[str, list[tuple[str, str, str]]] = {}
    for document in documents:
        data = document.data
        if data is None:
            continue
        if not isinstance(data, dict):
            raise BadInput(f"kustomize output document {document.number} is not an object")
        kind = str(data.get("kind", "object"))
        metadata = data.get("metadata")
        name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
        body = text[document.start:document.end]
        if body.startswith("---"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        if not body.endswith("\n"):
            body += "\n"
        group = str(data.get("apiVersion", "")).rpartition("/")[0]
        stem = f"{kind.lower()}-{UNSAFE_NAME.sub('_', name) or document.number}"
        named.setdefault(stem, []).append((group, body, f"{kind} {name}"))
    files: dict[str, str] = {}
    for stem, entries in named.items():
        for group, body, label in entries:
            file = f"{stem}.yaml" if len(entries) == 1 else \
                f"{stem.split('-', 1)[0]}.{group or 'core'}-{stem.split('-', 1)[1]}.yaml"
            if file in files:
                raise BadInput(f"kustomize output holds {label} twice")
            files[file] = body
    return files
