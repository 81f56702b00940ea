"""The preview refuses a stack file it cannot preview truthfully, and says everything at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.stack_file import problems, stack_file
from conftest import ROOT

KMS = "gcpkms://projects/acme-delivery/locations/europe-west1/keyRings/pulumi/cryptoKeys/state"
READY = {
    "secretsprovider": KMS,
    "encryptedkey": "CiQAkmQ3XK2dX0aWl3b0x5yQ==",
    "config": {"gcp:project": "acme-delivery", "gcp:region": "europe-west1",
               "gitops:githubAppInstallationId": "48151623",
               "gitops:githubTokenSecret": "github-oauth-token", "gitops:githubOwner": "acme",
               "gitops:deployer": "group:platform-admins@acme.example"},
}
PREVIEWS = [ROOT / "pipelines" / "preview.yaml", ROOT / "pipelines" / "preview-pulumi-cloud.yaml"]


def write(tmp_path: Path, document: dict, name: str = "Pulumi.dev.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


def check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components.stack_file", *args,
                           f"--root={cwd}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


class TestCommittedExample:
    """The committed Pulumi.dev.yaml is an example, and the preview's check says so."""

    def test_example_is_refused_for_each_reason(self) -> None:
        found = problems(ROOT / "Pulumi.dev.yaml", "gs://acme-delivery-pulumi-state")
        text = "; ".join(found)
        assert "committed example" in text
        assert "gcp:project = my-gitops-project" in text
        assert "gitops:githubAppInstallationId = 12345678" in text
        assert "gitops:githubOwner = my-org" in text
        assert "no secretsprovider" in text

    def test_cli_gives_one_error_line(self) -> None:
        proc = check("--stack=acme/gitops/dev", "--backend=https://api.pulumi.com", cwd=ROOT)
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: Pulumi.dev.yaml cannot be "
                                                       "previewed: ")


class TestStackFiles:
    """What passes is a real stack's file with the secrets provider the preview can use."""

    def test_ready_file_passes(self, tmp_path: Path) -> None:
        write(tmp_path, READY)
        proc = check("--stack=dev", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "Pulumi.dev.yaml: ready for preview"

    def test_fully_qualified_stack_names_the_file(self, tmp_path: Path) -> None:
        assert stack_file(tmp_path, "acme/gitops/prod") == tmp_path / "Pulumi.prod.yaml"

    def test_missing_file(self, tmp_path: Path) -> None:
        assert "is not committed" in problems(tmp_path / "Pulumi.dev.yaml")[0]

    @pytest.mark.parametrize("change,expected", [
        ({"secretsprovider": None}, "no secretsprovider"),
        ({"secretsprovider": None, "encryptionsalt": "v1:abc"}, "secretsprovider passphrase"),
        ({"secretsprovider": "passphrase"}, "secretsprovider passphrase"),
        ({"secretsprovider": KMS.replace("state", "other")}, "the key the preview identity"),
    ])
    def test_secrets_provider_with_gcs(self, tmp_path: Path, change: dict,
                                       expected: str) -> None:
        document = {k: v for k, v in {**READY, **change}.items() if v is not None}
        found = problems(write(tmp_path, document), "gs://acme-delivery-pulumi-state")
        assert len(found) == 1 and expected in found[0], found

    def test_configured_key_is_the_one_accepted(self, tmp_path: Path) -> None:
        other = KMS.replace("keyRings/pulumi", "keyRings/infra")
        document = {**READY, "secretsprovider": other,
                    "config": {**READY["config"], "gitops:secretsProvider": other}}
        assert problems(write(tmp_path, document)) == []

    def test_pulumi_cloud_needs_no_provider_line_but_refuses_a_passphrase(
            self, tmp_path: Path) -> None:
        config = {**READY["config"], "gitops:stateBackend": "https://api.pulumi.com",
                  "gitops:pulumiTokenSecret": "pulumi-token"}
        assert problems(write(tmp_path, {"config": config})) == []
        found = problems(write(tmp_path, {"config": config, "encryptionsalt": "v1:x"}))
        assert len(found) == 1 and "passphrase" in found[0]

    def test_invalid_config_is_reported_like_pulumi_up_would(self, tmp_path: Path) -> None:
        document = {**READY, "config": {**READY["config"], "gitops:clusterMode": "huge"}}
        found = problems(write(tmp_path, document))
        assert len(found) == 1 and "gitops:clusterMode" in found[0]

    def test_placeholder_in_a_member(self, tmp_path: Path) -> None:
        document = {**READY, "config": {**READY["config"],
                                        "gitops:deployer": "user:you@example.com"}}
        assert problems(write(tmp_path, document)) == [
            "example values left: gitops:deployer = user:you@example.com"]


class TestPreviewPipelines:
    """Both preview builds check the stack file before previewing, and let Pulumi reuse the
    state's secrets manager where the file's is missing or incomplete."""

    @pytest.mark.parametrize("path", PREVIEWS, ids=lambda p: p.name)
    def test_check_runs_first(self, path: Path) -> None:
        steps = {s["id"]: s for s in yaml.safe_load(path.read_text())["steps"]}
        check_step = steps["stack-file"]
        assert check_step["entrypoint"] == "python"
        assert check_step["args"] == ["-m", "components.stack_file", "--stack=${_STACK}",
                                      "--backend=${_STATE_BACKEND}"]
        assert "stack-file" in steps["preview"]["waitFor"]
        assert "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER=true" in steps["preview"]["env"]


def module_level_imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_check_runs_with_the_preview_images_python() -> None:
    """The check step runs before the project's venv exists, with the image's libraries."""
    from test_steps_image import distribution_of, normalized, requirements

    in_image = set(requirements(ROOT / "scripts" / "requirements.txt"))
    todo, seen, needed = [ROOT / "components" / "stack_file.py"], set(), set()
    while todo:
        path = todo.pop()
        seen.add(path)
        for module in module_level_imports(path):
            local = ROOT / (module.replace(".", "/") + ".py")
            if module.startswith("components."):
                if local not in seen:
                    todo.append(local)
            elif (dist := distribution_of(module)) is not None:
                needed.add(normalized(dist))
    assert needed and needed <= in_image, needed - in_image
