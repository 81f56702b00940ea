"""Dedicated build identities: one service account per build kind, each with only what it needs.

Design decisions:
- CI (app builds), delivery (env-repo builds) and preview (infra pull requests) never share an
  identity, so a compromised app build cannot deploy and a preview cannot change anything.
- Only roles that have no narrower resource are granted here, on the project: log writing for
  all, cluster authentication for delivery, read-only views for preview. Everything with a
  resource of its own is granted by the component that owns the resource (registry read and
  write, repositories, secrets, state, namespaces).
- Neither the Compute Engine default nor the legacy Cloud Build account is used anywhere.
- The identity that runs `pulumi up` (`gitops:deployer`, from config, never looked up) gets
  actAs on each account, which creating a trigger that runs as that account requires.
- `grants` lists every grant made here, so the program can wait for their propagation before
  anything uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

BUILD_KINDS = {
    "ci": "Builds app images and publishes manifests to the env repo's candidate branch",
    "delivery": "Applies candidate manifests to GKE and promotes them to production",
    "preview": "Runs tests and a read-only pulumi preview on infra pull requests",
    "reconcile": "Compares app namespaces with production; heals the apps allowed to",
}
LOG_WRITER = "roles/logging.logWriter"
PROJECT_ROLES: dict[str, tuple[str, ...]] = {
    "ci": (LOG_WRITER,),
    # Authenticate to the cluster only; what it may change comes from in-cluster RBAC.
    "delivery": (LOG_WRITER, "roles/container.clusterViewer"),
    # Like delivery: authenticate only; in-cluster RBAC says what it may read or heal.
    "reconcile": (LOG_WRITER, "roles/container.clusterViewer"),
    "preview": (
        LOG_WRITER,
        "roles/browser",
        "roles/iam.securityReviewer",
        "roles/iam.serviceAccountViewer",
        "roles/serviceusage.serviceUsageViewer",
        "roles/container.viewer",
        "roles/cloudbuild.builds.viewer",
        "roles/cloudbuild.connectionViewer",
    ),
}
# CSR: the preview reads the infra repository through a grant on that repository only.
PROVIDER_PREVIEW_ROLES: dict[str, tuple[str, ...]] = {
    "github": ("roles/secretmanager.viewer",),
    "csr": (),
}


@dataclass
class BuildIdentitiesArgs:
    project: pulumi.Input[str]
    source_provider: str
    deployer: str  # IAM member from config
    api_dependencies: list[pulumi.Resource]


class BuildIdentities(pulumi.ComponentResource):
    """Service accounts `ci`, `delivery` and `preview` with their project-level roles."""

    def __init__(self, name: str, args: BuildIdentitiesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:BuildIdentities", name, None, opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.grants: list[pulumi.CustomResource] = []
        self.act_as: dict[str, gcp.serviceaccount.IAMMember] = {}
        for kind, description in BUILD_KINDS.items():
            account = gcp.serviceaccount.Account(
                f"{kind}-builds",
                project=args.project,
                account_id=f"gitops-{kind}",
                display_name=f"GitOps {kind} builds",
                description=description,
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
            )
            self.accounts[kind] = account
            roles = PROJECT_ROLES[kind]
            if kind == "preview":
                roles = (*roles, *PROVIDER_PREVIEW_ROLES[args.source_provider])
            for role in roles:
                self.grants.append(gcp.projects.IAMMember(
                    f"{kind}-{role.split('/')[-1].replace('.', '-')}",
                    project=args.project,
                    role=role,
                    member=account.member,
                    opts=pulumi.ResourceOptions(parent=self),
                ))
            # Whoever runs `pulumi up` must be able to attach this account to triggers.
            self.act_as[kind] = gcp.serviceaccount.IAMMember(
                f"{kind}-deployer-act-as",
                service_account_id=account.name,
                role="roles/iam.serviceAccountUser",
                member=args.deployer,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.grants.append(self.act_as[kind])
        self.register_outputs({kind: a.email for kind, a in self.accounts.items()})

    def member(self, kind: str) -> pulumi.Output[str]:
        return self.accounts[kind].member

    def resource_name(self, kind: str) -> pulumi.Output[str]:
        """`projects/{project}/serviceAccounts/{email}`, as triggers want it."""
        return self.accounts[kind].name
