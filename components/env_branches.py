"""The env repo's `candidate` and `production` branches, created by `pulumi up`.

With `gitops:environments`, every environment's two branches, and the ordered environments
recorded on the `gitops-environments` branch (as `environments.json`), which the operator
commands (status, history, rollback, freeze) read to find an environment's branches. The
command runs again when the environments change.

A local command runs `scripts/init_branches.py` on the machine that runs Pulumi. The script only
creates missing branches and never rewrites one, so re-running it is harmless; it runs again
when the env repo URL changes.

How it authenticates, with no credential of the operator's own:
- GitHub: with the connection's short-lived token. The command names the env repo's linked
  repository (`GITOPS_GIT_TOKEN_REPOSITORY`); the script asks Cloud Build for a read/write token
  (`fetchReadWriteToken`) with the application-default credentials that Pulumi's Google provider
  uses too. The deployer holds `roles/cloudbuild.tokenAccessor` on the connection, granted by
  the program, and the command waits for that grant to propagate.
- CSR: through gcloud's credential helper; the deployer holds `roles/source.writer` on the env
  repo.

The command holds no path of this checkout: it runs from the project folder (it checks) with the
project's virtualenv (`.venv`, as Pulumi.yaml names it), so a preview or an `up` from another
clone sees no change.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.environments import EnvironmentConfig, environments_json

# Relative to the project folder, where Pulumi runs local commands.
PYTHON = ".venv/bin/python"
SCRIPT = "scripts/init_branches.py"
TOKEN_REPOSITORY_ENV = "GITOPS_GIT_TOKEN_REPOSITORY"  # read by the scripts (gitenv)
CSR_CREDENTIALS = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "credential.https://source.developers.google.com.helper",
    "GIT_CONFIG_VALUE_0": "gcloud.sh",
}


@dataclass
class EnvBranchesArgs:
    env_repo_url: pulumi.Input[str]
    source_provider: str
    depends_on: list[pulumi.Resource]
    # GitHub: the env repo's 2nd-gen repository id, whose connection token the script uses.
    env_repo_link: pulumi.Input[str] | None = None
    # Configured environments (None: the stack has only the implicit one, as before).
    environments: tuple[EnvironmentConfig, ...] | None = None


class EnvBranches(pulumi.ComponentResource):
    """Creates the missing env branches once the env repository exists and is writable."""

    def __init__(self, name: str, args: EnvBranchesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:EnvBranches", name, None, opts)
        environment: dict[str, pulumi.Input[str]]
        if args.source_provider == "github":
            if args.env_repo_link is None:
                raise ValueError("GitHub env branches need the env repo's linked repository")
            environment = {TOKEN_REPOSITORY_ENV: args.env_repo_link}
        else:
            environment = dict(CSR_CREDENTIALS)
        recorded = environments_json(args.environments) if args.environments else None
        self.command = command.local.Command(
            "init-env-branches",
            create=pulumi.Output.from_input(args.env_repo_url).apply(
                lambda url: init_command(url, recorded)),
            environment=environment,
            triggers=[args.env_repo_url, *([recorded] if recorded else [])],
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.register_outputs({"result": self.command.stdout})


def init_command(url: str, environments: str | None = None) -> str:
    """The shell command; `--repo` comes last (the access model reads the URL after it)."""
    options = f"--environments {shlex.quote(environments)} " if environments else ""
    return "\n".join([
        f'[ -f Pulumi.yaml ] && [ -x {PYTHON} ] || {{ echo "error: run pulumi from the project '
        f'folder, with its virtualenv {PYTHON} (make up creates it), not $(pwd)" >&2; exit 2; }}',
        f"{PYTHON} {SCRIPT} {options}--repo {shlex.quote(url)}",
    ])
