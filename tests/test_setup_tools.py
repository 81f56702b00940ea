"""The setup tools (preflight, bootstrap, teardown) against fake CLIs on an otherwise empty PATH:
what they say, what they run, and in which order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloud_world import (
    BACKEND,
    CLUSTER_URN,
    ENV_REPO_URN,
    GOOD_CONFIG,
    PROJECT,
    REGION,
    FakeCloud,
    Run,
    ready_world,
    repo_url,
    world_with,
)
from fake_cloud import FAKE_ADC_TOKEN
from pulumi_harness import SIGNERS

MUTATING = re.compile(r"\b(create|enable|update|set|login|init|up|destroy|select)\b")


def lines_of(run: Run) -> dict[str, str]:
    """Check name -> its status line (ok/FAIL/SKIP and detail) from preflight's report."""
    found = {}
    for line in run.stdout.splitlines():
        match = re.match(r"\s+(ok  |FAIL|SKIP)  ([^:]+): (.*)", line)
        if match:
            found[match.group(2)] = f"{match.group(1).strip()} {match.group(3)}"
    return found


def fix_after(run: Run, check: str) -> str:
    """The indented lines printed under one check."""
    out = run.stdout.splitlines()
    start = next(i for i, line in enumerate(out) if re.match(rf"\s+\w+\s+{re.escape(check)}:",
                                                              line))
    block = []
    for line in out[start + 1:]:
        if not line.startswith("        "):
            break
        block.append(line.strip())
    return "\n".join(block)


def preflight(tmp_path: Path, world: dict[str, Any], *args: str,
              without: tuple[str, ...] = (), env: dict[str, str] | None = None
              ) -> tuple[Run, FakeCloud]:
    cloud = FakeCloud(tmp_path, world, without=without)
    return cloud.run("preflight", *args, extra_env=env), cloud


def assert_changed_nothing(cloud: FakeCloud) -> None:
    for call in cloud.calls():
        assert not (call[0] == "pulumi" and MUTATING.search(" ".join(call[1:3]))), call
        assert not (call[0] == "gcloud" and re.search(r"\b(create|enable|update)\b",
                                                      " ".join(call[1:4]))), call


