"""The API server's side of the test clusters, as kubectl shows it. Shared by the in-process
ScriptedCluster (conftest.py, objects in a dict) and the fake_kubectl.py process (objects in
files), so both answer like kubectl does:

- `apply` creates or updates objects and never deletes one; it records the field manager
  (`--field-manager`, kubectl's default for client-side apply otherwise) in managedFields;
- `get TYPE NAME -o json` hides managedFields unless `--show-managed-fields` is given, and
  answers NotFound (exit 1) unless `--ignore-not-found` (exit 0, no output);
- TYPE is resolved the way kubectl resolves it: `<singular>[.<group>]`, the singular being the
  lowercase kind; a type the server does not serve is kubectl's "doesn't have a resource type".
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DEFAULT_MANAGER = "kubectl-client-side-apply"


def file_objects(path: Path) -> list[dict[str, Any]]:
    """The objects of one manifest file, `kind: List` items included."""
    import yaml  # here, not at the top: the fake kubectl's Lease calls stay fast

    if path.suffix == ".json":
        docs: list[Any] = [json.loads(path.read_text())]
    elif path.suffix in (".yaml", ".yml"):
        docs = list(yaml.safe_load_all(path.read_text()))
    else:
        return []
    found: list[dict[str, Any]] = []
    while docs:
        doc = docs.pop(0)
        if isinstance(doc, dict) and doc.get("kind") == "List":
            docs = [*doc.get("items", []), *docs]
        elif isinstance(doc, dict):
            found.append(doc)
    return found


def manifest_objects(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, object) of every object in the folder's manifests."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return [(path, obj) for path in files for obj in file_objects(path)]


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def printed(obj: dict[str, Any]) -> str:
    """How kubectl names an object in its output: `deployment.apps/hello`, `configmap/a`."""
    kind, group = str(obj["kind"]).lower(), group_of(str(obj.get("apiVersion", "")))
    return f"{kind}{'.' + group if group else ''}/{obj['metadata']['name']}"


def is_type(obj: dict[str, Any], resource_type: str, name: str) -> bool:
    singular, _, group = resource_type.partition(".")
    return (str(obj["kind"]).lower(), group_of(str(obj.get("apiVersion", ""))),
            obj["metadata"]["name"]) == (singular, group, name)


def with_manager(live: dict[str, Any] | None, desired: dict[str, Any],
                 manager: str | None) -> dict[str, Any]:
    """desired as the live object after an apply: managedFields keep every earlier manager."""
    fields = list(((live or {}).get("metadata") or {}).get("managedFields") or [])
    if not any(f.get("manager") == (manager or DEFAULT_MANAGER) for f in fields):
        fields.append({"manager": manager or DEFAULT_MANAGER, "operation": "Update"})
    return {**desired, "metadata": {**desired["metadata"], "managedFields": fields}}


def not_served(resource_type: str) -> tuple[int, str, str]:
    return 1, "", f'error: the server doesn\'t have a resource type "{resource_type}"'


def not_found(resource_type: str, name: str, flags: set[str]) -> tuple[int, str, str]:
    if "--ignore-not-found" in flags:
        return 0, "", ""
    return 1, "", f'Error from server (NotFound): {resource_type} "{name}" not found'


def shown(obj: dict[str, Any], flags: set[str]) -> str:
    """`get -o json` of the object: managedFields only with --show-managed-fields."""
    out = copy.deepcopy(obj)
    if "--show-managed-fields" not in flags:
        out["metadata"].pop("managedFields", None)
    return json.dumps(out)


class Objects:
    """One namespace's objects in a plain dict (printed name -> object)."""

    def __init__(self, state: dict[str, Any], unserved: frozenset[str] = frozenset()) -> None:
        self.state = state
        self.unserved = unserved  # types the API server does not serve (a CRD removed)

    def names(self) -> set[str]:
        return set(self.state)

    def seed(self, obj: dict[str, Any], manager: str) -> None:
        """An object someone else made (kubectl create, a controller, another tool)."""
        self.state[printed(obj)] = {**obj, "metadata": {**obj["metadata"],
                                                        "managedFields": [{"manager": manager}]}}

    def apply(self, folder: Path, manager: str | None) -> str:
        lines = []
        for _, obj in manifest_objects(folder):
            key = printed(obj)
            lines.append(f"{key} {'configured' if key in self.state else 'created'}")
            self.state[key] = with_manager(self.state.get(key), obj, manager)
        return "\n".join(lines)

    def find(self, resource_type: str, name: str) -> str | None:
        return next((key for key, obj in self.state.items()
                     if is_type(obj, resource_type, name)), None)

    def get(self, resource_type: str, name: str, flags: set[str]) -> tuple[int, str, str]:
        if resource_type in self.unserved:
            return not_served(resource_type)
        key = self.find(resource_type, name)
        if key is None:
            return not_found(resource_type, name, flags)
        return 0, shown(self.state[key], flags), ""

    def delete(self, resource_type: str, name: str, flags: set[str]) -> tuple[int, str, str]:
        key = self.find(resource_type, name)
        if key is None:
            return not_found(resource_type, name, flags)
        del self.state[key]
        return 0, f'{resource_type} "{name}" deleted', ""
