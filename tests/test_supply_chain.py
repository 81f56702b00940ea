"""The program's supply-chain pieces under mocks: signing-key secrets and who may read them, the
delivery build that signs and verifies, build provenance, and Binary Authorization.

Mocks prove the wiring only: that Secret Manager hands the key to the step, that Cloud Build
generates verified provenance and attests the image, and that GKE enforces the policy, only the
cloud can show (docs/supply-chain.md lists what was not run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1

from access_model import Operation, allowed, grants, missing, operations
from components import pipelines
from components.config import SYSTEM_IMAGE_PATTERNS, ConfigError, parse_config
from conftest import DIGEST_A, ROOT, EnvRepoOnDisk, cli, image_ref, promoted, write_manifests
from gitops.checks import check_build_name
from gitops.errors import BadInput
from gitops.signing import parse_allowed_signers
from pulumi_harness import SIGNERS, TRIGGER, Graph, base_config, program_graph, run_program
from test_pipelines import strict_build, used_substitutions
from test_program import API_OF

SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
POLICY = "gcp:binaryauthorization/policy:Policy"
CLUSTER = "gcp:container/cluster:Cluster"
SERVICE = "gcp:projects/service:Service"
PROJECT = "acme-delivery"
MEMBER = "serviceAccount:gitops-{}@acme-delivery.iam.gserviceaccount.com"
APP_PIPELINE = ROOT / "examples" / "hello-app" / "cloudbuild.yaml"


# Signed commits with two delivery environments, Binary Authorization, on CSR (which has no
# Secret Manager otherwise): one program run covers every supply-chain piece.
SUPPLY_CHAIN = base_config(**{
    "gitops:sourceProvider": "csr", "gitops:githubAppInstallationId": None,
    "gitops:githubTokenSecret": None, "gitops:githubOwner": None,
    "gitops:environments": [{"name": "staging", "namespaceSuffix": "-staging"},
                            {"name": "production", "approval": True,
                             "approvers": ["group:release-managers@acme.example"]}],
    "gitops:signers": {"ci": SIGNERS["ci"], "delivery-staging": SIGNERS["delivery"],
                       "delivery-production": SIGNERS["ci"]},
    "gitops:binaryAuthorization": "true",
})
IDENTITIES = ("ci", "delivery-staging", "delivery-production")


@pytest.fixture(scope="module")
def supply() -> Graph:
    return run_program(SUPPLY_CHAIN)


@pytest.fixture(scope="module")
def plain() -> Graph:
    return program_graph("csr")


def apis(graph: Graph) -> set[str]:
    return {s.inputs["service"] for s in graph.of_type(SERVICE)}


class TestSigningSecrets:
    """One key secret per committing identity, no version made by the program, each readable
    by its own identity only; nothing of it when signing is off."""

    def test_secrets_and_grants(self, supply: Graph) -> None:
        secrets = {s.inputs["secretId"]: s for s in supply.of_type(SECRET)}
        assert sorted(secrets) == sorted(f"gitops-signing-key-{k}" for k in IDENTITIES)
        assert supply.of_type(SECRET_VERSION) == []  # keys never pass through Pulumi's state
        readers = {(g.inputs["secretId"], g.inputs["role"], g.inputs["member"])
                   for g in supply.of_type(SECRET_IAM)}
        assert readers == {(f"gitops-signing-key-{k}", "roles/secretmanager.secretAccessor",
                            MEMBER.format(k)) for k in IDENTITIES}
        assert "secretmanager.googleapis.com" in apis(supply)

    def test_each_identity_reads_its_own_key_only(self, supply: Graph) -> None:
        granted = grants(supply)
        for reader in (*IDENTITIES, "preview", "reconcile"):
            for key in IDENTITIES:
                read = Operation(MEMBER.format(reader), "secretmanager.versions.access",
                                 f"projects/{PROJECT}/secrets/gitops-signing-key-{key}", "test")
                assert allowed(read, granted) == (reader == key), (reader, key)

    def test_the_access_model_derives_every_read_and_each_is_granted(self,
                                                                       supply: Graph) -> None:
        derived = operations(supply, parse_config(SUPPLY_CHAIN)).operations
        reads = {(op.member, op.resource) for op in derived
                 if op.permission == "secretmanager.versions.access"}
        assert reads == {(MEMBER.format(k), f"projects/{PROJECT}/secrets/gitops-signing-key-{k}")
                         for k in IDENTITIES}
        granted = grants(supply)
        assert missing(derived, granted) == []
        for grant in granted:  # and each key grant is needed by a read
            if grant.resource.startswith(f"projects/{PROJECT}/secrets/gitops-signing-key-"):
                assert missing(derived, [g for g in granted if g != grant]), grant.name

    def test_resources_wait_for_their_apis(self, supply: Graph) -> None:
        services = {s.inputs["service"].split(".")[0]: s.urn for s in supply.of_type(SERVICE)}
        for resource in [*supply.of_type(SECRET), *supply.of_type(SECRET_IAM),
                         *supply.of_type(POLICY)]:
            assert services[API_OF[resource.typ]] in supply.depends_on(resource), resource.name

    def test_components_and_outputs(self, supply: Graph) -> None:
        components = {r.typ for r in supply.resources if r.typ.startswith("gitops:index:")}
        assert {"gitops:index:CommitSigning", "gitops:index:AdmissionPolicy"} <= components
        assert {"allowed_signers", "signing_key_secrets",
                "binary_authorization_attestor"} <= set(supply.outputs)

    def test_triggers_wait_for_the_grants(self, supply: Graph) -> None:
        for trigger in supply.of_type(TRIGGER):
            needed = supply.depends_on(trigger)
            assert all(g.urn in needed for g in supply.of_type(SECRET_IAM)), trigger.name

    def test_allowed_signers_output_is_what_the_scripts_accept(self, supply: Graph) -> None:
        exported = supply.outputs["allowed_signers"]
        entries = parse_allowed_signers(exported)
        assert [e.split()[0] for e in entries] == list(IDENTITIES)
        assert [e.split()[2:] for e in entries] == [
            SIGNERS[k].split()[:2] for k in ("ci", "delivery", "ci")]
        assert supply.outputs["signing_key_secrets"] == {
            k: f"gitops-signing-key-{k}" for k in IDENTITIES}

    def test_off_by_default(self, plain: Graph) -> None:
        assert plain.of_type(SECRET) == [] and "allowed_signers" not in plain.outputs
        build = plain.named("deliver-hello").inputs["build"]
        assert "availableSecrets" not in build
        assert "_ALLOWED_SIGNERS" not in plain.named("deliver-hello").inputs["substitutions"]


class TestDeliveryBuildSigns:
    """With signing on, the delivery step gets its key from Secret Manager and the allowed
    signers from its trigger; the build stays a valid Cloud Build config."""

    @pytest.mark.parametrize("environment", ["staging", "production"])
    def test_inline_build(self, supply: Graph, environment: str) -> None:
        """Each environment's delivery reads its own identity's key."""
        trigger = supply.named(f"deliver-hello-{environment}")
        assert trigger.inputs["serviceAccount"].endswith(
            f"/gitops-delivery-{environment}@{PROJECT}.iam.gserviceaccount.com")
        build = trigger.inputs["build"]
        assert build["availableSecrets"] == {"secretManagers": [{
            "env": "GITOPS_SIGNING_KEY",
            "versionName": f"projects/{PROJECT}/secrets/gitops-signing-key-delivery-"
                           f"{environment}/versions/latest"}]}
        step = build["steps"][0]
        assert step["secretEnvs"] == ["GITOPS_SIGNING_KEY"]
        assert "GITOPS_ALLOWED_SIGNERS=${_ALLOWED_SIGNERS}" in step["envs"]
        substitution = trigger.inputs["substitutions"]["_ALLOWED_SIGNERS"]
        assert "\n" not in substitution  # a substitution is one line
        assert parse_allowed_signers(substitution) == parse_allowed_signers(
            supply.outputs["allowed_signers"])
        # The key is a secret env, never a substitution or a plain env value.
        assert not any("PRIVATE" in str(v) for v in trigger.inputs["substitutions"].values())

    def test_reconcile_build_checks_and_holds_no_key(self, supply: Graph) -> None:
        """A heal applies production only when it verifies; reconcile never commits."""
        trigger = supply.named("reconcile-production")
        build = trigger.inputs["build"]
        assert "availableSecrets" not in build
        step = build["steps"][0]
        assert "secretEnvs" not in step
        assert "GITOPS_ALLOWED_SIGNERS=${_ALLOWED_SIGNERS}" in step["envs"]
        assert trigger.inputs["substitutions"]["_ALLOWED_SIGNERS"] == \
            supply.named("deliver-hello-production").inputs["substitutions"]["_ALLOWED_SIGNERS"]

    def test_substitutions_agree(self, supply: Graph) -> None:
        for trigger in supply.of_type(TRIGGER):
            config = pipelines_of(trigger)
            assert used_substitutions(config)[0] == set(trigger.inputs["substitutions"]), \
                trigger.name

    @pytest.mark.parametrize("name", ["delivery", "app"])
    def test_signed_pipelines_parse_strictly(self, name: str) -> None:
        if name == "delivery":
            build = pipelines.with_signing(pipelines.load("delivery.yaml"), ("deliver",),
                                           pipelines.version_name(PROJECT, "delivery"),
                                           verify=True)
        else:
            build = pipelines.with_signing(yaml.safe_load(APP_PIPELINE.read_text()),
                                           ("publish",), pipelines.version_name(PROJECT, "ci"))
        parsed = strict_build(build)
        secrets = [s.env for s in parsed.available_secrets.secret_manager]
        # Cloud Build: every secret env is used by a step, and only named ones are.
        assert secrets == ["GITOPS_SIGNING_KEY"]
        assert [list(s.secret_env) for s in parsed.steps if s.secret_env] == [secrets]

    def test_signing_a_missing_step_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="no step sign"):
            pipelines.with_signing(pipelines.load("delivery.yaml"), ("sign",), "v")


def pipelines_of(trigger: Any) -> dict[str, Any]:
    from access_model import pipeline_of

    return pipeline_of(trigger, parse_config(SUPPLY_CHAIN))


class TestProvenance:
    """The app pipeline asks for verified provenance of the image it pushes, and publish names
    the build in the commit."""

    def test_app_pipeline_asks_for_verified_provenance(self) -> None:
        config = yaml.safe_load(APP_PIPELINE.read_text())
        build = strict_build(config)
        assert build.options.requested_verify_option == \
            cloudbuild_v1.BuildOptions.VerifyOption.VERIFIED
        # Provenance is generated for images: pushed by Cloud Build, the one render pins.
        assert list(build.images) == ["${_REGISTRY}/${_APP}:${SHORT_SHA}"]
        push = next(s for s in config["steps"] if s["id"] == "push")
        assert "${_REGISTRY}/${_APP}:${SHORT_SHA} > /workspace/image-ref" in push["args"][1]
        publish = next(s for s in config["steps"] if s["id"] == "publish")
        assert "--provenance=projects/${PROJECT_ID}/locations/${LOCATION}/builds/${BUILD_ID}" \
            in publish["args"][1]

    def test_commit_records_the_build_and_promotion_keeps_it(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        build = "projects/acme-delivery/locations/europe-west1/builds/4f1c2a9e-7b3d-4e55-9a10"
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(folder), "--image", image_ref("hello", DIGEST_A), "--provenance", build)
        assert result.code == 0, result.stderr
        candidate = result.last_line
        assert f"\nImage: {image_ref('hello', DIGEST_A)}\nProvenance: {build}\n" in \
            env_repo.message(candidate) + "\n"
        production = promoted(env_repo, "hello", candidate, "cd-1")
        assert f"Provenance: {build}" in env_repo.message(production)
        story = json.loads(cli("history", "--repo", env_repo.url, "--app", "hello",
                               "--json").stdout)
        assert story["attempts"][0]["provenance"] == build

    def test_artifact_analysis_api_is_on(self, plain: Graph) -> None:
        assert "containeranalysis.googleapis.com" in apis(plain)

    @pytest.mark.parametrize("name", ["projects/acme/locations/eu/builds/1", "builds/1",
                                      "projects/acme-delivery/locations/europe-west1/builds/",
                                      "projects/acme-delivery/locations/europe-west1/builds/a\nb"])
    def test_bad_build_names(self, name: str) -> None:
        with pytest.raises(BadInput, match="is not a build name"):
            check_build_name(name, "--provenance")


class TestBinaryAuthorization:
    """Opt-in: the API, a policy requiring Cloud Build's attestor with GKE's images allowed,
    and a cluster that enforces it."""

    def test_policy(self, supply: Graph) -> None:
        policy = supply.one(POLICY)
        assert policy.inputs["defaultAdmissionRule"] == {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBies": [f"projects/{PROJECT}/attestors/built-by-cloud-build"],
        }
        assert [p["namePattern"] for p in policy.inputs["admissionWhitelistPatterns"]] == \
            list(SYSTEM_IMAGE_PATTERNS)
        assert policy.inputs["globalPolicyEvaluationMode"] == "ENABLE"
        assert policy.inputs["project"] == PROJECT
        assert supply.outputs["binary_authorization_attestor"] == \
            f"projects/{PROJECT}/attestors/built-by-cloud-build"

    def test_policy_waits_for_the_api_and_a_build_that_made_images(self, supply: Graph) -> None:
        needed = supply.depends_on(supply.one(POLICY))
        services = {s.inputs["service"]: s.urn for s in supply.of_type(SERVICE)}
        assert services["binaryauthorization.googleapis.com"] in needed
        assert supply.named("build-steps-image").urn in needed

    def test_cluster_enforces_the_project_policy(self, supply: Graph) -> None:
        cluster = supply.one(CLUSTER)
        assert cluster.inputs["binaryAuthorization"] == {
            "evaluationMode": "PROJECT_SINGLETON_POLICY_ENFORCE"}
        services = {s.inputs["service"]: s.urn for s in supply.of_type(SERVICE)}
        assert services["binaryauthorization.googleapis.com"] in supply.depends_on(cluster)

    def test_off_by_default(self, plain: Graph) -> None:
        assert plain.of_type(POLICY) == []
        assert "binaryAuthorization" not in plain.one(CLUSTER).inputs
        assert "binaryauthorization.googleapis.com" not in apis(plain)


class TestSupplyChainConfig:
    """Bad signing or admission config fails with what to set."""

    @pytest.mark.parametrize("signers, message", [
        ({"ci": SIGNERS["ci"]}, "has no key for 'delivery'"),
        ({**SIGNERS, "ci": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n"}, "is a private key"),
        ({**SIGNERS, "delivery": "ssh-dss AAAAB3NzaC1kc3M="}, "is not an SSH public key"),
        ({**SIGNERS, "bad name": SIGNERS["ci"]}, "a signer name is"),
        (["ssh-ed25519 AAAA"], "must be an object of signer name"),
    ])
    def test_bad_signers(self, signers: Any, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse_config(base_config(**{"gitops:signers": signers}))

    def test_people_may_sign_too(self) -> None:
        config = parse_config(base_config(**{"gitops:signers": {
            **SIGNERS, "alice@acme.example": SIGNERS["ci"]}}))
        assert [line.split()[0] for line in config.allowed_signers()] == [
            "ci", "delivery", "alice@acme.example"]

    def test_allowlist(self) -> None:
        config = parse_config(base_config(**{
            "gitops:binaryAuthorizationAllowlist": ["gke.gcr.io/**", "quay.io/acme/tool"]}))
        assert config.binary_authorization_allowlist == ("gke.gcr.io/**", "quay.io/acme/tool")
        with pytest.raises(ConfigError, match="'nothing' is not registry/path"):
            parse_config(base_config(**{"gitops:binaryAuthorizationAllowlist": ["nothing"]}))


class TestSupplyChainDocs:
    """What docs/supply-chain.md tells app owners to add is exactly what the program, the
    access model and the local loop assume an app pipeline adds."""

    def test_app_pipeline_lines(self) -> None:
        text = (ROOT / "docs" / "supply-chain.md").read_text()
        block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                     if "availableSecrets" in b)
        documented = yaml.safe_load(block)
        original = yaml.safe_load(APP_PIPELINE.read_text())
        signed = pipelines.with_signing(original, ("publish",),
                                        pipelines.version_name("${PROJECT_ID}", "ci"))
        assert documented["availableSecrets"] == signed["availableSecrets"]
        publish = next(s for s in signed["steps"] if s["id"] == "publish")
        assert documented["steps"] == [{"id": "publish", "secretEnv": publish["secretEnv"]}]
        before = next(s for s in original["steps"] if s["id"] == "publish")
        assert {k: v for k, v in publish.items() if k != "secretEnv"} == before

    def test_linked_from_the_readme(self) -> None:
        assert "docs/supply-chain.md" in (ROOT / "README.md").read_text()



class TestSigningPerEnvironment:
    """Every environment's delivery identity commits, so each needs a key."""

    def test_every_committing_identity_needs_a_key(self) -> None:
        config = {**SUPPLY_CHAIN, "gitops:signers": SIGNERS}  # ci and delivery only
        with pytest.raises(ConfigError, match="no key for 'delivery-staging'"):
            parse_config(config)
