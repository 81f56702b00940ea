"""The commands `pulumi up` runs on the operator's machine, run here against a fake gcloud.

The scripts are the ones the program registers (taken from the resource graph under mocks) and
run the way the command provider runs them (`/bin/sh -c`), in a project folder of their own.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from program_graphs import graph_of
from pulumi_harness import Graph

COMMAND = "command:local:Command"
TOKEN = "ya29.a0-fake-adc-token"
FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"args": args,
                          "token": os.environ.get("CLOUDSDK_AUTH_ACCESS_TOKEN")}}) + "\\n")
if args[:3] == ["auth", "application-default", "print-access-token"]:
    if os.environ.get("FAKE_NO_ADC"):
        print("ERROR: (gcloud.auth.application-default.print-access-token) Could not "
              "automatically determine credentials.", file=sys.stderr)
        sys.exit(1)
    print("{TOKEN}")
elif args[:2] == ["builds", "submit"]:
    print("Created [https://cloudbuild.googleapis.com/v1/projects/p/builds/b-42].",
          file=sys.stderr)
    print("b-42")
elif args[:3] == ["beta", "builds", "log"]:
    sys.exit(int(os.environ.get("FAKE_BETA_RC", "0")))
elif args[:2] == ["builds", "describe"]:
    print(os.environ["FAKE_STATUS"])
"""


@pytest.fixture(scope="module")
def graph() -> Graph:
    return graph_of("csr")


def project_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "scripts").mkdir()
    (folder / "Pulumi.yaml").write_text("name: gitops\n")
    (folder / "pipelines" / "steps-image.yaml").write_text("steps: []\n")
    return folder


def run(script: str, cwd: Path, tmp_path: Path, **fake: str) -> tuple[int, str, str,
                                                                        list[dict[str, Any]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           **fake}
    env.pop("CLOUDSDK_AUTH_ACCESS_TOKEN", None)
    proc = subprocess.run(["/bin/sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, proc.stdout, proc.stderr, calls


class TestPathIndependent:
    """No command input holds a path of this checkout or this Python: another clone (or Cloud
    Build's /workspace) previews no change and re-runs nothing."""

    def test_inputs_hold_no_local_path(self, graph: Graph) -> None:
        commands = graph.of_type(COMMAND)
        assert {c.name for c in commands} == {"build-steps-image", "init-env-branches"}
        local = {str(ROOT), sys.executable, sys.prefix, sys.base_prefix, str(Path.home())}
        for command in commands:
            assert "dir" not in command.inputs, command.name
            text = json.dumps(command.inputs)
            assert not [p for p in local if p in text], (command.name, text)

    def test_steps_build_refuses_to_run_outside_the_project(self, graph: Graph,
                                                            tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        code, _, err, calls = run(graph.named("build-steps-image").inputs["create"], elsewhere,
                                  tmp_path, FAKE_STATUS="SUCCESS")
        assert code == 2 and err.strip().startswith("error: run pulumi from the project folder")
        assert calls == []

    def test_branches_use_the_projects_venv(self, graph: Graph, tmp_path: Path) -> None:
        script = graph.named("init-env-branches").inputs["create"]
        folder = project_folder(tmp_path)
        code, _, err, _ = run(script, folder, tmp_path)
        assert code == 2 and ".venv/bin/python" in err
        python = folder / ".venv" / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text("#!/bin/sh\necho \"ran $*\"\n")
        python.chmod(0o755)
        code, out, _, _ = run(script, folder, tmp_path)
        assert code == 0
        assert out.split() == ["ran", "scripts/init_branches.py", "--repo",
                               "https://source.developers.google.com/p/acme-delivery/r/"
                               "gitops-env"]


class TestStepsImageBuild:
    """The steps image build runs as the application-default identity, waits for the result,
    and on failure says where its Cloud Logging log is."""

    def test_success(self, graph: Graph, tmp_path: Path) -> None:
        code, out, err, calls = run(graph.named("build-steps-image").inputs["create"],
                                    project_folder(tmp_path), tmp_path, FAKE_STATUS="SUCCESS")
        assert code == 0, err
        assert [c["args"][:3] for c in calls] == [
            ["auth", "application-default", "print-access-token"],
            ["builds", "submit", "scripts"], ["beta", "builds", "log"],
            ["builds", "describe", "b-42"]]
        assert "steps image build b-42" in out

    def test_one_identity_and_the_token_only_in_the_environment(self, graph: Graph,
                                                                tmp_path: Path) -> None:
        _, out, err, calls = run(graph.named("build-steps-image").inputs["create"],
                                 project_folder(tmp_path), tmp_path, FAKE_STATUS="SUCCESS")
        assert all(c["token"] == TOKEN for c in calls[1:]), "every call after the token uses it"
        assert not any(TOKEN in arg for c in calls for arg in c["args"])
        assert TOKEN not in out + err

    def test_failure_says_where_the_log_is(self, graph: Graph, tmp_path: Path) -> None:
        code, _, err, _ = run(graph.named("build-steps-image").inputs["create"],
                              project_folder(tmp_path), tmp_path, FAKE_STATUS="FAILURE",
                              FAKE_BETA_RC="1")
        assert code == 1
        last = err.strip().splitlines()[-1]
        assert last == (
            "error: steps image build b-42 ended FAILURE; read its log with: gcloud beta builds "
            "log b-42 --project=acme-delivery --region=europe-west1 (or https://console.cloud."
            "google.com/cloud-build/builds;region=europe-west1/b-42?project=acme-delivery)")

    def test_no_application_default_credentials(self, graph: Graph, tmp_path: Path) -> None:
        code, _, err, calls = run(graph.named("build-steps-image").inputs["create"],
                                  project_folder(tmp_path), tmp_path, FAKE_STATUS="SUCCESS",
                                  FAKE_NO_ADC="1")
        assert code == 2
        assert "gcloud auth application-default login" in err.strip().splitlines()[-1]
        assert [c["args"][0] for c in calls] == ["auth"]
