"""Render an app's manifests with its images pinned to a digest.

Every `.yaml`/`.yml` file of the templates folder is copied, replacing the `image:` of every
container and init container whose image name (without tag or digest) is NAME by REF. Only the
image values change: the file is edited in place of the old value, so comments, key order,
quoting and indentation stay byte for byte. Every output document must parse and pass Kubernetes
schema validation; on any failure nothing is written.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gitops import scratch
from gitops.checks import check_image_ref
from gitops.errors import BadInput
from gitops.manifests import check_manifest_text, collect_files

DEFAULT_KUBE_VERSION = "1.33.0"
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# Where the pod spec sits in each workload kind.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}
# A single-line scalar as it appears in the file: quoted, or plain up to a comment or flow end.
SCALAR_RE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'|[^\s,\]}#]+(?:[ \t]+[^\s,\]}#]+)*")


def image_name(image: str) -> str:
    """The repository part of an image reference: no digest, no tag."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def parse_image_flag(value: str) -> tuple[str, str]:
    name, sep, ref = value.partition("=")
    if not sep or not name or not ref:
        raise BadInput(f"--image {value!r} must be NAME=REF")
    check_image_ref(ref)
    return name, ref


def pod_specs(doc: Any) -> Iterator[Any]:
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from pod_specs(item)
        return
    node: Any = doc
    for key in POD_SPEC_PATHS.get(str(doc.get("kind")), ()):
        node = node.get(key) if isinstance(node, dict) else None
    if node is not doc and isinstance(node, dict):
        yield node


def image_slots(doc: Any) -> Iterator[tuple[Any, int, int]]:
    """(container, line, column) of every container image value in a document."""
    for spec in pod_specs(doc):
        for list_key in CONTAINER_LISTS:
            for container in spec.get(list_key) or []:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    # ruamel's round-trip maps know where each value sits in the file.
                    position: Any = container
                    line, col = position.lc.value("image")
                    yield container, line, col


def rewrite(text: str, source: str, images: dict[str, str], used: set[str]) -> str:
    """Replace matching image values in text; return the new text."""
    yaml = YAML()
    try:
        docs = list(yaml.load_all(text))
    except YAMLError as exc:
        raise BadInput(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for doc in docs:
        for container, line, col in image_slots(doc):
            name = image_name(container["image"])
            if name in images:
                used.add(name)
                edits.append((line, col, images[name]))
    # Edit from the end so earlier positions stay valid.
    for line, col, ref in sorted(edits, reverse=True):
        match = SCALAR_RE.match(lines[line], col)
        if not match:
            raise BadInput(f"{source}:{line + 1}: cannot rewrite this image value in place")
        lines[line] = lines[line][: match.start()] + ref + lines[line][match.end():]
    return "".join(lines)


def validate(text: str, source: str, images: dict[str, str], kube_version: str) -> None:
    """Parse the output, check every NAME is pinned, check each document's schema."""
    import kubernetes_validate  # imported late: it is the slowest import of this script

    for doc in YAML().load_all(text):
        for container, line, _ in image_slots(doc):
            name = image_name(container["image"])
            if name in images and container["image"] != images[name]:
                raise BadInput(f"{source}:{line + 1}: image {container['image']!r} "
                               "could not be pinned")
    docs = [doc for doc in YAML(typ="safe").load_all(text) if doc is not None]
    for index, doc in enumerate(docs, start=1):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise BadInput(f"{source}: document {index} is not a Kubernetes object "
                           "(apiVersion and kind are required)")
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(root)"
            raise BadInput(f"{source}: document {index} ({doc.get('kind', '?')}): "
                           f"{path}: {' '.join(exc.message.split())}") from None
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            raise BadInput(f"{source}: document {index}: no schema for {exc.kind} "
                           f"{exc.api_version} in Kubernetes {kube_version}") from None
        except kubernetes_validate.utils.VersionNotSupportedError as exc:
            raise BadInput(f"--kube-version: {exc.message}") from None


def render(templates: Path, images: dict[str, str], kube_version: str) -> dict[str, str]:
    # No symlink followed out of the folder, no FIFO read (gitops.manifests).
    files = collect_files(templates, skip_others=True, what="templates folder")
    used: set[str] = set()
    rendered: dict[str, str] = {}
    for name in sorted(files):
        source = str(templates / name)
        try:
            text = files[name].read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{source}: not UTF-8 text") from None
        check_manifest_text(text, source)  # what publish refuses, refused here first
        rendered[name] = rewrite(text, source, images, used)
    unused = sorted(set(images) - used)
    if unused:
        raise BadInput(f"no container uses image {unused[0]!r} in {templates}")
    for name, text in rendered.items():
        validate(text, name, images, kube_version)
    return rendered


def render_to(templates: Path, images: dict[str, str], out: Path,
              kube_version: str = DEFAULT_KUBE_VERSION) -> Path:
    """Render templates into out, which must not exist yet or be empty; out."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"output folder {str(out)!r} exists and is not empty")
    if not out.parent.is_dir():
        raise BadInput(f"parent of output folder {str(out)!r} does not exist")
    atomic_write_dir(out, render(templates, images, kube_version))
    return out


def atomic_write_dir(target: Path, files: dict[str, str]) -> None:
    """Write files (relative name -> text) into target, which must not exist yet or be empty."""
    staging = scratch.make(target.parent)  # a killed run's staging is swept by the next one
    try:
        for name, text in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
