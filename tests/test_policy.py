"""The policy pack: each rule rejects its bad case, and the program's own resources pass."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from conftest import ROOT
from pulumi_harness import CONFIGS, Graph, base_config, run_program

sys.path.insert(0, str(ROOT / "policy"))
import gitops_policies as rules

SA = "projects/acme/serviceAccounts/gitops-ci@acme.iam.gserviceaccount.com"
GOOD_TRIGGER = {"serviceAccount": SA, "build": {"steps": [{"name": "ubuntu"}],
                                                "options": {"logging": "CLOUD_LOGGING_ONLY"}},
                "substitutions": {"_APP": "hello"}}
GOOD_CLUSTER = {"enableAutopilot": True, "deletionProtection": True}
GOOD_POOL = {"nodeConfig": {"serviceAccount": "gke-nodes@acme.iam.gserviceaccount.com",
                            "workloadMetadataConfig": {"mode": "GKE_METADATA"}}}
GOOD_REGISTRY = {"format": "DOCKER", "cleanupPolicies": [{"id": "keep", "action": "KEEP"}]}
GOOD_GRANT = {"role": "roles/logging.logWriter",
              "member": "serviceAccount:gitops-ci@acme.iam.gserviceaccount.com"}
IAM = "gcp:projects/iAMMember:IAMMember"


def check(rule: str, resource_type: str, props: dict[str, Any], stack: str = "dev"
          ) -> list[str]:
    return [m for name, m in rules.violations(resource_type, "res", props, stack)
            if name == rule]


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    props = copy.deepcopy(base)
    node = props
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return props


class TestTriggerIdentityAndLogging:
    """Every trigger names a dedicated account; its inline build sets the logging option."""

    RULE = "trigger-identity-and-logging"

    def test_good(self) -> None:
        assert check(self.RULE, rules.TRIGGER, GOOD_TRIGGER) == []

    @pytest.mark.parametrize("path,value,fragment", [
        ("serviceAccount", None, "names no service account"),
        ("serviceAccount", "gitops-ci@acme.iam.gserviceaccount.com", "names no service"),
        ("serviceAccount", "projects/acme/serviceAccounts/123-compute@developer."
         "gserviceaccount.com", "default account"),
        ("serviceAccount", "projects/acme/serviceAccounts/123@cloudbuild.gserviceaccount.com",
         "default account"),
        ("build.options.logging", "LEGACY", "options.logging"),
        ("build.options", None, "options.logging"),
    ])
    def test_bad(self, path: str, value: Any, fragment: str) -> None:
        messages = check(self.RULE, rules.TRIGGER, changed(GOOD_TRIGGER, path, value))
        assert len(messages) == 1 and fragment in messages[0]
        assert messages[0].startswith("Trigger 'res'") and "Fix:" in messages[0]

    def test_logs_bucket_also_satisfies_the_rule(self) -> None:
        props = changed(changed(GOOD_TRIGGER, "build.options", None), "build.logsBucket",
                        "gs://acme-build-logs")
        assert check(self.RULE, rules.TRIGGER, props) == []


class TestDefaultAccountsAndPrimitiveRoles:
    """No grant to a default account; no primitive role for a service account."""

    RULE = "no-default-accounts-or-primitive-roles"

    def test_good(self) -> None:
        assert check(self.RULE, IAM, GOOD_GRANT) == []
        assert check(self.RULE, IAM, {"role": "roles/viewer",
                                      "member": "group:auditors@acme.example"}) == []

    @pytest.mark.parametrize("props,fragment", [
        ({"role": "roles/logging.logWriter",
          "member": "serviceAccount:123-compute@developer.gserviceaccount.com"},
         "default account"),
        ({"role": "roles/run.admin", "members": ["serviceAccount:123@cloudbuild.gserviceaccount"
                                                 ".com"]}, "default account"),
        ({"role": "roles/editor", "member": "serviceAccount:gitops-ci@acme.iam.gserviceaccount"
                                            ".com"}, "primitive role roles/editor"),
        ({"role": "roles/owner", "member": "serviceAccount:x@acme.iam.gserviceaccount.com"},
         "primitive role roles/owner"),
        ({"role": "roles/viewer", "member": "serviceAccount:x@acme.iam.gserviceaccount.com"},
         "primitive role roles/viewer"),
    ])
    def test_bad(self, props: dict[str, Any], fragment: str) -> None:
        messages = check(self.RULE, IAM, props)
        assert len(messages) == 1 and fragment in messages[0] and "Fix:" in messages[0]


class TestGkeIdentity:
    """Workload Identity, dedicated node accounts with GKE_METADATA, protected production."""

    RULE = "gke-workload-identity"

    def test_good(self) -> None:
        assert check(self.RULE, rules.CLUSTER, GOOD_CLUSTER, "production") == []
        standard = {"workloadIdentityConfig": {"workloadPool": "acme.svc.id.goog"}}
        assert check(self.RULE, rules.CLUSTER, standard) == []
        assert check(self.RULE, rules.NODE_POOL, GOOD_POOL) == []

    def test_cluster_without_workload_identity(self) -> None:
        messages = check(self.RULE, rules.CLUSTER, {"deletionProtection": True})
        assert len(messages) == 1 and "no Workload Identity" in messages[0]

    def test_deletion_protection_in_production_stacks_only(self) -> None:
        props = changed(GOOD_CLUSTER, "deletionProtection", False)
        assert check(self.RULE, rules.CLUSTER, props, "dev") == []
        messages = check(self.RULE, rules.CLUSTER, props, "acme-prod")
        assert len(messages) == 1 and "pulumi config set gitops:deletionProtection true" in \
            messages[0]

    @pytest.mark.parametrize("path,value,fragment", [
        ("nodeConfig.serviceAccount", None, "Compute Engine default"),
        ("nodeConfig.serviceAccount", "default", "Compute Engine default"),
        ("nodeConfig.workloadMetadataConfig.mode", "GCE_METADATA", "GKE metadata server"),
    ])
    def test_bad_node_pool(self, path: str, value: Any, fragment: str) -> None:
        messages = check(self.RULE, rules.NODE_POOL, changed(GOOD_POOL, path, value))
        assert len(messages) == 1 and fragment in messages[0]


class TestRegistry:
    """Docker format with a cleanup policy (advisory)."""

    RULE = "registry-docker-with-cleanup"

    def test_good(self) -> None:
        assert check(self.RULE, rules.REGISTRY, GOOD_REGISTRY) == []

    @pytest.mark.parametrize("path,value,fragment", [
        ("format", "MAVEN", "MAVEN format"),
        ("cleanupPolicies", None, "no cleanup policy"),
        ("cleanupPolicies", [], "no cleanup policy"),
    ])
    def test_bad(self, path: str, value: Any, fragment: str) -> None:
        messages = check(self.RULE, rules.REGISTRY, changed(GOOD_REGISTRY, path, value))
        assert len(messages) == 1 and fragment in messages[0]

    def test_is_advisory(self) -> None:
        from pulumi_policy import EnforcementLevel

        levels = {p.name: p.enforcement_level for p in rules.policies()}
        assert levels[self.RULE] == EnforcementLevel.ADVISORY
        assert all(level == EnforcementLevel.MANDATORY for name, level in levels.items()
                   if name != self.RULE)


class TestNoPlainSecrets:
    """No secret in a substitution or a step's plain environment."""

    RULE = "no-plain-secrets"

    def test_good(self) -> None:
        props = changed(GOOD_TRIGGER, "substitutions._PULUMI_TOKEN_SECRET",
                        "projects/acme/secrets/pulumi-token/versions/latest")
        assert check(self.RULE, rules.TRIGGER, props) == []

    @pytest.mark.parametrize("path,value", [
        ("substitutions._GITHUB_TOKEN", "abc123"),
        ("substitutions._NOTE", "ghp_" + "A" * 36),
        ("substitutions._KEY", "-----BEGIN RSA PRIVATE KEY-----"),
        ("build.steps", [{"name": "ubuntu", "id": "s", "envs": ["API_KEY=hunter2"]}]),
        ("build.steps", [{"name": "ubuntu", "id": "s", "envs": ["X=ghs_" + "b" * 36]}]),
    ])
    def test_bad(self, path: str, value: Any) -> None:
        messages = check(self.RULE, rules.TRIGGER, changed(GOOD_TRIGGER, path, value))
        fix = "Secret Manager" if path.startswith("substitutions") else "secretEnv"
        assert len(messages) == 1 and fix in messages[0], messages


