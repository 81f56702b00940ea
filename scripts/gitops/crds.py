"""Schemas of custom resources, from the CustomResourceDefinitions a user supplies.

Design decisions:
- A custom resource is validated only against a schema the user hands over (`--crds`: CRD
  files or folders of them); render never guesses one. Without it, the resource passes with a
  notice. Documents of other kinds in those files are ignored (install bundles mix them).
- Each served version's `openAPIV3Schema` (OpenAPI 3.0, a JSON Schema draft 4 dialect) is
  checked with `jsonschema`'s Draft 4 validator, after the translations the API server makes:
  `nullable` admits null, `x-kubernetes-int-or-string` admits both, and an object that lists
  its properties admits no others unless `x-kubernetes-preserve-unknown-fields` says so (the
  server's strict field validation, which `kubectl apply` asks for). `apiVersion`, `kind` and
  `metadata` are always allowed at the root and in embedded resources. CEL rules
  (`x-kubernetes-validations`) and formats are left to the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from gitops.errors import BadInput
from gitops.kube_api import Problem, split_api_version
from gitops.manifest_text import decode, parse

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
CRD_API = "apiextensions.k8s.io/v1"
OBJECT_KEYS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class CustomKind:
    scope: str  # "Namespaced" or "Cluster"
    validator: jsonschema.protocols.Validator | None  # None: the version has no schema
    source: str  # the CRD file, for messages


class CustomSchemas:
    """Custom kinds by (group, version, kind), from the CRDs found in the given paths."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self.kinds: dict[tuple[str, str, str], CustomKind] = {}
        self.groups: set[str] = set()
        for path in paths:
            if not path.exists():
                raise BadInput(f"--crds {str(path)!r} does not exist")
            found = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES) \
                if path.is_dir() else [path]
            for file in found:
                if file.is_file():
                    self._load(file)

    def _load(self, file: Path) -> None:
        source = str(file)
        for document in parse(decode(file.read_bytes(), source).text, source):
            data = document.data
            items = data.get("items") if isinstance(data, dict) and \
                data.get("kind") == "List" else [data]
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and item.get("kind") == "CustomResourceDefinition":
                    self._add(item, source)

    def _add(self, crd: dict[str, Any], source: str) -> None:
        if crd.get("apiVersion") != CRD_API:
            raise BadInput(f"{source}: CustomResourceDefinition {crd.get('apiVersion')!r} is not "
                           f"served since Kubernetes 1.22: use {CRD_API}")
        spec = crd.get("spec")
        names = spec.get("names") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(names, dict) or \
                not isinstance(spec.get("versions"), list):
            raise BadInput(f"{source}: CustomResourceDefinition without spec.names and "
                           "spec.versions")
        group, kind = str(spec.get("group", "")), str(names.get("kind", ""))
        self.groups.add(group)
        for version in spec["versions"]:
            if not isinstance(version, dict) or version.get("served") is False:
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            validator = None
            if isinstance(schema, dict):
                try:
                    translated = translate(schema, root=True)
                    jsonschema.Draft4Validator.check_schema(translated)
                except jsonschema.SchemaError as exc:
                    raise BadInput(f"{source}: {kind} {version.get('name')}: invalid "
                                   f"openAPIV3Schema: {exc.message}") from None
                validator = jsonschema.Draft4Validator(translated)
            self.kinds[(group, str(version.get("name")), kind)] = CustomKind(
                str(spec.get("scope", "Namespaced")), validator, source)

    def find(self, api_version: str, kind: str) -> CustomKind | None:
        group, version = split_api_version(api_version)
        return self.kinds.get((group, version, kind))

    def knows_group(self, api_version: str) -> bool:
        return split_api_version(api_version)[0] in self.groups


def problem(kind: CustomKind, data: dict[str, Any]) -> Problem | None:
    if kind.validator is None:
        return None
    error = best_match(kind.validator.iter_errors(data))
    if error is None:
        return None
    return Problem(".".join(str(p) for p in error.absolute_path) or "(root)", error.message,
                   str(error.validator))


def translate(schema: Any, root: bool = False) -> Any:
    """An OpenAPI v3 structural schema as the JSON Schema the API server effectively checks."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: translate(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = [translate(s) for s in value] if isinstance(value, list) \
                else translate(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [translate(s) for s in value]
        elif not key.startswith("x-kubernetes-") and key not in ("nullable", "format"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    embedded = root or schema.get("x-kubernetes-embedded-resource") is True
    if embedded:
        properties = out.setdefault("properties", {})
        for name in OBJECT_KEYS:
            properties.setdefault(name, {"type": "object"} if name == "metadata"
                                  else {"type": "string"})
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out
