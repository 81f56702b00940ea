"""Render an app's manifests with its images pinned to a digest, or refuse them with a reason.

Two sources of manifests:
- plain: every `.yaml`, `.yml` and `.json` file of the templates folder, at any depth, is in
  the output under the same name, with only its image values replaced (`manifest_text`); any
  other file is named in a notice; a file that cannot be rendered fails the run;
- kustomize: when the templates folder (or the `--overlay` chosen in it) holds a kustomization,
  `kubectl kustomize` hydrates it with the images set by kustomize's own override
  (`kustomize`), and the output is its objects, one file each.

Either way every object then passes the same checks, and on any failure nothing is written:
- an image is pinned where a container uses it (containers, init and ephemeral containers, in
  any kind) and, in custom resources, in every `image` field at any depth, whose value names
  NAME (without tag or digest); a NAME that nothing uses is an error;
- built-in kinds are validated strictly against Kubernetes' schemas (`kube_api`), removed API
  versions are refused naming their replacement; custom resources are validated against the
  CRDs the user supplies (`crds`), otherwise passed with one notice per kind;
- what the delivery identity cannot apply is refused: cluster-scoped kinds and objects of
  another namespace than the app's (those belong in the infra program);
- the pinned text is parsed again and must hold exactly the original data with the image
  values replaced: only image values ever change.

Environments (`PerEnvironment`): CI renders the same images once per environment of the stack,
each environment from its own kustomize overlay, into OUT/ENV/, so every environment's
manifests are committed, and reviewable, before any of them is applied. An environment without
an overlay of its own gets the one named as default, or is an error: never a silent guess.
"""

from __future__ import annotations