class TestProgramPassesItsPack:
    """The program as configured passes its own policy pack, in every config."""

    @pytest.mark.parametrize("config", list(CONFIGS))
    def test_no_violation(self, config: str) -> None:
        graph: Graph = run_program(CONFIGS[config], stack="production")
        found = [(r.typ, r.name, message) for r in graph.resources
                 for _, message in rules.violations(r.typ, r.name, r.inputs, "production")]
        assert found == []

    def test_pack_catches_an_unprotected_production_cluster(self) -> None:
        graph = run_program(base_config(**{"gitops:deletionProtection": "false"}),
                            stack="production")
        found = [m for r in graph.resources
                 for _, m in rules.violations(r.typ, r.name, r.inputs, "production")]
        assert len(found) == 1 and "deletion_protection" in found[0]

    def test_stack_name_from_urn(self) -> None:
        assert rules.stack_of("urn:pulumi:acme-prod::gitops::gcp:container/cluster:Cluster::c") \
            == "acme-prod"


def run_pack_policy(name: str, resource_type: str, props: dict[str, Any], stack: str
                    ) -> list[str]:
    """Drive one policy of the pack as the policy engine does: args with a URN, a callback."""
    from pulumi_policy import (
        PolicyCustomTimeouts,
        PolicyResourceOptions,
        ResourceValidationArgs,
    )

    policy = next(p for p in rules.policies() if p.name == name)
    urn = f"urn:pulumi:{stack}::gitops::{resource_type}::res"
    args = ResourceValidationArgs(resource_type, props, urn, "res",
                                  PolicyResourceOptions(False, [], False, [],
                                                        PolicyCustomTimeouts(0, 0, 0), []), None)
    reported: list[str] = []
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


