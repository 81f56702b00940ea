"""A fake cloud for the setup tools (tools/*.py): fake CLIs on an otherwise empty PATH, a world
they answer from, and the record of every call."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
FAKE = Path(__file__).with_name("fake_cloud.py")
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
PROGRAMS = ("pulumi", "gcloud", "git", "gke-gcloud-auth-plugin")

PROJECT = "acme-delivery-prod"
REGION = "europe-west1"
BACKEND = f"gs://{PROJECT}-pulumi-state"
OWNER = "acme-platform"
GOOD_CONFIG = {
    "gcp:project": PROJECT,
    "gcp:region": REGION,
    "gitops:deployer": "user:operator@acme.example",
    "gitops:githubAppInstallationId": "48151623",
    "gitops:githubTokenSecret": "github-oauth-token",
    "gitops:githubOwner": OWNER,
}
CLUSTER_URN = ("urn:pulumi:dev::gitops::gitops:index:GkeCluster$gcp:container/cluster:"
               "Cluster::cluster")
ENV_REPO_URN = ("urn:pulumi:dev::gitops::gitops:index:SourceRepositories$gcp:sourcerepo/"
                "repository:Repository::repo-env")


def repo_url(name: str) -> str:
    return f"https://github.com/{OWNER}/{name}.git"


def ready_world() -> dict[str, Any]:
    """Everything `make up` needs is in place (GitHub provider)."""
    return {
        "pulumi_version": "v3.272.0",
        "account": "operator@acme.example",
        "adc": True,
        "backend": BACKEND,
        "selected_stack": "dev",
        "stacks": {"dev": {"secrets_provider": "gcpkms://...", "config": dict(GOOD_CONFIG),
                           "resources": []}},
        "secrets": ["github-oauth-token"],
        "git_helper": "!gh auth git-credential",
        "github_repos": {repo_url("gitops-env"): [], repo_url("gitops-infra"): ["main"],
                         repo_url("hello"): ["main"]},
    }


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


class FakeCloud:
    def __init__(self, folder: Path, world: dict[str, Any], without: tuple[str, ...] = ()):
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir(parents=True)
        source = FAKE.read_text()
        for program in PROGRAMS:
            if program in without:
                continue
            path = self.bin / program
            # -I -S: no site, no user environment: a fake starts in a few milliseconds.
            path.write_text(f"#!{sys.executable} -IS\n{source}")
            path.chmod(0o755)
        self.world_file = folder / "world.json"
        self.world_file.write_text(json.dumps(world))

    @property
    def world(self) -> dict[str, Any]:
        return json.loads(self.world_file.read_text())

    def environment(self, extra_env: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a tool run: the fakes are all there is on PATH."""
        return {"PATH": str(self.bin), "FAKE_CLOUD_DIR": str(self.folder),
                "HOME": str(self.folder), "LANG": "C.UTF-8", **(extra_env or {})}

    def run(self, tool: str, *args: str, extra_env: dict[str, str] | None = None) -> Run:
        """Run tools/<tool>.py's main() in this process (the fakes are still processes), with
        exactly this environment; `python tools/<tool>.py` itself is run by run_script."""
        module = importlib.import_module(tool)
        saved = dict(os.environ)
        out, err = io.StringIO(), io.StringIO()
        try:
            os.environ.clear()
            os.environ.update(self.environment(extra_env))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = module.main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return Run(code, out.getvalue(), err.getvalue())

    def run_script(self, tool: str, *args: str) -> Run:
        """`python tools/<tool>.py` as `make` runs it: with the interpreter the virtualenv was
        made from, without site-packages (-S): only the standard library is importable."""
        base = getattr(sys, "_base_executable", sys.executable)
        proc = subprocess.run([base, "-E", "-S", str(TOOLS / f"{tool}.py"), *args],
                              capture_output=True, text=True, env=self.environment(),
                              timeout=60, cwd=self.folder, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def calls(self, program: str | None = None) -> list[list[str]]:
        log = self.folder / "calls.jsonl"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return [c for c in calls if program is None or c[0] == program]

    def clear_calls(self) -> None:
        (self.folder / "calls.jsonl").unlink(missing_ok=True)


def world_with(**changes: Any) -> dict[str, Any]:
    world = copy.deepcopy(ready_world())
    world.update(changes)
    return world

