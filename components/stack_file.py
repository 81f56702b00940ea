"""Is this stack file fit for an unattended `pulumi preview`? Run by the preview build first.

    python -m components.stack_file --stack STACK [--backend URL] [--root DIR]

The preview build reads `Pulumi.<stack>.yaml` from the infra repo, so what it previews is what
was committed, not what the operator has locally. It refuses, with one `error:` line (exit 2),
a file that would make the preview plan against the wrong project or fail half-way:

- the committed example (`# gitops:example` marks it; Pulumi drops comments when it rewrites the
  file, so the marker goes with the first `pulumi config set`), and any example value left in
  it (`my-gitops-project`, `12345678`, `my-org`, ...): the policies would pass while the plan
  targets a project that is not yours;
- config the program itself rejects (the same validation as `pulumi up`);
- no `secretsprovider` (or a passphrase one) with a GCS backend: Pulumi would fall back to a
  passphrase, which `--non-interactive` cannot ask for; and a provider other than the one the
  preview identity may decrypt with (`gitops:secretsProvider`). With Pulumi Cloud the default,
  service-managed provider needs no line; the preview steps also set
  `PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER=true`, Pulumi's documented switch to reuse the
  secrets manager recorded in the state when the file's is missing or incomplete.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from components.config import ConfigError, parse_config

EXAMPLE_MARKER = re.compile(r"^#\s*gitops:example\b", re.M)
# The values the committed example and the docs use; none can be a real stack's.
EXAMPLE_VALUES = frozenset({"my-gitops-project", "my-project-id", "12345678", "my-org",
                            "you@example.com", "PROJECT", "REGION"})
TOKEN = re.compile(r"[^/:,\s]+")


def stack_file(root: Path, stack: str) -> Path:
    """`org/project/stack` or `stack` -> root/Pulumi.<stack>.yaml."""
    return root / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def values(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from values(value, f"{path}[{index}]")
    elif node is not None:
        yield path, str(node)


def placeholders(document: dict[str, Any]) -> list[str]:
    found = []
    for path, value in values({"config": document.get("config") or {},
                               "secretsprovider": document.get("secretsprovider")}, ""):
        if set(TOKEN.findall(value)) & EXAMPLE_VALUES or value in EXAMPLE_VALUES:
            found.append(f"{path.removeprefix('config.')} = {value}")
    return found


def problems(path: Path, backend: str | None = None) -> list[str]:
    """Everything that stops this stack file from being previewed, in one list."""
    if not path.is_file():
        return [f"{path.name} is not committed: commit it after `pulumi stack init` and after "
                f"every `pulumi config set`"]
    text = path.read_text()
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        return [f"{path.name} is not YAML: {' '.join(str(error).split())}"]
    found = []
    if EXAMPLE_MARKER.search(text):
        found.append("it is the committed example (`# gitops:example`): run `pulumi config "
                     "set` for your stack and commit the file Pulumi writes")
    example = placeholders(document)
    if example:
        found.append(f"example values left: {', '.join(example)}")
    config = document.get("config") or {}
    try:
        settings = parse_config(config)
    except ConfigError as error:
        found.append(str(error))
        return found
    backend = backend or settings.state_backend
    provider = document.get("secretsprovider")
    if provider is None and "encryptionsalt" in document:
        provider = "passphrase"
    if backend.startswith("gs://"):
        if not provider:
            found.append(f"no secretsprovider: Pulumi would fall back to a passphrase, which a "
                         f"non-interactive preview cannot ask for; run `pulumi stack "
                         f"change-secrets-provider {settings.secrets_provider}` and commit")
        elif provider != settings.secrets_provider:
            found.append(f"secretsprovider {provider} is not gitops:secretsProvider "
                         f"({settings.secrets_provider}), the key the preview identity may "
                         f"decrypt with")
    elif provider not in (None, "default", "service"):
        found.append(f"secretsprovider {provider} with Pulumi Cloud: the preview has no "
                     f"passphrase or key for it; use the default (service) provider")
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.stack_file",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name, or org/project/stack")
    parser.add_argument("--backend", help="state backend (default: the file's "
                        "gitops:stateBackend)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project folder")
    args = parser.parse_args(argv)
    path = stack_file(args.root, args.stack)
    found = problems(path, args.backend)
    if found:
        print(f"error: {path.name} cannot be previewed: {'; '.join(found)}", file=sys.stderr)
        return 2
    print(f"{path.name}: ready for preview")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
