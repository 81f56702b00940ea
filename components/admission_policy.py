"""Binary Authorization: the cluster admits only images this project's Cloud Build built.

Design decisions:
- Opt-in (`gitops:binaryAuthorization`): the policy is the project's single policy, so it also
  governs any other cluster in the project that enforces it, and an image built anywhere else
  (a hot fix pushed by hand, a public image) stops being admitted.
- The default rule requires an attestation by Google's built-in attestor
  `projects/PROJECT/attestors/built-by-cloud-build`, which Cloud Build creates in the project
  on its first build that produces images and uses to attest every image it pushes through a
  build's `images:` field (the app pipeline lists its image there). The attestor therefore
  exists once the steps image has been built, which this policy waits for.
- Blocked pods are denied and logged (`ENFORCED_BLOCK_AND_AUDIT_LOG`).
- System images: Google's global policy for GKE system images is on
  (`globalPolicyEvaluationMode: ENABLE`), and the allowlist (`gitops:binaryAuthorizationAllowlist`,
  GKE's registries by default) admits the images GKE itself runs without an attestation.
- The cluster enforces this project policy (`PROJECT_SINGLETON_POLICY_ENFORCE`, in
  components/cluster.py). Break-glass for an emergency image is documented in
  docs/supply-chain.md: it is logged, never silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

ATTESTOR = "built-by-cloud-build"
REQUIRE_ATTESTATION = "REQUIRE_ATTESTATION"
BLOCK_AND_AUDIT = "ENFORCED_BLOCK_AND_AUDIT_LOG"
CLUSTER_EVALUATION_MODE = "PROJECT_SINGLETON_POLICY_ENFORCE"


def attestor(project: str) -> str:
    return f"projects/{project}/attestors/{ATTESTOR}"


@dataclass
class AdmissionPolicyArgs:
    project: str
    allowlist: tuple[str, ...]
    # The Binary Authorization API, and a build that produced images (the attestor exists).
    depends_on: list[pulumi.Resource]


class AdmissionPolicy(pulumi.ComponentResource):
    """The project's Binary Authorization policy: Cloud Build's attestation, or the allowlist."""

    def __init__(self, name: str, args: AdmissionPolicyArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:AdmissionPolicy", name, None, opts)
        self.attestor = attestor(args.project)
        self.policy = gcp.binaryauthorization.Policy(
            "policy",
            project=args.project,
            description="GitOps delivery: only images built by this project's Cloud Build",
            global_policy_evaluation_mode="ENABLE",
            admission_whitelist_patterns=[
                gcp.binaryauthorization.PolicyAdmissionWhitelistPatternArgs(name_pattern=p)
                for p in args.allowlist],
            default_admission_rule=gcp.binaryauthorization.PolicyDefaultAdmissionRuleArgs(
                evaluation_mode=REQUIRE_ATTESTATION,
                enforcement_mode=BLOCK_AND_AUDIT,
                require_attestations_bies=[self.attestor],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.register_outputs({"attestor": self.attestor})