class TestPreflight:
    """Every prerequisite of `make up` is checked before anything is created; each failure says
    what to run; nothing is changed; credentials never reach the output."""

    def test_all_good(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, ready_world())
        run = cloud.run_script("preflight")  # as `make up` runs it, before any install
        assert run.code == 0, run.stdout + run.stderr
        assert "All 15 prerequisites met." in run.stdout
        assert all(status.startswith("ok") for status in lines_of(run).values())
        assert FAKE_ADC_TOKEN not in run.stdout + run.stderr
        assert_changed_nothing(cloud)

    def test_nothing_installed(self, tmp_path: Path) -> None:
        run, cloud = preflight(tmp_path, ready_world(), without=("pulumi", "gcloud", "git",
                                                                  "gke-gcloud-auth-plugin"))
        assert run.code == 2
        status = lines_of(run)
        assert status["Pulumi CLI"] == "FAIL `pulumi` is not on PATH"
        assert "https://get.pulumi.com" in fix_after(run, "Pulumi CLI")
        assert status["gcloud login"] == "FAIL `gcloud` is not on PATH"
        assert "cloud.google.com/sdk/docs/install" in fix_after(run, "gcloud login")
        assert status["gke-gcloud-auth-plugin"].startswith("FAIL not on PATH")
        assert "gcloud components install gke-gcloud-auth-plugin" in fix_after(
            run, "gke-gcloud-auth-plugin")
        assert status["git"] == "FAIL not on PATH"
        for later in ("application-default credentials", "Pulumi state backend",
                      "selected stack", "stack config"):
            assert status[later].startswith("SKIP not checked yet"), later
        assert run.stderr.strip() == ("error: 4 prerequisites not met (4 more checked once "
                                      "those pass); nothing was created. Fix them and run "
                                      "`make up` again.")
        assert cloud.calls() == []

    def test_old_cli_and_logged_out(self, tmp_path: Path) -> None:
        world = world_with(pulumi_version="v3.99.1", account="", adc=False, backend=None)
        run, cloud = preflight(tmp_path, world)
        status = lines_of(run)
        assert run.code == 2
        assert status["Pulumi CLI"].startswith("FAIL Pulumi CLI 3.99.1 (need 3.272.0 or newer")
        assert status["gcloud login"] == "FAIL no active gcloud account"
        assert fix_after(run, "gcloud login") == "fix: gcloud auth login"
        assert status["application-default credentials"].startswith(
            "FAIL not usable: ERROR: (gcloud.auth.application-default.print-access-token)")
        assert fix_after(run, "application-default credentials") == \
            "fix: gcloud auth application-default login"
        assert status["Pulumi state backend"].startswith("SKIP")  # the CLI is too old
        assert_changed_nothing(cloud)

    def test_not_logged_in_to_a_backend(self, tmp_path: Path) -> None:
        run, cloud = preflight(tmp_path, world_with(backend=None))
        status = lines_of(run)
        assert status["Pulumi state backend"].startswith(
            "FAIL not logged in: error: PULUMI_ACCESS_TOKEN must be set")
        assert "make bootstrap PROJECT=<your project id> REGION=<region>" in fix_after(
            run, "Pulumi state backend")
        assert status["selected stack"].startswith("SKIP")
        assert run.code == 2
        assert_changed_nothing(cloud)

    def test_no_stack_selected(self, tmp_path: Path) -> None:
        run, cloud = preflight(tmp_path, world_with(selected_stack=None))
        status = lines_of(run)
        assert status["selected stack"].startswith("FAIL none: error: no stack selected")
        assert "pulumi stack select dev" in fix_after(run, "selected stack")
        assert status["stack config"].startswith("SKIP")
        assert run.code == 2
        assert_changed_nothing(cloud)

    def test_example_and_missing_values_in_one_message(self, tmp_path: Path) -> None:
        world = ready_world()
        world["stacks"]["dev"]["config"] = {
            "gcp:project": "my-gitops-project", "gcp:region": "europe-west1",
            "gitops:deployer": "user:you@example.com",
            "gitops:githubAppInstallationId": "12345678", "gitops:githubOwner": "my-org"}
        run, cloud = preflight(tmp_path, world)
        assert run.code == 2
        assert lines_of(run)["stack config (dev)"] == "FAIL 5 values to fix"
        assert fix_after(run, "stack config (dev)").splitlines() == [
            "- gcp:project is the example value 'my-gitops-project': pulumi config set "
            "gcp:project <your project id>",
            "- gitops:deployer is the example value 'user:you@example.com': pulumi config set "
            "gitops:deployer user:<your email>",
            "- gitops:githubAppInstallationId is the example value '12345678': pulumi config "
            "set gitops:githubAppInstallationId <installation id: the number at the end of "
            "https://github.com/settings/installations/...>",
            "- gitops:githubTokenSecret is missing (needed because gitops:sourceProvider is "
            "github): pulumi config set gitops:githubTokenSecret github-token",
            "- gitops:githubOwner is the example value 'my-org': pulumi config set "
            "gitops:githubOwner <GitHub organisation or user owning the repositories>",
        ]
        assert_changed_nothing(cloud)

    def test_csr_needs_project_region_and_deployer(self, tmp_path: Path) -> None:
        world = ready_world()
        world["stacks"]["dev"]["config"] = {"gitops:sourceProvider": "csr"}
        run, _ = preflight(tmp_path, world)
        assert fix_after(run, "stack config (dev)").splitlines() == [
            "- gcp:project is missing: pulumi config set gcp:project <your project id>",
            "- gcp:region is missing: pulumi config set gcp:region europe-west1",
            "- gitops:deployer is missing: pulumi config set gitops:deployer user:<your email>"]

    def test_value_the_model_rejects(self, tmp_path: Path) -> None:
        world = ready_world()
        world["stacks"]["dev"]["config"]["gitops:clusterMode"] = "serverless"
        run, _ = preflight(tmp_path, world)
        assert run.code == 2
        assert fix_after(run, "stack config (dev)") == (
            "fix: config gitops:clusterMode must be one of autopilot, standard, not "
            "'serverless': set it with: pulumi config set gitops:clusterMode autopilot")

    def test_backend_differs_from_config(self, tmp_path: Path) -> None:
        run, _ = preflight(tmp_path, world_with(backend="gs://someone-elses-state"))
        status = lines_of(run)
        assert status["state backend in config"] == (
            f"FAIL logged in to gs://someone-elses-state, but gitops:stateBackend is {BACKEND} "
            "(the preview build would look for state there)")
        assert fix_after(run, "state backend in config") == \
            "fix: pulumi config set gitops:stateBackend gs://someone-elses-state"
        assert run.code == 2

    def test_github_path(self, tmp_path: Path) -> None:
        world = world_with(secrets=[], github_repos={repo_url("gitops-infra"): [],
                                                     repo_url("hello"): ["main"]})
        run, cloud = preflight(tmp_path, world)
        status = lines_of(run)
        assert status["GitHub token secret"].startswith(
            "FAIL secret github-oauth-token not readable: ERROR: (gcloud.secrets.describe) "
            "NOT_FOUND")
        assert fix_after(run, "GitHub token secret") == (
            f'fix: printf %s "$GITHUB_TOKEN" | gcloud secrets create github-oauth-token '
            f"--data-file=- --project={PROJECT}  (token scopes: docs/quickstart.md)")
        assert status["GitHub env repo"].startswith(
            "FAIL acme-platform/gitops-env not reachable: remote: Repository not found.")
        assert "create https://github.com/acme-platform/gitops-env" in fix_after(
            run, "GitHub env repo")
        assert status["GitHub app repo (hello)"] == "ok acme-platform/hello answers"
        assert status["infra repo content"] == "ok empty for now"
        assert "push this project (with your Pulumi.<stack>.yaml)" in fix_after(
            run, "infra repo content")
        assert run.code == 2
        assert_changed_nothing(cloud)

    def test_private_repositories_without_credentials(self, tmp_path: Path) -> None:
        """Without git credentials a private repository answers like a missing one: it is
        reported as not verified, not as missing, and does not block `make up`."""
        run, _ = preflight(tmp_path, world_with(git_helper=None, github_repos={}))
        assert run.code == 0, run.stdout
        assert lines_of(run)["GitHub env repo"] == (
            "ok acme-platform/gitops-env: not verified (no git credentials for github.com "
            "here; set GITOPS_GIT_TOKEN to check private repositories)")
        assert fix_after(run, "GitHub env repo").startswith(
            "note: make sure it exists: create https://github.com/acme-platform/gitops-env")

    def test_token_is_used_and_never_printed(self, tmp_path: Path) -> None:
        token = "ghp_0123456789abcdefTOKENTOKEN"
        run, cloud = preflight(tmp_path, world_with(git_helper=None),
                               env={"GITOPS_GIT_TOKEN": token})
        assert run.code == 0, run.stdout
        assert lines_of(run)["GitHub env repo"] == "ok acme-platform/gitops-env answers"
        assert token not in run.stdout + run.stderr
        assert all(token not in " ".join(call) for call in cloud.calls())

    def test_deployer_must_be_who_runs_up(self, tmp_path: Path) -> None:
        world = ready_world()
        world["stacks"]["dev"]["config"]["gitops:deployer"] = "user:former-admin@acme.example"
        run, _ = preflight(tmp_path, world)
        assert run.code == 2
        assert lines_of(run)["deployer"] == (
            "FAIL gitops:deployer is user:former-admin@acme.example but gcloud is logged in as "
            "operator@acme.example: the grants `pulumi up` relies on go to the deployer")
        assert fix_after(run, "deployer").startswith(
            "fix: pulumi config set gitops:deployer user:operator@acme.example")

    def test_signing_keys_need_versions_the_operator_adds(self, tmp_path: Path) -> None:
        """With gitops:signers the key secrets need a version: before the first `make up`
        (no secret yet) that is a note; afterwards a secret without one fails the check."""
        world = ready_world()
        world["stacks"]["dev"]["config"]["gitops:signers"] = json.dumps(SIGNERS)
        world["secrets"] += ["gitops-signing-key-delivery"]
        world["secret_versions"] = {"gitops-signing-key-delivery": 0}
        run, cloud = preflight(tmp_path, world)
        status = lines_of(run)
        assert status["signing key (ci)"] == (
            "ok secret gitops-signing-key-ci is created by this `make up`")
        assert fix_after(run, "signing key (ci)") == (
            "note: then add the key, or ci builds fail at their start: gcloud secrets versions "
            f"add gitops-signing-key-ci --data-file=ci_signing --project={PROJECT}  "
            "(docs/supply-chain.md)")
        assert status["signing key (delivery)"] == (
            "FAIL secret gitops-signing-key-delivery has no enabled version: delivery builds "
            "fail at their start until it has one")
        assert run.code == 2
        assert_changed_nothing(cloud)
        world["secret_versions"]["gitops-signing-key-delivery"] = 2
        run, _ = preflight(tmp_path / "with-versions", world)
        assert lines_of(run)["signing key (delivery)"] == (
            "ok secret gitops-signing-key-delivery has an enabled version")
        assert run.code == 0, run.stdout

    def test_for_destroy_needs_no_config(self, tmp_path: Path) -> None:
        world = ready_world()
        world["stacks"]["dev"]["config"] = {"gcp:project": "my-gitops-project"}
        run, _ = preflight(tmp_path, world, "--for", "destroy")
        assert run.code == 0, run.stdout
        assert "stack config" not in run.stdout


