"""Vendor the CLI commands the docs and the setup tools use, with their flags, into
cli-reference.json, so the docs test can check every cloud command without the cloud, and on a
machine (CI) that has neither gcloud, kubectl nor pulumi.

    python tests/data/extract_cli_reference.py

- gcloud: from the installed Google Cloud SDK's own static command tree
  (`<sdk>/data/cli/gcloud_completions.py`, the tree its shell completion uses): for each command
  path used, its flags, plus the gcloud-wide flags.
- kubectl: from `kubectl <command> --help` and `kubectl options` of the installed kubectl.
- pulumi: not installable here; the commands and flags below are transcribed from Pulumi's CLI
  reference pages (https://www.pulumi.com/docs/iac/cli/commands/pulumi_<command>/, read
  2026-11-29), one URL per command.

Re-run it (on a machine with gcloud and kubectl) when the docs or tools use a new command; the
docs test says so until then.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "cli-reference.json"
sys.path.insert(0, str(HERE.parent))

from doc_commands import all_commands  # noqa: E402

# Commands the setup tools run or print (tools/*.py), beyond those in the docs.
TOOL_COMMANDS = (
    "auth list", "auth application-default print-access-token", "services list",
    "services enable", "storage buckets describe", "storage buckets create",
    "storage buckets update", "storage rm", "kms keyrings describe", "kms keyrings create",
    "kms keys describe", "kms keys create", "kms keys versions destroy", "secrets describe",
    "secrets create", "secrets delete", "compute forwarding-rules list",
    "compute forwarding-rules delete", "builds list", "builds triggers run",
    "secrets versions list",
)
PULUMI_DOCS = "https://www.pulumi.com/docs/iac/cli/commands/pulumi_{}/"
# Only what the docs and tools use (a flag or command not listed fails the docs test).
PULUMI: dict[str, list[str]] = {
    "version": [],
    "whoami": ["--verbose", "-v"],
    "login": [],
    "up": ["--target", "--yes", "-y"],
    "preview": [],
    "destroy": ["--exclude-protected", "--yes", "-y"],
    "config": ["--json", "--show-secrets"],
    "config get": [],
    "config set": ["--path", "--secret"],
    "stack": ["--show-name", "--show-urns"],
    "stack init": ["--secrets-provider"],
    "stack select": [],
    "stack output": ["--json", "--show-secrets"],
    "stack export": [],
    "stack rm": [],
    "stack change-secrets-provider": [],
    "state unprotect": [],
}
PULUMI_GLOBAL = ["--cwd", "-C", "--stack", "-s", "--non-interactive", "--color", "--help", "-h"]


def gcloud_tree() -> dict[str, Any]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise SystemExit("error: gcloud is not installed here; run this where it is")
    sdk = Path(gcloud).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        "gcloud_completions", sdk / "data" / "cli" / "gcloud_completions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STATIC_COMPLETION_CLI_TREE  # type: ignore[no-any-return]


def command_path(tree: dict[str, Any], words: list[str]) -> str:
    node, path = tree, []
    for word in words:
        if word in node["commands"]:
            node = node["commands"][word]
            path.append(word)
        elif not word.startswith("-"):
            break
    return " ".join(path)


def gcloud_section() -> dict[str, Any]:
    tree = gcloud_tree()
    version = subprocess.run(["gcloud", "version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[0]
    paths = set(TOOL_COMMANDS)
    paths |= {command_path(tree, list(c.words[1:])) for c in all_commands()
              if c.words[0] == "gcloud"}
    commands = {}
    for path in sorted(paths):
        node = tree
        for word in path.split():
            node = node["commands"][word]
        commands[path] = sorted(node["flags"])
    return {"source": f"{version}: data/cli/gcloud_completions.py", "global_flags":
            sorted(tree["flags"]), "commands": commands}


def kubectl_flags(*args: str) -> list[str]:
    """The short and long flags in the Options section of a kubectl help text."""
    text = subprocess.run(["kubectl", *args], capture_output=True, text=True,
                          check=True).stdout
    flags: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"^\s+(?:(-\w), )?(--[\w-]+)", line)
        if match:
            flags.update(flag for flag in match.groups() if flag)
    return sorted(flags)


def kubectl_section() -> dict[str, Any]:
    version = subprocess.run(["kubectl", "version", "--client"], capture_output=True,
                             text=True, check=True).stdout.splitlines()[0]
    used = {c.words[i] for c in all_commands() if c.words[0] == "kubectl"
            for i in range(1, len(c.words)) if not c.words[i].startswith("-")
            and c.words[i - 1] not in ("-n", "--namespace", "--kubeconfig")}
    verbs = sorted(used & {"get", "describe", "logs", "apply", "rollout", "delete", "config"})
    return {"source": f"{version}: kubectl <command> --help, kubectl options",
            "global_flags": kubectl_flags("options"),
            "commands": {verb: kubectl_flags(verb, "--help") for verb in verbs}}


def main() -> None:
    reference = {
        "gcloud": gcloud_section(),
        "kubectl": kubectl_section(),
        "pulumi": {"source": "Pulumi CLI reference, " + PULUMI_DOCS.format("<command>") +
                   " (read 2026-11-29)", "global_flags": PULUMI_GLOBAL,
                   "commands": {path: sorted(flags) for path, flags in PULUMI.items()}},
        "extracted_by": "tests/data/extract_cli_reference.py",
    }
    OUTPUT.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT}: {len(reference['gcloud']['commands'])} gcloud, "
          f"{len(reference['kubectl']['commands'])} kubectl, "
          f"{len(reference['pulumi']['commands'])} pulumi commands")


if __name__ == "__main__":
    main()
