"""Approval gates: who may approve an environment's held delivery builds, and what the build
reads to record it.

Design decisions:
- An environment with `approval: true` has `approval_config { approval_required = true }` on
  its delivery triggers (components/triggers.py): Cloud Build holds each build until someone
  approves it in the console or with `gcloud builds approve`.
- Each approver gets `roles/cloudbuild.builds.approver` (approve, and see builds) and nothing
  more. Cloud Build has no IAM policy per trigger or per build, so the grant is on the project:
  an approver may approve any held build of the project, which is why approval is the only
  thing the role allows.
- The environment's delivery identity gets `roles/cloudbuild.builds.viewer` on the project, to
  read its own Build resource (`approval.result.approver_account`) and record the approver on
  the production commit. Environments without approval get nothing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

APPROVER_ROLE = "roles/cloudbuild.builds.approver"
BUILD_READER_ROLE = "roles/cloudbuild.builds.viewer"


@dataclass
class ApprovalGatesArgs:
    project: pulumi.Input[str]
    # environment name -> (its approvers, its delivery identity's IAM member)
    gates: dict[str, tuple[tuple[str, ...], pulumi.Input[str]]]
    api_dependencies: list[pulumi.Resource]


def member_slug(member: str) -> str:
    """A stable resource-name part for an IAM member (letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", member.lower()).strip("-")


class ApprovalGates(pulumi.ComponentResource):
    """Approver grants per gated environment, and build read for its delivery identity."""

    def __init__(self, name: str, args: ApprovalGatesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ApprovalGates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
        self.grants: list[pulumi.CustomResource] = []
        for env, (approvers, delivery) in args.gates.items():
            for member in approvers:
                self.grants.append(gcp.projects.IAMMember(
                    f"{env}-approver-{member_slug(member)}",
                    project=args.project, role=APPROVER_ROLE, member=member, opts=child))
            self.grants.append(gcp.projects.IAMMember(
                f"{env}-delivery-reads-builds",
                project=args.project, role=BUILD_READER_ROLE, member=delivery, opts=child))
        self.register_outputs({"gated": sorted(args.gates)})