BOOTSTRAP = ("--project", PROJECT, "--region", REGION)
KMS_WHERE = [f"--location={REGION}", f"--project={PROJECT}"]
FIRST_RUN = [
    ["gcloud", "services", "list", "--enabled", f"--project={PROJECT}",
     "--format=value(config.name)"],
    ["gcloud", "services", "enable", "storage.googleapis.com", "cloudkms.googleapis.com",
     f"--project={PROJECT}"],
    ["gcloud", "storage", "buckets", "describe", BACKEND, f"--project={PROJECT}",
     "--format=json"],
    ["gcloud", "storage", "buckets", "create", BACKEND, f"--project={PROJECT}",
     f"--location={REGION}", "--uniform-bucket-level-access", "--public-access-prevention"],
    ["gcloud", "storage", "buckets", "update", BACKEND, "--versioning"],
    ["gcloud", "kms", "keyrings", "describe", "pulumi", *KMS_WHERE, "--format=value(name)"],
    ["gcloud", "kms", "keyrings", "create", "pulumi", *KMS_WHERE],
    ["gcloud", "kms", "keys", "describe", "state", "--keyring=pulumi", *KMS_WHERE,
     "--format=value(primary.state)"],
    ["gcloud", "kms", "keys", "create", "state", "--keyring=pulumi", *KMS_WHERE,
     "--purpose=encryption"],
    ["pulumi", "login", BACKEND],
    ["pulumi", "stack", "select", "dev"],
    ["pulumi", "stack", "init", "dev", f"--secrets-provider=gcpkms://projects/{PROJECT}/"
     f"locations/{REGION}/keyRings/pulumi/cryptoKeys/state"],
    ["pulumi", "config", "set", "gcp:project", PROJECT],
    ["pulumi", "config", "set", "gcp:region", REGION],
]


