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
- One delivery identity and one reconcile identity per environment (`delivery` and
  `reconcile` for a stack without environments, `delivery-<env>` and `reconcile-<env>`
  otherwise). An environment's identities authenticate to its own cluster only: their
  cluster-viewer grants carry an IAM condition on that cluster's resource name (GKE clusters
  have no IAM policy of their own); what they may read or change there comes from the RBAC of
  that environment's namespaces (cluster_access.py). A reconcile identity therefore reaches
  no other environment's cluster or namespaces, as a delivery identity does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_gcp as gcp

BUILD_KINDS = {
    "ci": "Builds app images and publishes manifests to the env repo's candidate branch",
    "delivery": "Applies candidate manifests to GKE and promotes them to production",
    "preview": "Runs tests and a read-only pulumi preview on infra pull requests",
    "reconcile": "Compares app namespaces with production; heals the apps allowed to",
}
LOG_WRITER = "roles/logging.logWriter"
CLUSTER_ROLE = "roles/container.clusterViewer"
PROJECT_ROLES: dict[str, tuple[str, ...]] = {
    "ci": (LOG_WRITER,),
    # Authenticate to the cluster only; what it may change comes from in-cluster RBAC.
    "delivery": (LOG_WRITER, CLUSTER_ROLE),
    # Like delivery: authenticate only; in-cluster RBAC says what it may read or heal.
    "reconcile": (LOG_WRITER, CLUSTER_ROLE),
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


# The build kinds that have one identity per environment.
PER_ENVIRONMENT = ("delivery", "reconcile")


@dataclass(frozen=True)
class EnvironmentIdentity:
    """The delivery or reconcile identity of one environment."""

    kind: str  # `delivery`, `delivery-<env>`, `reconcile` or `reconcile-<env>`
    account_id: str
    environment: str
    cluster: str | None = None  # the resource name its cluster grant is limited to (None: all)
    builds: Literal["delivery", "reconcile"] = "delivery"  # which of PER_ENVIRONMENT

    @property
    def description(self) -> str:
        if self.kind in PER_ENVIRONMENT:  # a stack without environments: today's text
            return BUILD_KINDS[self.kind]
        if self.builds == "reconcile":
            return f"Compares environment {self.environment}'s app namespaces with its " \
                   f"production; heals the apps allowed to"
        return f"Applies environment {self.environment}'s candidate manifests to GKE and " \
               f"promotes them"


@dataclass
class BuildIdentitiesArgs:
    project: pulumi.Input[str]
    source_provider: str
    deployer: str  # IAM member from config
    api_dependencies: list[pulumi.Resource]
    deliveries: tuple[EnvironmentIdentity, ...] = (
        EnvironmentIdentity("delivery", "gitops-delivery", "production"),)
    reconcilers: tuple[EnvironmentIdentity, ...] = (
        EnvironmentIdentity("reconcile", "gitops-reconcile", "production", builds="reconcile"),)


class BuildIdentities(pulumi.ComponentResource):
    """Service accounts `ci` and `preview`, and each environment's `delivery` and `reconcile`,
    with their project-level roles."""

    def __init__(self, name: str, args: BuildIdentitiesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:BuildIdentities", name, None, opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.grants: list[pulumi.CustomResource] = []
        self.act_as: dict[str, gcp.serviceaccount.IAMMember] = {}
        # (kind, account id, description, project roles, cluster its cluster grant names)
        kinds: list[tuple[str, str, str, tuple[str, ...], str | None]] = [
            (kind, f"gitops-{kind}", description, PROJECT_ROLES[kind], None)
            for kind, description in BUILD_KINDS.items() if kind not in PER_ENVIRONMENT]
        kinds += [(identity.kind, identity.account_id, identity.description,
                   PROJECT_ROLES[identity.builds], identity.cluster)
                  for identity in (*args.deliveries, *args.reconcilers)]
        for kind, account_id, description, roles, cluster in kinds:
            account = gcp.serviceaccount.Account(
                f"{kind}-builds",
                project=args.project,
                account_id=account_id,
                display_name=f"GitOps {kind} builds",
                description=description,
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
            )
            self.accounts[kind] = account
            if kind == "preview":
                roles = (*roles, *PROVIDER_PREVIEW_ROLES[args.source_provider])
            for role in roles:
                # The cluster grant of an environment's identity names that cluster only.
                condition = gcp.projects.IAMMemberConditionArgs(
                    title=f"only cluster {cluster.rsplit('/', 1)[-1]}",
                    expression=f'resource.name == "{cluster}"',
                ) if cluster and role == CLUSTER_ROLE else None
                self.grants.append(gcp.projects.IAMMember(
                    f"{kind}-{role.split('/')[-1].replace('.', '-')}",
                    project=args.project,
                    role=role,
                    member=account.member,
                    condition=condition,
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
