"""What a folder of manifests declares, and pruning: deleting what a newer tree no longer holds.

Design decisions:
- Pruning is worked out from two Git trees, never from what is in the cluster: the tree the
  cluster held (what `production` holds for the app, or the candidate that was just applied when
  a failed rollout is reverted) minus the tree it must hold now. Only objects that appear in a
  tree this app delivered can be deleted; nothing is selected by a label query, so an object
  someone else made in the namespace (a Secret created by hand, the delivery Lease) is never a
  candidate.
- kubectl's own pruning is not used. `kubectl apply --prune -l ...` selects by label and deletes
  whatever matches, including objects the app never declared; ApplySet pruning
  (`--prune --applyset=...`) is alpha in kubectl 1.27 to 1.33 (hidden behind
  `KUBECTL_APPLYSET=true`) and needs a parent object plus `list` on every kind in the set.
- Every apply names the field manager `gitops-delivery`, and an object is deleted only when its
  `metadata.managedFields` still name that manager (`applied_by_delivery`): an object the
  delivery never applied (made by hand under the same name, or taken over since) is kept, and
  the log says so. Drift uses the same rule to find the leftovers it reports and a heal deletes
  (`leftovers`), so what drift calls extra is exactly what pruning would delete.
- An object is known by (API group, kind, name): the version is not part of it, so an HPA that
  moves from autoscaling/v1 to v2 is the same object. An object whose kind and name remain in
  the new tree under another group (extensions -> networking.k8s.io) is never deleted: for the
  API server both names can be one object.
- Pruning runs only after every rollout succeeded: a failed delivery has deleted nothing, and
  its revert deletes only what the failed candidate added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FIELD_MANAGER = "gitops-delivery"
# kubectl's answer when the API server serves no such type (a custom resource whose CRD is gone):
# no object of it can exist, so there is nothing to delete.
NO_SUCH_TYPE = "the server doesn't have a resource type"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class Kubectl(Protocol):
    def kubectl(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]: ...


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object a manifest declares, as the API server identifies it in a namespace."""

    group: str  # "" for the core group
    kind: str
    name: str

    @property
    def resource_type(self) -> str:
        """The type kubectl takes: `configmap`, `deployment.apps`, `podmonitoring.<group>`."""
        return self.kind.lower() + (f".{self.group}" if self.group else "")

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.name}"


def documents(folder: Path) -> Iterator[dict[str, Any]]:
    """Every object of every manifest file in the folder, `kind: List` items included."""
    import yaml

    for path in sorted(folder.rglob("*")):
        if path.suffix not in MANIFEST_SUFFIXES or not path.is_file():
            continue
        text = path.read_text()
        docs = [json.loads(text)] if path.suffix == ".json" else \
            yaml.load_all(text, Loader=yaml.CSafeLoader)
        for doc in docs:
            stack = [doc]
            while stack:
                item = stack.pop(0)
                if not isinstance(item, dict):
                    continue
                if item.get("kind") == "List" and isinstance(item.get("items"), list):
                    stack = [*item["items"], *stack]
                else:
                    yield item


def objects(folder: Path | None, namespace: str) -> list[ObjectRef]:
    """The objects the folder declares in the namespace (None: no folder, no objects)."""
    found: list[ObjectRef] = []
    for doc in documents(folder) if folder is not None else ():
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict) or not metadata.get("name"):
            continue
        if metadata.get("namespace") not in (None, namespace):
            continue  # refused before candidate; never pruned in another namespace
        api_version = str(doc.get("apiVersion", ""))
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        ref = ObjectRef(group, str(doc.get("kind", "")), str(metadata["name"]))
        if ref not in found:
            found.append(ref)
    return found


def removed(before: Sequence[ObjectRef], after: Sequence[ObjectRef]) -> list[ObjectRef]:
    """Objects of before that after no longer declares, in before's order."""
    kept = set(after)
    same_kind_and_name = {(ref.kind, ref.name) for ref in after}
    return [ref for ref in before
            if ref not in kept and (ref.kind, ref.name) not in same_kind_and_name]


@dataclass(frozen=True)
class PruneResult:
    deleted: tuple[ObjectRef, ...]
    kept: tuple[ObjectRef, ...]  # not applied by the delivery: left alone
    failure: str | None  # why pruning stopped, or None


def managers(live: dict[str, Any]) -> set[str]:
    fields = (live.get("metadata") or {}).get("managedFields") or []
    return {str(entry.get("manager")) for entry in fields if isinstance(entry, dict)}


def applied_by_delivery(live: dict[str, Any]) -> bool:
    """The one rule for what pruning may delete and drift reports as extra: the live object's
    managedFields (read with `--show-managed-fields`) name the delivery's field manager."""
    return FIELD_MANAGER in managers(live)


def live_ref(live: dict[str, Any]) -> ObjectRef:
    """How a live object (`kubectl get -o json`) is known, as a manifest's object is."""
    api_version = str(live.get("apiVersion", ""))
    return ObjectRef(api_version.split("/", 1)[0] if "/" in api_version else "",
                     str(live.get("kind", "")), str((live.get("metadata") or {}).get("name")))


def leftovers(live: Iterable[dict[str, Any]], keep: Sequence[ObjectRef]) -> list[ObjectRef]:
    """The live objects the delivery applied that keep (the tree the namespace must hold) no
    longer declares: what pruning would delete, sorted."""
    applied = sorted({live_ref(item) for item in live if applied_by_delivery(item)})
    return removed(applied, keep)


def prune(cluster: Kubectl, namespace: str, stale: Sequence[ObjectRef], why: str,
          log: Callable[[str], None] = print) -> PruneResult:
    """Delete each stale object that the delivery applied; stop at the first failure. `why`
    says in the log why they go."""
    deleted: list[ObjectRef] = []
    kept: list[ObjectRef] = []

    def result(failure: str | None = None) -> PruneResult:
        return PruneResult(tuple(deleted), tuple(kept), failure)

    for ref in stale:
        where = (ref.resource_type, ref.name, f"--namespace={namespace}")
        code, out, err = cluster.kubectl("get", *where, "--output=json",
                                         "--show-managed-fields", "--ignore-not-found")
        if code != 0 and NO_SUCH_TYPE in err:
            log(f"  {ref} already gone: the cluster serves no {ref.resource_type} any more")
            continue
        if code != 0:
            return result(f"prune: cannot read {ref}: {' '.join(err.split())}")
        if not out.strip():
            log(f"  {ref} already gone")
            continue
        found = json.loads(out)
        if not applied_by_delivery(found):
            owners = managers(found)
            kept.append(ref)
            log(f"  {ref} kept: {why}, but not applied by the delivery "
                f"(field managers: {', '.join(sorted(owners)) or 'none'})")
            continue
        code, _, err = cluster.kubectl("delete", *where, "--ignore-not-found", "--wait=false")
        if code != 0:
            return result(f"prune: cannot delete {ref}: {' '.join(err.split())}")
        deleted.append(ref)
        log(f"  {ref} deleted: {why}")
    return result()
