"""In-cluster access: one namespace per app and RBAC that lets the delivery identity change that
namespace only.

Design decisions:
- The delivery identity authenticates with `roles/container.clusterViewer` (project) and gets
  everything else from a namespaced Role, instead of project-wide `roles/container.developer`,
  which would let it change every namespace.
- GKE maps a Google service account to the Kubernetes user named by its email.
- The Role includes Leases: the delivery build takes one per app to serialize overlapping
  deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

DELIVERY_RULES = [
    {"api_groups": ["apps"],
     "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": [""],
     "resources": ["services", "configmaps", "serviceaccounts", "persistentvolumeclaims"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": [""], "resources": ["pods", "pods/log", "events"],
     "verbs": ["get", "list", "watch"]},
    {"api_groups": ["batch"], "resources": ["jobs", "cronjobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"api_groups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]


@dataclass
class AppNamespacesArgs:
    kubeconfig: pulumi.Input[str]
    apps: list[str]
    delivery_email: pulumi.Input[str]


class AppNamespaces(pulumi.ComponentResource):
    """A Kubernetes provider for the cluster, and per app a namespace, Role and RoleBinding."""

    def __init__(self, name: str, args: AppNamespacesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:AppNamespaces", name, None, opts)
        self.provider = k8s.Provider("gke", kubeconfig=args.kubeconfig,
                                     opts=pulumi.ResourceOptions(parent=self))
        in_cluster = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.namespaces: dict[str, k8s.core.v1.Namespace] = {}
        for app in args.apps:
            namespace = k8s.core.v1.Namespace(
                f"ns-{app}",
                metadata={"name": app, "labels": {"app.kubernetes.io/managed-by": "gitops"}},
                opts=in_cluster,
            )
            self.namespaces[app] = namespace
            role = k8s.rbac.v1.Role(
                f"deployer-{app}",
                metadata={"name": "gitops-deployer", "namespace": namespace.metadata.name},
                rules=DELIVERY_RULES,
                opts=in_cluster,
            )
            k8s.rbac.v1.RoleBinding(
                f"deployer-{app}",
                metadata={"name": "gitops-deployer", "namespace": namespace.metadata.name},
                role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role",
                          "name": role.metadata.name},
                subjects=[{"api_group": "rbac.authorization.k8s.io", "kind": "User",
                           "name": args.delivery_email}],
                opts=in_cluster,
            )
        self.register_outputs({"namespaces": list(self.namespaces)})
