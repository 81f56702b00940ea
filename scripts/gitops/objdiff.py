"""kubectl's external differ for drift: which objects and which fields differ.

    KUBECTL_EXTERNAL_DIFF="python3 .../gitops/objdiff.py" kubectl diff --field-manager=... -f DIR

kubectl writes every object it compares twice, as the cluster holds it (LIVE folder) and as the
server's dry run of applying production would make it (MERGED folder), one file per object, and
runs this program with the two folders. It prints one JSON line per object that differs,
`{"object": "Kind/name", "state": "changed"|"missing", "fields": [...]}` (missing: production
has it, the cluster does not), and exits 1 when anything differs, 0 when nothing does, 2 on a
file it cannot read (kubectl's convention for external differs).

Fields the server changes on every dry run (resourceVersion, generation, managedFields) are not
drift; `status` is the cluster's to report, not production's to declare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

IGNORED = {"metadata.resourceVersion", "metadata.generation", "metadata.managedFields",
           "metadata.creationTimestamp", "metadata.uid", "status"}


def changed_fields(live: Any, merged: Any, path: str = "") -> list[str]:
    """Dotted paths where the two differ (list items by index), ignored fields left out."""
    if path in IGNORED:
        return []
    if isinstance(live, dict) and isinstance(merged, dict):
        out: list[str] = []
        for key in sorted(set(live) | set(merged), key=str):
            out += changed_fields(live.get(key), merged.get(key),
                                  f"{path}.{key}" if path else str(key))
        return out
    if isinstance(live, list) and isinstance(merged, list) and len(live) == len(merged):
        out = []
        for index, (a, b) in enumerate(zip(live, merged, strict=True)):
            out += changed_fields(a, b, f"{path}[{index}]")
        return out
    return [] if live == merged else [path or "."]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def compare(live_dir: Path, merged_dir: Path) -> list[dict[str, Any]]:
    found = []
    for name in sorted({p.name for p in (*live_dir.iterdir(), *merged_dir.iterdir())}):
        live, merged = load(live_dir / name), load(merged_dir / name)
        either = merged or live or {}
        what = f"{either.get('kind', '?')}/{(either.get('metadata') or {}).get('name', '?')}"
        if live is None and merged is not None:
            found.append({"object": what, "state": "missing", "fields": []})
            continue
        fields = changed_fields(live, merged)
        if fields:
            found.append({"object": what, "state": "changed", "fields": fields})
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: objdiff.py LIVE_DIR MERGED_DIR", file=sys.stderr)
        return 2
    try:
        found = compare(Path(argv[0]), Path(argv[1]))
    except (OSError, yaml.YAMLError) as exc:
        print(f"objdiff: {exc}", file=sys.stderr)
        return 2
    for entry in found:
        print(json.dumps(entry))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