def fresh_project() -> dict[str, Any]:
    """A project with gcloud and ADC logins and nothing else."""
    return {"pulumi_version": "v3.272.0", "account": "operator@acme.example", "adc": True}


def bootstrap_calls(cloud: FakeCloud) -> list[list[str]]:
    """The calls after the login checks the tool makes first."""
    skip = (["pulumi", "version"], ["gcloud", "auth"])
    return [c for c in cloud.calls() if c[:2] != skip[0] and c[:2] != skip[1]]


class TestBootstrap:
    """The state backend is created once, describe before create, and reused on every later
    run; bad input does nothing."""

    def test_first_run_creates_second_run_reuses(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, fresh_project())
        first = cloud.run("bootstrap", *BOOTSTRAP)
        assert first.code == 0, first.stdout + first.stderr
        assert bootstrap_calls(cloud) == FIRST_RUN
        assert first.stdout.splitlines()[:9] == [
            "enabled storage.googleapis.com, cloudkms.googleapis.com",
            f"created bucket {BACKEND} in {REGION}",
            f"turned on object versioning on {BACKEND}",
            f"created key ring pulumi in {REGION}",
            "created key state",
            f"logged in to {BACKEND}",
            f"created stack dev (secrets: gcpkms://projects/{PROJECT}/locations/{REGION}/"
            "keyRings/pulumi/cryptoKeys/state)",
            f"set gcp:project={PROJECT}, gcp:region={REGION}",
            "Done. Next: set the GitHub keys if you use GitHub (docs/quickstart.md), then "
            "`make preview` and `make up`.",
        ]
        world = cloud.world
        assert world["buckets"][BACKEND] == {"location": REGION, "versioning_enabled": True}
        assert world["stacks"]["dev"]["config"] == {"gcp:project": PROJECT, "gcp:region": REGION}

        cloud.clear_calls()
        second = cloud.run("bootstrap", *BOOTSTRAP)
        assert second.code == 0, second.stderr
        assert bootstrap_calls(cloud) == [FIRST_RUN[0], FIRST_RUN[2], FIRST_RUN[5],
                                          FIRST_RUN[7], FIRST_RUN[9], FIRST_RUN[10],
                                          *FIRST_RUN[12:]]
        assert second.stdout.splitlines()[:7] == [
            "reused APIs storage.googleapis.com, cloudkms.googleapis.com (already enabled)",
            f"reused bucket {BACKEND}", f"reused object versioning on {BACKEND}",
            "reused key ring pulumi", "reused key state", f"logged in to {BACKEND}",
            "reused stack dev"]

    def test_other_names_are_written_to_config(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, fresh_project())
        run = cloud.run("bootstrap", *BOOTSTRAP, "--stack", "prod", "--bucket", "acme-state",
                        "--key-ring", "infra", "--key", "pulumi-prod")
        assert run.code == 0, run.stderr
        provider = (f"gcpkms://projects/{PROJECT}/locations/{REGION}/keyRings/infra/"
                    "cryptoKeys/pulumi-prod")
        assert cloud.world["stacks"]["prod"] == {
            "secrets_provider": provider, "resources": [],
            "config": {"gcp:project": PROJECT, "gcp:region": REGION,
                       "gitops:stateBackend": "gs://acme-state",
                       "gitops:secretsProvider": provider}}

    @pytest.mark.parametrize(("args", "message"), [
        ((), "error: --project (PROJECT) is required: make bootstrap PROJECT=<your project id> "
             "REGION=europe-west1"),
        (("--project", PROJECT), "error: --region (REGION) is required"),
        (("--project", "my-gitops-project", "--region", REGION),
         "error: --project 'my-gitops-project' is the example from the docs"),
        (("--project", "Acme_Prod", "--region", REGION),
         "error: --project (PROJECT) 'Acme_Prod' is not valid"),
        ((*BOOTSTRAP, "--bucket", "Bad_Bucket"), "error: --bucket 'Bad_Bucket' is not valid"),
        ((*BOOTSTRAP, "--stack", "dev;rm"), "error: --stack 'dev;rm' is not valid"),
    ])
    def test_bad_input_does_nothing(self, tmp_path: Path, args: tuple[str, ...],
                                    message: str) -> None:
        cloud = FakeCloud(tmp_path, fresh_project())
        run = cloud.run("bootstrap", *args)
        assert run.code == 2
        assert run.stderr.startswith(message) and len(run.stderr.strip().splitlines()) == 1
        assert cloud.calls() == []

    def test_needs_logins_first(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, {**fresh_project(), "adc": False})
        run = cloud.run("bootstrap", *BOOTSTRAP)
        assert run.code == 2
        assert "fix: gcloud auth application-default login" in run.stdout
        assert bootstrap_calls(cloud) == []

    def test_bucket_owned_elsewhere(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, {**fresh_project(), "foreign_buckets": [BACKEND]})
        run = cloud.run("bootstrap", *BOOTSTRAP)
        assert run.code == 1
        assert run.stderr.startswith(f"error: cannot use {BACKEND}: ERROR: (gcloud.storage."
                                     "buckets.describe) HTTPError 403")
        assert "pass --bucket NAME" in run.stderr
        assert not any(c[1:4] == ["storage", "buckets", "create"] for c in cloud.calls())

    def test_stack_with_another_secrets_provider_is_not_changed(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import bootstrap
        provider = (f"gcpkms://projects/{PROJECT}/locations/{REGION}/keyRings/pulumi/"
                    "cryptoKeys/state")
        world = {**fresh_project(), "services": ["storage.googleapis.com",
                                                 "cloudkms.googleapis.com"],
                 "buckets": {BACKEND: {"location": REGION, "versioning_enabled": True}},
                 "kms": {f"{REGION}/pulumi": "ok", f"{REGION}/pulumi/state": "ENABLED"},
                 "stacks": {"byo": {"secrets_provider": "passphrase", "config": {},
                                    "resources": []}}}
        cloud = FakeCloud(tmp_path / "cloud", world)
        monkeypatch.setattr(bootstrap, "ROOT", tmp_path)  # the stack file is read from there
        (tmp_path / "Pulumi.byo.yaml").write_text("secretsprovider: passphrase\n")
        run = cloud.run("bootstrap", *BOOTSTRAP, "--stack", "byo")
        assert run.code == 1
        assert run.stderr.strip() == (
            "error: stack byo exists with secrets provider passphrase; to move it to this key "
            f'run: pulumi stack change-secrets-provider "{provider}"')
        assert not any(c[1:3] == ["config", "set"] for c in cloud.calls("pulumi"))


def destroy_world(protection: bool, resources: list[dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    world = ready_world()
    world["stacks"]["dev"]["resources"] = resources if resources is not None else [
        {"urn": CLUSTER_URN, "type": "gcp:container/cluster:Cluster",
         "inputs": {"deletionProtection": protection}},
        {"urn": ENV_REPO_URN, "type": "gcp:sourcerepo/repository:Repository", "inputs": {},
         "protect": True},
    ]
    return world


class TestTeardown:
    """Deletion protection is turned off (only on the cluster) before destroy; protected
    repositories are kept; what stays behind is listed with how to remove it."""

    def test_protection_off_first_then_destroy(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, destroy_world(protection=True))
        run = cloud.run("teardown", "--yes")
        assert run.code == 0, run.stdout + run.stderr
        changes = [c for c in cloud.calls("pulumi") if MUTATING.search(" ".join(c[1:3]))]
        assert changes == [
            ["pulumi", "config", "set", "gitops:deletionProtection", "false"],
            ["pulumi", "up", f"--target={CLUSTER_URN}", "--yes"],
            ["pulumi", "destroy", "--exclude-protected", "--yes"],
        ]
        assert [r["urn"] for r in cloud.world["stacks"]["dev"]["resources"]] == [ENV_REPO_URN]
        assert f"kept (protected): {ENV_REPO_URN}" in run.stdout
        assert (f"pulumi state unprotect '{ENV_REPO_URN}' && pulumi destroy") in run.stdout
        assert f"gcloud storage rm --recursive {BACKEND}" in run.stdout
        assert "gcloud secrets delete github-oauth-token" in run.stdout
        assert "gcloud kms keys versions destroy 1 --key=state --keyring=pulumi" in run.stdout

    def test_unprotected_cluster_goes_straight_to_destroy(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, destroy_world(protection=False))
        run = cloud.run("teardown")
        assert run.code == 0, run.stderr
        changes = [c for c in cloud.calls("pulumi") if MUTATING.search(c[1])]
        assert changes == [["pulumi", "destroy", "--exclude-protected"]]

    def test_without_the_fix_destroy_would_stop(self, tmp_path: Path) -> None:
        """The fake refuses like the provider does, so the order above is what makes it pass."""
        cloud = FakeCloud(tmp_path, destroy_world(protection=True))
        env = {"PATH": str(cloud.bin), "FAKE_CLOUD_DIR": str(tmp_path)}
        proc = subprocess.run([str(cloud.bin / "pulumi"), "destroy", "--yes"], env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 255
        assert "Cannot destroy cluster because deletion_protection is set to true" in \
            proc.stderr

    def test_missing_prerequisite_changes_nothing(self, tmp_path: Path) -> None:
        cloud = FakeCloud(tmp_path, world_with(backend=None))
        run = cloud.run("teardown", "--yes")
        assert run.code == 2
        assert "Checking what `make destroy` needs" in run.stdout
        assert not [c for c in cloud.calls("pulumi") if MUTATING.search(c[1])]

    def test_declined_step_stops(self, tmp_path: Path) -> None:
        world = destroy_world(protection=True)
        world["refuse"] = ["up"]  # the operator answers "no" to `pulumi up`
        cloud = FakeCloud(tmp_path, world)
        run = cloud.run("teardown")
        assert run.code == 1
        assert run.stderr.strip().splitlines()[-1] == (
            f"error: `pulumi up --target={CLUSTER_URN}` exited 255; nothing after it ran")
        assert not any(c[1] == "destroy" for c in cloud.calls("pulumi"))


class TestExamplesAreRefused:
    """Every value the docs and the example stack file show for a key that must be the user's
    own is refused by the preflight, and so is every value the preview build's stack-file check
    refuses."""

    SOURCES = ("Pulumi.dev.yaml", "README.md", "docs/quickstart.md", "components/config.py")
    OWN = ("gcp:project", "gitops:deployer", "gitops:githubAppInstallationId",
           "gitops:githubOwner")

    def test_documented_examples(self) -> None:
        from preflight import EXAMPLE_VALUES, WORD

        root = Path(__file__).resolve().parent.parent
        shown: set[tuple[str, str]] = set()
        for source in self.SOURCES:
            text = (root / source).read_text()
            for key, value in re.findall(r"pulumi config set ([\w:]+) ([^\s`'\")]+)", text):
                if "$(" not in value and value.strip("."):  # computed or elided: no example
                    shown.add((key, value))
            for key, value in re.findall(r"^\s*([\w]+:[\w]+): \"?([^\s\"#]+)", text,
                                         re.MULTILINE):
                shown.add((key, value))
            for key, value in re.findall(r"""fix\(["']([\w:]+)["'], ["']([^"']+)["']\)""",
                                         text):
                shown.add((key, value))
            for key, value in re.findall(r'require\(values, problems, "([\w:]+)", "([^"]+)"',
                                         text):
                shown.add((key, value))
        own = {(k, v) for k, v in shown if k in self.OWN}
        assert {k for k, _ in own} == set(self.OWN), own
        for key, value in own:
            assert set(WORD.findall(value)) & EXAMPLE_VALUES, f"{key} {value} is not refused"
        assert not set(WORD.findall(GOOD_CONFIG["gcp:project"])) & EXAMPLE_VALUES

    def test_same_examples_as_the_preview_build(self) -> None:
        from preflight import EXAMPLE_VALUES

        from components.stack_file import EXAMPLE_VALUES as PREVIEW_REFUSES

        assert PREVIEW_REFUSES <= EXAMPLE_VALUES


def make(cloud: FakeCloud, tmp_path: Path, target: str) -> Run:
    """`make TARGET` with the fakes as the only CLIs and a ready virtualenv stand-in, so the
    real install is never run from a test."""
    ready = tmp_path / "venv-ready"
    ready.write_text("")  # newer than requirements.txt: nothing to install
    proc = subprocess.run(["/usr/bin/env", "make", "--no-print-directory", "-C",
                           str(Path(__file__).resolve().parent.parent), target,
                           f"PYTHON={sys.executable}", f"VENV_READY={ready}"],
                          capture_output=True, text=True, check=False,
                          env={**cloud.environment(), "PATH": f"{cloud.bin}:/usr/bin:/bin"})
    return Run(proc.returncode, proc.stdout, proc.stderr)


class TestMakeTargets:
    """`make up` and `make preview` run the checks first and reach Pulumi only when they pass."""

    def test_up_is_gated_by_the_checks(self, tmp_path: Path) -> None:
        blocked = FakeCloud(tmp_path / "blocked", world_with(account=""))
        run = make(blocked, tmp_path / "blocked", "up")
        assert run.code != 0
        assert "FAIL  gcloud login: no active gcloud account" in run.stdout
        assert not any(c[1] == "up" for c in blocked.calls("pulumi"))

        ready = FakeCloud(tmp_path / "ready", ready_world())
        run = make(ready, tmp_path / "ready", "up")
        assert run.code == 0, run.stdout + run.stderr
        assert run.stdout.index("All 15 prerequisites met.") < run.stdout.index("pulumi up")
        assert ready.calls("pulumi")[-1] == ["pulumi", "up"]

    @pytest.mark.parametrize(("target", "purpose"), [("preview", "preview"),
                                                     ("destroy", "destroy"), ("check", "up")])
    def test_the_check_is_the_first_step(self, target: str, purpose: str) -> None:
        root = Path(__file__).resolve().parent.parent
        dry = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(root), target,
                              "PYTHON=python3", "VENV_READY=/nonexistent"],
                             capture_output=True, text=True, check=False)
        assert dry.stdout.splitlines()[0] == f"python3 tools/preflight.py --for {purpose}"


class TestToolsUseRealCommands:
    """What the setup tools run, and the commands they print for the operator, exist with
    those flags (the CLI reference the docs test uses)."""

    def test_calls_and_printed_commands(self, tmp_path: Path) -> None:
        from doc_commands import against_reference, commands_of

        first = FakeCloud(tmp_path / "bootstrap", fresh_project())
        assert first.run("bootstrap", *BOOTSTRAP).code == 0
        ready = FakeCloud(tmp_path / "preflight", ready_world())
        assert ready.run("preflight").code == 0
        down = FakeCloud(tmp_path / "teardown", destroy_world(protection=True))
        teardown = down.run("teardown", "--yes")
        assert teardown.code == 0
        calls = [c for cloud in (first, ready, down) for c in cloud.calls()
                 if c[0] in ("gcloud", "pulumi")]
        printed = [m.group(1) for line in teardown.stdout.splitlines()
                   for m in re.finditer(r"\b((?:gcloud|pulumi) [^`;&]+?)(?=$|`| && |;| \()",
                                        line)]
        assert len(printed) >= 5, printed
        commands = [tuple(call) for call in calls] + [
            c.words for text in printed for c in commands_of(text, "teardown output")]
        problems = [f"{' '.join(words)}: {problem}" for words in commands
                    for problem in against_reference(words[0], words)]
        assert not problems, "\n".join(problems)
