"""Vendor the IAM roles the program grants, with their permissions, into gcp-roles.json.

    python tests/data/extract_roles.py [PATH/gcp-role-permissions.json.gz]

The source is Google's predefined roles as published in the public dataset iann0036/iam-dataset
(MIT licence), files gcp/roles/*.json, snapshot of commit
2073fa52ac008a45477aa0b1b4580cd99135bf60 (2026-08-22), merged into one JSON object
{"roles/NAME": ["permission", ...]}. Only the roles that the program grants in any of the test
configurations are kept (and the service agents' roles the access model counts on), so the
tests need nothing outside this repository. Re-run it when the
program grants a new role (the access-model tests say so).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUTPUT = HERE / "gcp-roles.json"
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "gcp-role-permissions.json.gz"
PROVENANCE = {
    "source": "iann0036/iam-dataset gcp/roles/*.json (MIT licence)",
    "commit": "2073fa52ac008a45477aa0b1b4580cd99135bf60",
    "snapshot": "2026-08-22",
    "extracted_by": "tests/data/extract_roles.py",
}


def granted_roles() -> set[str]:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    from access_model import SERVICE_AGENT_ROLES
    from pulumi_harness import CONFIGS, ENVIRONMENT_CONFIGS, run_program

    # Google grants its service agents these on the project; the model counts on them.
    roles: set[str] = set(SERVICE_AGENT_ROLES.values())
    for config in [*CONFIGS.values(), *ENVIRONMENT_CONFIGS.values()]:
        graph = run_program(config)
        # Custom roles (projects/P/roles/X) carry their permissions in the graph itself.
        roles |= {r.inputs["role"] for r in graph.resources
                  if "role" in r.inputs and r.inputs["role"].startswith("roles/")}
    return roles


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    with gzip.open(source, "rt") as handle:
        everything: dict[str, list[str]] = json.load(handle)
    roles = granted_roles()
    unknown = sorted(roles - set(everything))
    if unknown:
        print(f"error: not predefined roles in {source.name}: {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    data = {**PROVENANCE, "roles": {role: sorted(everything[role]) for role in sorted(roles)}}
    OUTPUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{OUTPUT.relative_to(ROOT)}: {len(roles)} roles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
