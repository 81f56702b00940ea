"""The GKE cluster: Autopilot by default, Standard with its own node pool as an option.

Design decisions:
- Nodes run as a dedicated service account with only the node role (never the Compute Engine
  default account), in both modes.
- Workload Identity is on (Autopilot always has it; Standard sets the pool and GKE_METADATA).
- `deletion_protection` comes from config: on by default, off for throw-away stacks.
- VPC-native on the network of `components/network.py` (never the `default` VPC): pods and
  services use the subnet's named secondary ranges.
- Nested arguments use pulumi-gcp's typed `...Args` classes: a misspelled key fails at once
  (and in mypy), where a dict would be sent to Google as it is.
- With `gitops:binaryAuthorization` the cluster enforces the project's Binary Authorization
  policy (`PROJECT_SINGLETON_POLICY_ENFORCE`, components/admission_policy.py); otherwise the
  field is left out, as GKE's default (no enforcement).
- The kubeconfig authenticates with `gke-gcloud-auth-plugin`, which must be on PATH wherever it
  is used (the machine running Pulumi and the steps image), with the application-default
  credentials, like the Google provider: the Kubernetes calls run as the same identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.admission_policy import CLUSTER_EVALUATION_MODE

NODE_ROLE = "roles/container.defaultNodeServiceAccount"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: {context}
  cluster:
    certificate-authority-data: {ca}
    server: https://{endpoint}
contexts:
- name: {context}
  context:
    cluster: {context}
    user: {context}
current-context: {context}
users:
- name: {context}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      # The identity Pulumi's Google provider uses (and gitops:deployer names), not gcloud's CLI
      # account: one identity for every call `pulumi up` makes.
      args:
      - --use_application_default_credentials
      installHint: Install gke-gcloud-auth-plugin (gcloud components install
        gke-gcloud-auth-plugin) and put it on PATH.
      provideClusterInfo: true
"""


@dataclass
class GkeClusterArgs:
    project: pulumi.Input[str]
    location: str
    name: str
    node_account_id: str
    mode: str  # "autopilot" or "standard"
    release_channel: str
    deletion_protection: bool
    machine_type: str
    node_count: int
    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]
    pods_range: str
    services_range: str
    api_dependencies: list[pulumi.Resource]
    binary_authorization: bool = False
    # Prefix of the children's names: "" for the stack's cluster (today's names), the cluster's
    # name for an environment's own cluster, so that two clusters never share a resource name.
    name_prefix: str = ""


class GkeCluster(pulumi.ComponentResource):
    """A regional GKE cluster with Workload Identity and a dedicated node service account."""

    def __init__(self, name: str, args: GkeClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:GkeCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)

        # Dedicated node identity with the minimal node role.
        self.node_account = gcp.serviceaccount.Account(
            f"{args.name_prefix}nodes",
            project=args.project,
            account_id=args.node_account_id,
            display_name=f"GKE nodes of {args.name}",
            opts=child,
        )
        self.node_role = gcp.projects.IAMMember(
            f"{args.name_prefix}nodes-default-node-role",
            project=args.project,
            role=NODE_ROLE,
            member=self.node_account.member,
            opts=child,
        )

        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        # VPC-native: pods and services take the subnet's secondary ranges.
        ip_allocation = gcp.container.ClusterIpAllocationPolicyArgs(
            cluster_secondary_range_name=args.pods_range,
            services_secondary_range_name=args.services_range,
        )
        release_channel = gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel)
        binary_authorization = gcp.container.ClusterBinaryAuthorizationArgs(
            evaluation_mode=CLUSTER_EVALUATION_MODE) if args.binary_authorization else None
        if args.mode == "autopilot":
            self.cluster = gcp.container.Cluster(
                f"{args.name_prefix}cluster",
                project=args.project,
                location=args.location,
                name=args.name,
                deletion_protection=args.deletion_protection,
                release_channel=release_channel,
                network=args.network,
                subnetwork=args.subnetwork,
                ip_allocation_policy=ip_allocation,
                binary_authorization=binary_authorization,
                enable_autopilot=True,
                cluster_autoscaling=gcp.container.ClusterClusterAutoscalingArgs(
                    auto_provisioning_defaults=gcp.container.
                    ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
                        service_account=self.node_account.email, oauth_scopes=scopes)),
                opts=child,
            )
        else:
            self.cluster = gcp.container.Cluster(
                f"{args.name_prefix}cluster",
                project=args.project,
                location=args.location,
                name=args.name,
                deletion_protection=args.deletion_protection,
                release_channel=release_channel,
                network=args.network,
                subnetwork=args.subnetwork,
                ip_allocation_policy=ip_allocation,
                binary_authorization=binary_authorization,
                # The default pool cannot be configured as we want: replace it with our own.
                remove_default_node_pool=True,
                initial_node_count=1,
                # Even the short-lived default pool must not run as the Compute Engine default.
                node_config=gcp.container.ClusterNodeConfigArgs(
                    service_account=self.node_account.email,
                    oauth_scopes=scopes,
                    workload_metadata_config=gcp.container.
                    ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
                ),
                workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                    workload_pool=pulumi.Output.concat(args.project, ".svc.id.goog"),
                ),
                opts=child,
            )
            self.node_pool = gcp.container.NodePool(
                f"{args.name_prefix}nodes",
                project=args.project,
                location=args.location,
                cluster=self.cluster.name,
                node_count=args.node_count,
                node_config=gcp.container.NodePoolNodeConfigArgs(
                    machine_type=args.machine_type,
                    service_account=self.node_account.email,
                    oauth_scopes=scopes,
                    workload_metadata_config=gcp.container.
                    NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
                ),
                management=gcp.container.NodePoolManagementArgs(auto_repair=True,
                                                                auto_upgrade=True),
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(pulumi.Output.all(
            self.cluster.name, self.cluster.endpoint,
            self.cluster.master_auth.cluster_ca_certificate,
        ).apply(lambda v: KUBECONFIG.format(
            context=f"gke_{v[0]}", endpoint=v[1], ca=v[2])))
        self.register_outputs({
            "name": self.cluster.name,
            "location": self.cluster.location,
            "kubeconfig": self.kubeconfig,
        })
