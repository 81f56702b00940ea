"""The cluster's network: a dedicated VPC and subnet, or an existing pair named in config.

Design decisions:
- Never the `default` network: organisations with the "skip default network creation" policy
  have none, and a shared default network mixes this cluster with everything else.
- The cluster is VPC-native (alias IPs): pods and services get the subnet's secondary ranges,
  which GKE Autopilot requires and Standard recommends.
- Created: VPC `gitops` in custom subnet mode (no auto subnets in every region), one subnet in
  the stack's region with Private Google Access, so nodes reach Artifact Registry and Google
  APIs without external addresses. The ranges (nodes /20, pods /14, services /20) leave room
  for a regional cluster of several hundred nodes.
- Existing: the names are passed through; their secondary ranges must exist (GKE reports a
  missing range when the cluster is created).
- Environments with their own cluster share the subnet (nodes) but not secondary ranges, which
  GKE does not let two clusters share: each extra cluster C gets `<podsRange>-C` and
  `<servicesRange>-C` (created: the next free /14 for pods, /20 for services; existing network:
  they must exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

NETWORK_NAME = "gitops"
NODES_CIDR = "10.0.0.0/20"
PODS_CIDR = "10.4.0.0/14"
SERVICES_CIDR = "10.8.0.0/20"
MAX_EXTRA_CLUSTERS = 15  # services /20s fit in 10.8.0.0/16 after the first


def extra_ranges(index: int) -> tuple[str, str]:
    """Pods and services CIDRs of the index-th extra cluster (1-based), clear of the others."""
    return f"10.{12 + 4 * (index - 1)}.0.0/14", f"10.8.{16 * index}.0/20"


@dataclass
class ClusterNetworkArgs:
    project: pulumi.Input[str]
    region: str
    pods_range: str
    services_range: str
    api_dependencies: list[pulumi.Resource]
    existing_network: str | None = None
    existing_subnetwork: str | None = None
    extra_clusters: list[str] = field(default_factory=list)  # environments' own clusters


class ClusterNetwork(pulumi.ComponentResource):
    """`network` and `subnetwork` (names or self links) and the secondary range names."""

    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]

    def __init__(self, name: str, args: ClusterNetworkArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ClusterNetwork", name, None, opts)
        self.pods_range = args.pods_range
        self.services_range = args.services_range
        self.extra_clusters = list(args.extra_clusters)
        if len(self.extra_clusters) > MAX_EXTRA_CLUSTERS:
            raise ValueError(f"at most {MAX_EXTRA_CLUSTERS} clusters besides the stack's")
        if args.existing_network and args.existing_subnetwork:
            self.network = args.existing_network
            self.subnetwork = args.existing_subnetwork
        else:
            child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
            vpc = gcp.compute.Network(
                "vpc",
                project=args.project,
                name=NETWORK_NAME,
                auto_create_subnetworks=False,
                description="GitOps delivery: the GKE cluster's network",
                opts=child,
            )
            subnet = gcp.compute.Subnetwork(
                "subnet",
                project=args.project,
                region=args.region,
                name=NETWORK_NAME,
                network=vpc.id,
                ip_cidr_range=NODES_CIDR,
                private_ip_google_access=True,
                secondary_ip_ranges=[
                    gcp.compute.SubnetworkSecondaryIpRangeArgs(
                        range_name=args.pods_range, ip_cidr_range=PODS_CIDR),
                    gcp.compute.SubnetworkSecondaryIpRangeArgs(
                        range_name=args.services_range, ip_cidr_range=SERVICES_CIDR),
                    *(range_args
                      for index, cluster in enumerate(self.extra_clusters, start=1)
                      for range_args in self.extra_range_args(cluster, index)),
                ],
                opts=child,
            )
            self.network = vpc.id
            self.subnetwork = subnet.id
        self.register_outputs({"network": self.network, "subnetwork": self.subnetwork})

    def ranges_for(self, cluster: str | None) -> tuple[str, str]:
        """(pods, services) secondary range names of a cluster (None: the stack's cluster)."""
        if cluster is None:
            return self.pods_range, self.services_range
        return f"{self.pods_range}-{cluster}", f"{self.services_range}-{cluster}"

    def extra_range_args(self, cluster: str, index: int
                         ) -> list[gcp.compute.SubnetworkSecondaryIpRangeArgs]:
        pods_name, services_name = self.ranges_for(cluster)
        pods_cidr, services_cidr = extra_ranges(index)
        return [gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=pods_name,
                                                           ip_cidr_range=pods_cidr),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=services_name,
                                                           ip_cidr_range=services_cidr)]
