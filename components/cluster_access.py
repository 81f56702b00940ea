"""In-cluster access: one namespace per app and RBAC that lets the delivery identity change that
namespace only.

Design decisions:
- The delivery identity authenticates with `roles/container.clusterViewer` (project) and gets
  everything else from a namespaced Role, instead of project-wide `roles/container.developer`,
  which would let it change every namespace.
- GKE maps a Google service account to the Kubernetes user named by its email.
- The Role includes Leases: the delivery build takes one per app to serialize overlapping
  deliveries.
- Pull-request previews get no Kubernetes write verb, not even for a dry run: Kubernetes
  authorizes a dry-run create or patch exactly like the real one, so "dry-run verbs" for
  Namespace, Role and RoleBinding would let pull-request code create namespaces and RBAC for
  real. pulumi-kubernetes answers a forbidden server-side dry run in a preview by falling back to
  a client-side preview of the declared object, so a preview of a new app still succeeds and
  the reviewer sees the Namespace, Role and RoleBinding as the program declares them, without
  the API server's defaults and admission checks (those run at `pulumi up`).
- The provider leaves `deleteUnreachable` unset: a cluster that is unreachable for a moment
  must not make `pulumi refresh` drop these objects from the state. When the cluster is really
  gone (deleted by hand, interrupted destroy), the operator sets
  PULUMI_K8S_DELETE_UNREACHABLE=true for that one `refresh`/`destroy` (docs/operations.md).
- The reconcile identity gets its own Role per app. Its comparison is a server-side dry-run
  apply, which Kubernetes authorizes like the real request (patch, and create for an object
  that is missing), so it holds get, list, patch and create on the app's kinds even where it
  may not heal; deleting, Leases and the rest of delivery's rules come only with self-heal for
  that app.
- Nested arguments use pulumi-kubernetes' typed `...Args` classes, so a misspelled key or a
  missing verb list fails before anything reaches the cluster.
- One instance per delivery environment: its namespaces (`<app><namespaceSuffix>`) on its
  cluster, bound to its own delivery identity only. The environment's name prefixes the
  resource names (none for a stack without environments, which keeps today's names).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

CHANGE = ["get", "list", "watch", "create", "update", "patch", "delete"]
READ = ["get", "list", "watch"]
Rule = k8s.rbac.v1.PolicyRuleArgs
DELIVERY_RULES: list[k8s.rbac.v1.PolicyRuleArgs] = [
    Rule(api_groups=["apps"],
         resources=["deployments", "statefulsets", "daemonsets", "replicasets"], verbs=CHANGE),
    Rule(api_groups=[""],
         resources=["services", "configmaps", "serviceaccounts", "persistentvolumeclaims"],
         verbs=CHANGE),
    Rule(api_groups=[""], resources=["pods", "pods/log", "events"], verbs=READ),
    Rule(api_groups=["batch"], resources=["jobs", "cronjobs"], verbs=CHANGE),
    Rule(api_groups=["autoscaling"], resources=["horizontalpodautoscalers"], verbs=CHANGE),
    Rule(api_groups=["policy"], resources=["poddisruptionbudgets"], verbs=CHANGE),
    Rule(api_groups=["networking.k8s.io"], resources=["ingresses", "networkpolicies"],
         verbs=CHANGE),
    Rule(api_groups=["coordination.k8s.io"], resources=["leases"], verbs=CHANGE),
]


COMPARE = ["get", "list", "patch", "create"]  # a server-side dry-run apply, and listing
RECONCILE_RULES: list[k8s.rbac.v1.PolicyRuleArgs] = [
    Rule(api_groups=rule.api_groups, resources=rule.resources, verbs=COMPARE)
    for rule in DELIVERY_RULES if rule.verbs == CHANGE and rule.api_groups != [
        "coordination.k8s.io"]
]


@dataclass
class AppNamespacesArgs:
    kubeconfig: pulumi.Input[str]
    apps: list[str]
    delivery_email: pulumi.Input[str]
    namespaces: dict[str, str] | None = None  # app -> namespace name (default: the app's name)
    name_prefix: str = ""  # prefix of the resource names (the environment's)
    reconcile_email: pulumi.Input[str] | None = None
    heal_apps: tuple[str, ...] = ()  # apps the reconcile identity may heal


class AppNamespaces(pulumi.ComponentResource):
    """A Kubernetes provider for the cluster, and per app a namespace, Role and RoleBinding."""

    def __init__(self, name: str, args: AppNamespacesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:AppNamespaces", name, None, opts)
        prefix = args.name_prefix
        self.provider = k8s.Provider(f"{prefix}gke", kubeconfig=args.kubeconfig,
                                     opts=pulumi.ResourceOptions(parent=self))
        in_cluster = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.namespaces: dict[str, k8s.core.v1.Namespace] = {}
        for app in args.apps:
            namespace = k8s.core.v1.Namespace(
                f"{prefix}ns-{app}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=(args.namespaces or {}).get(app, app),
                    labels={"app.kubernetes.io/managed-by": "gitops"}),
                opts=in_cluster,
            )
            self.namespaces[app] = namespace
            in_namespace = k8s.meta.v1.ObjectMetaArgs(name="gitops-deployer",
                                                      namespace=namespace.metadata.name)
            role = k8s.rbac.v1.Role(
                f"{prefix}deployer-{app}",
                metadata=in_namespace,
                rules=DELIVERY_RULES,
                opts=in_cluster,
            )
            k8s.rbac.v1.RoleBinding(
                f"{prefix}deployer-{app}",
                metadata=in_namespace,
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                                 kind="Role", name=role.metadata.name),
                subjects=[k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io",
                                                  kind="User", name=args.delivery_email)],
                opts=in_cluster,
            )
            if args.reconcile_email is not None:
                self._reconciler(app, namespace, args.reconcile_email, app in args.heal_apps,
                                 in_cluster)
        self.register_outputs({"namespaces": list(self.namespaces)})

    def _reconciler(self, app: str, namespace: k8s.core.v1.Namespace,
                    email: pulumi.Input[str], heal: bool,
                    in_cluster: pulumi.ResourceOptions) -> None:
        """The reconcile identity's Role and binding in the app's namespace."""
        metadata = k8s.meta.v1.ObjectMetaArgs(name="gitops-reconciler",
                                              namespace=namespace.metadata.name)
        role = k8s.rbac.v1.Role(f"reconciler-{app}", metadata=metadata,
                                rules=DELIVERY_RULES if heal else RECONCILE_RULES,
                                opts=in_cluster)
        k8s.rbac.v1.RoleBinding(
            f"reconciler-{app}",
            metadata=metadata,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                             kind="Role", name=role.metadata.name),
            subjects=[k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io",
                                              kind="User", name=email)],
            opts=in_cluster,
        )