class TestThePackAsTheEngineRunsIt:
    """Each pack policy reports its rule's violations, for the stack named by the URN."""

    def test_stack_comes_from_each_resource_urn(self) -> None:
        unprotected = {"enableAutopilot": True, "deletionProtection": False}
        production = run_pack_policy("gke-workload-identity", rules.CLUSTER, unprotected,
                                     "acme-prod")
        assert len(production) == 1 and "'acme-prod'" in production[0]
        assert run_pack_policy("gke-workload-identity", rules.CLUSTER, unprotected, "dev") == []

    @pytest.mark.parametrize("name,resource_type,props,fragment", [
        ("trigger-identity-and-logging", rules.TRIGGER, {**GOOD_TRIGGER, "serviceAccount": ""},
         "names no service account"),
        ("no-default-accounts-or-primitive-roles", IAM,
         {"role": "roles/editor", "member": "serviceAccount:x@acme.iam.gserviceaccount.com"},
         "primitive role roles/editor"),
        ("registry-docker-with-cleanup", rules.REGISTRY, {"format": "DOCKER"},
         "no cleanup policy"),
        ("no-plain-secrets", rules.TRIGGER, {**GOOD_TRIGGER, "substitutions": {
            "_GITHUB_TOKEN": "abc123"}}, "Secret Manager"),
    ])
    def test_each_policy_reports_its_rule(self, name: str, resource_type: str,
                                          props: dict[str, Any], fragment: str) -> None:
        reported = run_pack_policy(name, resource_type, props, "dev")
        assert len(reported) == 1 and fragment in reported[0], reported

    def test_pack_entry_point_loads_every_policy(self) -> None:
        """policy/__main__.py builds the pack from policies(); its names are the rules'."""
        import ast

        tree = ast.parse((ROOT / "policy" / "__main__.py").read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", "") == "PolicyPack"]
        assert len(calls) == 1
        policies_arg = next(k.value for k in calls[0].keywords if k.arg == "policies")
        assert isinstance(policies_arg, ast.Call) and policies_arg.func.id == "policies"  # type: ignore[attr-defined]
        assert {p.name for p in rules.policies()} == {
            "trigger-identity-and-logging", "no-default-accounts-or-primitive-roles",
            "gke-workload-identity", "registry-docker-with-cleanup", "no-plain-secrets",
            "production-needs-approval"}