import copy
import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops import kustomize, scratch
from gitops.checks import check_app, check_image_ref
from gitops.crds import CustomSchemas
from gitops.crds import problem as custom_problem
from gitops.errors import BadInput, one_line
from gitops.kube_api import KubeSchemas, Problem, is_cluster_scoped, schemas_for
from gitops.manifest_text import (
    Decoded,
    Document,
    Site,
    Use,
    apply_edits,
    decode,
    encode,
    literal,
    parse,
    parse_yaml,
    scalar_text,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_KUBE_VERSION = "1.33.0"
MESSAGE_LIMIT = 300
INFRA = "cluster-wide and other-namespace objects belong in the infra program (the Pulumi " \
        "project), not in an app's manifests"


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


@dataclass(frozen=True)
class RenderRequest:
    templates: Path
    images: dict[str, str]  # image name -> pinned reference (NAME[:TAG]@sha256:...)
    out: Path
    app: str  # the app, whose namespace delivery applies to
    overlay: str | None = None  # a kustomization folder inside templates
    crds: tuple[Path, ...] = ()  # CRD files or folders: schemas for custom resources
    kube_version: str = DEFAULT_KUBE_VERSION


@dataclass(frozen=True)
class RenderResult:
    out: Path
    files: tuple[str, ...]
    notices: tuple[str, ...]
    kustomized: bool


@dataclass
class Checker:
    """Pins and checks manifest files one by one; remembers what it used and noticed."""

    images: dict[str, str]
    schemas: KubeSchemas
    custom: CustomSchemas
    app: str | None  # None: no namespace checks (delivery re-validating the env repo)
    prehydrated: bool = False  # kustomize already set the images
    used: set[str] = field(default_factory=set)
    unchecked: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def file(self, name: str, raw: bytes) -> bytes:
        """The file with its image values pinned, after every check."""
        decoded = decode(raw, name)
        documents = parse(decoded.text, name)
        edits, paths = self.plan(decoded, documents, name)
        text = apply_edits(decoded.text, edits)
        if edits:
            pinned = parse(text, name)
            self.same_but_images(documents, pinned, paths, name)
            documents = pinned
        self.objects(documents, name)
        return encode(text, decoded)

    # --- pinning ------------------------------------------------------------------------------

    def owner(self, data: Any, path: tuple[str | int, ...]) -> Any:
        """The object a path belongs to: a list's item, or the document itself."""
        if is_list(data) and len(path) > 1 and path[0] == "items" and \
                isinstance(path[1], int) and path[1] < len(data["items"]):
            return data["items"][path[1]]
        return data

    def pinnable(self, document: Document, use: Use) -> bool:
        """An image field render may pin: a container's, or any `image` of a custom resource."""
        if not use.image_key or use.value is None:
            return False
        if use.in_container:
            return True
        owner = self.owner(document.data, use.path)
        if not isinstance(owner, dict):
            return False
        api, kind = owner.get("apiVersion"), owner.get("kind")
        return isinstance(api, str) and isinstance(kind, str) and \
            not self.schemas.is_builtin(api, kind)

    def plan(self, decoded: Decoded, documents: list[Document],
             name: str) -> tuple[list[tuple[Site, str]], list[list[tuple[Any, str]]]]:
        """The text edits, and per document the data paths that will hold a pinned ref."""
        edits: list[tuple[Site, str]] = []
        paths: list[list[tuple[Any, str]]] = []
        for document in documents:
            by_node: dict[int, list[tuple[Use, str | None]]] = defaultdict(list)
            pinned_paths: list[tuple[Any, str]] = []
            for use in document.uses:
                ref = None
                if self.pinnable(document, use):
                    assert use.value is not None
                    ref = self.images.get(image_name(use.value))
                    if self.prehydrated and use.value in self.images.values():
                        self.used |= {n for n, r in self.images.items() if r == use.value}
                by_node[use.node].append((use, ref))
            for uses in by_node.values():
                refs = {ref for _, ref in uses if ref}
                if not refs:
                    continue
                ref = refs.pop()
                value = str(uses[0][0].value)
                self.used.add(image_name(value))
                edits += self.site_edits(decoded.text, uses, ref, value, name)
                pinned_paths += [(use.path, ref) for use, r in uses if r]
            paths.append(pinned_paths)
        return edits, paths

    @staticmethod
    def site_edits(text: str, uses: list[tuple[Use, str | None]], ref: str, value: str,
                   name: str) -> list[tuple[Site, str]]:
        """Edits so that every pinnable use reads ref and every other use keeps value."""
        wanted: dict[Site, set[bool]] = defaultdict(set)
        for use, r in uses:
            wanted[use.site].add(r is not None)
        for site, flags in wanted.items():
            if len(flags) == 2:
                line = text.count("\n", 0, site.start) + 1
                raise BadInput(f"{name}: line {line}: {value!r} is used as an image and, "
                               "through the same anchor, elsewhere: give the image its own value")
        at_anchor = any(flags == {True} for site, flags in wanted.items() if site.style != "*")
        edits = []
        for site, flags in wanted.items():
            pin = True in flags
            if site.style != "*":
                if pin:
                    edits.append((site, scalar_text(ref, site, text)))
            elif pin and not at_anchor:
                edits.append((site, ref))
            elif not pin and at_anchor:
                edits.append((site, literal(value)))
        return edits

    @staticmethod
    def same_but_images(before: list[Document], after: list[Document],
                        paths: list[list[tuple[Any, str]]], name: str) -> None:
        """The pinned text holds the original data with exactly the pinned values replaced."""
        expected = []
        for document, pinned in zip(before, paths, strict=True):
            data = copy.deepcopy(document.data)
            for path, ref in pinned:
                node = data
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = ref
            expected.append(data)
        if expected != [document.data for document in after]:
            raise BadInput(f"{name}: the image values cannot be replaced without changing "
                           "other values; please report this file")

    # --- checks -------------------------------------------------------------------------------

    def objects(self, documents: list[Document], name: str) -> None:
        for document in documents:
            data = document.data
            where = f"{name}: document {document.number}"
            if data is None:
                continue
            if not is_object(data):
                raise BadInput(f"{where} is not a Kubernetes object (apiVersion and kind are "
                               "required)")
            if not is_list(data):
                self.object(data, where)
                continue
            for index, item in enumerate(data["items"], start=1):
                if isinstance(item, dict) and data["kind"] != "List":
                    # A typed list (DeploymentList) may leave apiVersion and kind to the list.
                    item = {"apiVersion": data["apiVersion"], "kind": data["kind"][:-4], **item}
                if not is_object(item):
                    raise BadInput(f"{where} item {index} is not a Kubernetes object "
                                   "(apiVersion and kind are required)")
                self.object(item, f"{where} item {index}")

    def object(self, data: dict[str, Any], where: str) -> None:
        api, kind = data["apiVersion"], data["kind"]
        metadata = data.get("metadata")
        object_name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"{where} ({kind} {object_name})" if isinstance(object_name, str) else \
            f"{where} ({kind})"
        problem: Problem | None
        if self.schemas.is_builtin(api, kind):
            if not self.schemas.knows(api, kind):
                raise BadInput(f"{label}: {self.schemas.unknown(api, kind)}")
            if self.app and is_cluster_scoped(api, kind):
                raise BadInput(f"{label}: {kind} is cluster-scoped; delivery applies only in "
                               f"namespace {self.app!r}: {INFRA}")
            self.namespace(metadata, label)
            problem = self.schemas.problem(data)
        else:
            custom = self.custom.find(api, kind)
            if custom is None and self.custom.knows_group(api):
                raise BadInput(f"{label}: the CRDs given (--crds) serve no {kind} {api}")
            if custom is None:
                file = where.rsplit(": document", 1)[0]
                self.unchecked.setdefault((api, kind), []).append(file)
                self.namespace(metadata, label)
                return
            if self.app and custom.scope == "Cluster":
                raise BadInput(f"{label}: {kind} is cluster-scoped (its CRD in "
                               f"{custom.source}); delivery applies only in namespace "
                               f"{self.app!r}: {INFRA}")
            self.namespace(metadata, label)
            problem = custom_problem(custom, data)
        if problem:
            message = one_line(problem.message)
            if kind == "Secret":  # schema messages quote values: a Secret's stay out of logs
                message = f"fails the schema's {problem.rule!r} rule (value not shown)"
            if len(message) > MESSAGE_LIMIT:
                message = message[:MESSAGE_LIMIT] + "..."
            raise BadInput(f"{label}: {problem.path}: {message}")

    def namespace(self, metadata: Any, label: str) -> None:
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        if self.app and namespace not in (None, "", self.app):
            raise BadInput(f"{label}: metadata.namespace is {namespace!r}, but delivery applies "
                           f"only in namespace {self.app!r}: {INFRA}")

    def notices(self) -> list[str]:
        return [f"notice: {len(files)} {kind} ({api}) custom resource(s), first in {files[0]}, "
                "passed without schema validation: give its CRD with --crds to validate"
                for (api, kind), files in sorted(self.unchecked.items())]


def is_object(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("apiVersion"), str) and \
        isinstance(data.get("kind"), str) and bool(data["apiVersion"]) and bool(data["kind"])


def is_list(data: Any) -> bool:
    return is_object(data) and str(data["kind"]).endswith("List") and \
        isinstance(data.get("items"), list)


# --- sources ------------------------------------------------------------------------------------


def template_files(templates: Path) -> tuple[dict[str, bytes], list[str]]:
    """Manifest files by relative name, and notices for the other files."""
    files: dict[str, bytes] = {}
    notices: list[str] = []
    root = templates.resolve()
    paths = sorted(templates.rglob("*"))
    overlays = [p.relative_to(templates).as_posix() for p in paths
                if p.is_dir() and kustomize.kustomization_in(p)]
    if overlays:
        raise BadInput(f"the templates folder holds kustomizations ({', '.join(overlays[:5])}): "
                       "choose the one to render with --overlay PATH")
    for path in paths:
        name = path.relative_to(templates).as_posix()
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise BadInput(f"{name} is a symlink leading out of the templates folder")
            if target.is_dir():
                raise BadInput(f"{name} is a symlink to a folder: move or copy its files")
        if path.is_dir():
            continue
        if not path.is_file():
            raise BadInput(f"{name} is not a regular file")
        if path.suffix in MANIFEST_SUFFIXES:
            files[name] = path.read_bytes()
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            raise BadInput(f"{name}: kubectl reads only lower-case .yaml, .yml and .json "
                           "files: rename it")
        else:
            notices.append(f"notice: {name} skipped: not a manifest (.yaml, .yml or .json)")
    return files, notices


def overlay_folder(templates: Path, overlay: str | None) -> Path | None:
    """The kustomization folder to build, or None for plain manifests."""
    if overlay is None:
        return templates if kustomize.kustomization_in(templates) else None
    folder = (templates / overlay).resolve()
    if not folder.is_relative_to(templates.resolve()):
        raise BadInput(f"--overlay {overlay!r} is outside the templates folder")
    if not folder.is_dir() or not kustomize.kustomization_in(folder):
        raise BadInput(f"--overlay {overlay!r}: no kustomization.yaml in {templates / overlay}")
    return folder


def render(request: RenderRequest) -> tuple[dict[str, bytes], list[str], bool]:
    """(output files by relative name, notices, whether kustomize built them)."""
    templates = request.templates
    if not templates.is_dir():
        raise BadInput(f"templates folder {str(templates)!r} does not exist")
    checker = Checker(request.images, schemas_for(request.kube_version),
                      CustomSchemas(request.crds), check_app(request.app))
    overlay = overlay_folder(templates, request.overlay)
    notices: list[str] = []
    if overlay is None:
        sources, notices = template_files(templates)
        if not sources:
            raise BadInput(f"templates folder {str(templates)!r} holds no .yaml, .yml or .json "
                           "files")
        where = str(templates)
    else:
        built = kustomize.build(overlay, request.images)
        label = f"kustomize build of {overlay.relative_to(templates.resolve()).as_posix()}"
        documents = parse_yaml(built, label)
        sources = {name: text.encode() for name, text in
                   kustomize.object_files(built, documents).items()}
        if not sources:
            raise BadInput(f"{label} holds no objects")
        checker.prehydrated = True
        where = label
    prefix = "" if overlay is None else f"{where}: "
    rendered = {name: checker.file(prefix + name, raw) for name, raw in sources.items()}
    unused = sorted(set(request.images) - checker.used)
    if unused:
        raise BadInput(f"no container uses image {unused[0]!r} in {where}")
    return rendered, notices + checker.notices(), overlay is not None


def check_out(out: Path) -> None:
    """The output folder must not exist yet, or be empty, in an existing folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"output folder {str(out)!r} exists and is not empty")
    if not out.parent.is_dir():
        raise BadInput(f"parent of output folder {str(out)!r} does not exist")


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Rendering's refusals as one line: names and paths come from the input, whatever they
    hold, and a document nested beyond Python's recursion limit is bad input too."""
    try:
        yield
    except BadInput as exc:
        raise BadInput(one_line(str(exc))) from None
    except RecursionError:
        raise BadInput("the manifests are nested too deeply") from None


def render_to(request: RenderRequest) -> RenderResult:
    """Render into request.out, which must not exist yet or be empty."""
    out = request.out
    check_out(out)
    with one_line_errors():
        files, notices, kustomized = render(request)
    atomic_write_dir(out, files)
    return RenderResult(out, tuple(files), tuple(notices), kustomized)


@dataclass(frozen=True)
class PerEnvironment:
    """One rendering per environment of the same images, into OUT/ENV/ (`--environments`).

    With `overlays`, environment E is built from the kustomization `overlays/E` inside the
    templates, or, when there is none, from `default_overlay`; without a default that is an
    error, so a new environment never ships a rendering nobody chose. Without `overlays`
    every environment gets the request's own rendering (plain manifests, or `--overlay`).
    """

    environments: tuple[str, ...]  # in delivery order (gitops.checks.check_environments)
    overlays: str | None = None  # folder inside the templates: one kustomization per environment
    default_overlay: str | None = None  # for an environment without its own overlay


def environment_overlays(request: RenderRequest, plan: PerEnvironment) -> dict[str, str | None]:
    """environment -> the overlay it is rendered from (None: the templates themselves)."""
    if plan.overlays is None:
        if plan.default_overlay is not None:
            raise BadInput("--default-overlay needs --environment-overlays")
        return dict.fromkeys(plan.environments, request.overlay)
    if request.overlay is not None:
        raise BadInput("give --overlay (one for every environment) or --environment-overlays "
                       "(one per environment), not both")
    templates = request.templates.resolve()
    folder = (templates / plan.overlays).resolve()
    if not folder.is_relative_to(templates) or not folder.is_dir():
        raise BadInput(f"--environment-overlays {plan.overlays!r} is not a folder inside "
                       f"{str(request.templates)!r}")
    default = plan.default_overlay
    if default is not None and (not (templates / default).resolve().is_relative_to(templates)
                                or not kustomize.kustomization_in(templates / default)):
        raise BadInput(f"--default-overlay {default!r}: no kustomization in "
                       f"{request.templates / default}")
    chosen: dict[str, str | None] = {}
    for environment in plan.environments:
        own = f"{plan.overlays.rstrip('/')}/{environment}"
        if kustomize.kustomization_in(templates / own):
            chosen[environment] = own
        elif default is not None:
            chosen[environment] = default
        else:
            raise BadInput(f"environment {environment!r} has no overlay (no kustomization in "
                           f"{request.templates / own}): add one, or name the overlay of "
                           "environments without their own with --default-overlay")
    return chosen


def render_environments_to(request: RenderRequest,
                           plan: PerEnvironment) -> tuple[RenderResult, dict[str, str | None]]:
    """Render every environment into request.out/ENV/ (the folder must not exist yet or be
    empty): the result, and which overlay each environment was rendered from."""
    out = request.out
    check_out(out)
    if not request.templates.is_dir():
        raise BadInput(f"templates folder {str(request.templates)!r} does not exist")
    with one_line_errors():
        chosen = environment_overlays(request, plan)
        renderings: dict[str | None, tuple[dict[str, bytes], list[str], bool]] = {}
        for overlay in dict.fromkeys(chosen.values()):  # each overlay built once
            renderings[overlay] = render(RenderRequest(
                request.templates, request.images, out, request.app, overlay, request.crds,
                request.kube_version))
    files = {f"{environment}/{name}": data for environment, overlay in chosen.items()
             for name, data in renderings[overlay][0].items()}
    notices = list(dict.fromkeys(n for rendered in renderings.values() for n in rendered[1]))
    if plan.overlays is not None:
        unused = sorted(p.name for p in (request.templates / plan.overlays).iterdir()
                        if p.is_dir() and p.name not in chosen)
        notices += [f"notice: overlay {plan.overlays.rstrip('/')}/{name} is no environment's "
                    f"(environments: {' '.join(plan.environments)})" for name in unused]
    atomic_write_dir(out, files)
    kustomized = any(rendered[2] for rendered in renderings.values())
    return RenderResult(out, tuple(files), tuple(notices), kustomized), chosen


def validate(text: str, source: str, images: dict[str, str], kube_version: str) -> None:
    """Check one manifest file's objects (delivery's validate-only mode): schemas, images
    already pinned; no namespace checks (render made them before `candidate`)."""
    checker = Checker(images, schemas_for(kube_version), CustomSchemas(), None)
    checker.file(source, text.encode())


def atomic_write_dir(target: Path, files: dict[str, bytes]) -> None:
    """Write files (relative name -> bytes) into target, which must not exist yet or be empty."""
    staging = scratch.make(target.parent)  # a killed run's staging is swept by the next one
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
