"""The API server's side of the test clusters: the objects of one namespace, as kubectl applies,
reads and deletes them. Shared by the in-process ScriptedCluster (conftest.py) and the
fake_kubectl.py process, so both answer like kubectl does:

- `apply` creates or updates objects and never deletes one; it records the field manager
  (`--field-manager`, kubectl's default for client-side apply otherwise) in managedFields;
- `get TYPE NAME -o json` hides managedFields unless `--show-managed-fields` is given, and
  answers NotFound (exit 1) unless `--ignore-not-found` (exit 0, no output);
- TYPE is resolved the way kubectl resolves it: `<singular>[.<group>]`, the singular being the
  lowercase kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MANAGER = "kubectl-client-side-apply"


def manifest_objects(folder: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".json":
            docs: list[Any] = [json.loads(path.read_text())]
        elif path.suffix in (".yaml", ".yml"):
            docs = list(yaml.safe_load_all(path.read_text()))
        else:
            continue
        while docs:
            doc = docs.pop(0)
            if isinstance(doc, dict) and doc.get("kind") == "List":
                docs = [*doc.get("items", []), *docs]
            elif isinstance(doc, dict):
                found.append(doc)
    return found


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def printed(group: str, kind: str, name: str) -> str:
    """How kubectl names an object in its output: `deployment.apps/hello`, `configmap/a`."""
    return f"{kind.lower()}{'.' + group if group else ''}/{name}"


class Objects:
    """One namespace's objects, kept in a plain dict (so a process can store it as JSON)."""

    def __init__(self, state: dict[str, Any], unserved: frozenset[str] = frozenset()) -> None:
        self.state = state  # printed name -> object
        self.unserved = unserved  # types the API server does not serve (a CRD removed)

    def names(self) -> set[str]:
        return set(self.state)

    def seed(self, obj: dict[str, Any], manager: str) -> None:
        """An object someone else made (kubectl create, a controller, another tool)."""
        key = printed(group_of(obj["apiVersion"]), obj["kind"], obj["metadata"]["name"])
        self.state[key] = {**obj, "metadata": {**obj["metadata"],
                                               "managedFields": [{"manager": manager}]}}

    def apply(self, folder: Path, manager: str | None) -> str:
        lines = []
        for obj in manifest_objects(folder):
            key = printed(group_of(str(obj.get("apiVersion", ""))), str(obj["kind"]),
                          str(obj["metadata"]["name"]))
            current = self.state.get(key)
            fields = list(current["metadata"]["managedFields"]) if current else []
            if not any(f["manager"] == (manager or DEFAULT_MANAGER) for f in fields):
                fields.append({"manager": manager or DEFAULT_MANAGER, "operation": "Update"})
            self.state[key] = {**obj, "metadata": {**obj["metadata"], "managedFields": fields}}
            lines.append(f"{key} {'configured' if current else 'created'}")
        return "\n".join(lines)

    def resolve(self, resource_type: str, name: str) -> str | None:
        singular, _, group = resource_type.partition(".")
        for key, obj in self.state.items():
            if (obj["kind"].lower(), group_of(obj["apiVersion"]), obj["metadata"]["name"]) == \
                    (singular, group, name):
                return key
        return None

    def get(self, resource_type: str, name: str, flags: set[str]) -> tuple[int, str, str]:
        if resource_type in self.unserved:
            return 1, "", f'error: the server doesn\'t have a resource type "{resource_type}"'
        key = self.resolve(resource_type, name)
        if key is None:
            if "--ignore-not-found" in flags:
                return 0, "", ""
            return 1, "", f'Error from server (NotFound): {resource_type} "{name}" not found'
        obj = json.loads(json.dumps(self.state[key]))
        if "--show-managed-fields" not in flags:
            obj["metadata"].pop("managedFields", None)
        return 0, json.dumps(obj), ""

    def delete(self, resource_type: str, name: str, flags: set[str]) -> tuple[int, str, str]:
        key = self.resolve(resource_type, name)
        if key is None:
            if "--ignore-not-found" in flags:
                return 0, "", ""
            return 1, "", f'Error from server (NotFound): {resource_type} "{name}" not found'
        del self.state[key]
        return 0, f'{resource_type} "{name}" deleted', ""
