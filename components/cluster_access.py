"""In-cluster access: one namespace per app and RBAC that lets the delivery identity change that
namespace only.

Design decisions:
- The delivery identity authenticates with `roles/container.clusterViewer` (project) and gets
  everything else from a namespaced Role, instead of project-wide `roles/container.developer`,
  which would let it change every namespace.
- GKE maps a Google service account to the Kubernetes user named by its email.
- The Role includes Leases: the delivery build takes one per app to serialize overlapping
  deliveries.
- The Role covers the namespaced kinds a typical app holds, with only the verbs delivery uses:
  `kubectl apply` (get, create, patch), pruning (get, delete) and, for Deployments,
  StatefulSets and DaemonSets, `kubectl rollout status` (list, watch). No identity may list or
  watch Secrets (a list returns every value). Custom resource kinds come from the app's
  `customResources` config, one rule per group with the apply and prune verbs; config cannot
  name a group the API server serves itself, so it can never widen the built-in kinds.
- Kubernetes' escalation rules decide what stays out: creating a Role or RoleBinding needs
  either every permission it grants or the `escalate`/`bind` verbs, so a delivery identity
  allowed to write RBAC could hand any app ServiceAccount whatever it holds (or, with `bind`,
  any ClusterRole). Roles and RoleBindings an app's pods need are declared in this program,
  reviewed through the preview build. Also left out: `pods/exec`, `pods/attach`,
  `pods/portforward`, `serviceaccounts/token`, `impersonate`, `deletecollection`.
- What the Role grants is still, in effect, everything the app's namespace holds: whoever can
  create a Deployment can mount any Secret of the namespace and run as any ServiceAccount in
  it (with Workload Identity, act as the Google account it maps to), and a Secret of type
  `kubernetes.io/service-account-token` mints a token for one. Granting Secrets and
  ServiceAccounts therefore adds nothing beyond the workload kinds; the boundary is the
  namespace, which is why every app has its own and the delivery identity nothing elsewhere
  (docs/architecture.md).
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
- Each environment's reconcile identity gets its own Role per app in that environment's
  namespaces, and nowhere else. Its comparison is a dry-run apply (`kubectl diff`), which
  Kubernetes authorizes like the real request (patch, and create for an object that is
  missing), so it holds get, list, patch and create on the app's kinds even where it may not
  heal (Secrets without list); deleting, Leases and the rest of delivery's rules come only with
  self-heal for that app.
- Nested arguments use pulumi-kubernetes' typed `...Args` classes, so a misspelled key or a
  missing verb list fails before anything reaches the cluster.
- One instance per delivery environment: its namespaces (`<app><namespaceSuffix>`) on its
  cluster, bound to its own delivery and reconcile identities only. The environment's name
  prefixes the resource names (none for a stack without environments, which keeps today's
  names). The last environment's reconcile Role and binding were unprefixed while only that
  environment had drift; they carry the old names as aliases, so an existing stack updates
  them in place instead of creating a second `gitops-reconciler` where one exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.config import AppConfig, CustomResources

APPLIED = ["get", "create", "patch", "delete"]  # kubectl apply (get, create, patch), prune
COMPARE = ["get", "list", "patch", "create"]  # kubectl diff's dry-run apply, and listing
READ = ["get", "list", "watch"]
Rule = k8s.rbac.v1.PolicyRuleArgs
# The namespaced kinds apps hold, by API group; Secrets apart (no identity lists them).
APP_RESOURCES: dict[str, list[str]] = {
    "apps": ["deployments", "statefulsets", "daemonsets"],
    "": ["configmaps", "serviceaccounts", "services", "persistentvolumeclaims"],
    "batch": ["jobs", "cronjobs"],
    "autoscaling": ["horizontalpodautoscalers"],
    "policy": ["poddisruptionbudgets"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
}


def app_rules(verbs: list[str]) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    return [Rule(api_groups=[group], resources=resources, verbs=verbs)
            for group, resources in APP_RESOURCES.items()]


DELIVERY_RULES: list[k8s.rbac.v1.PolicyRuleArgs] = [
    *app_rules(APPLIED),
    Rule(api_groups=[""], resources=["secrets"], verbs=APPLIED),
    # kubectl rollout status watches the workload.
    Rule(api_groups=["apps"], resources=APP_RESOURCES["apps"], verbs=["list", "watch"]),
    # Read-only, for diagnosing a rollout: what the workloads made and why pods fail.
    Rule(api_groups=["apps"], resources=["replicasets"], verbs=READ),
    Rule(api_groups=[""], resources=["pods", "pods/log", "events"], verbs=READ),
    Rule(api_groups=["coordination.k8s.io"], resources=["leases"],
         verbs=["get", "create", "update", "delete"]),
]
RECONCILE_RULES: list[k8s.rbac.v1.PolicyRuleArgs] = [
    *app_rules(COMPARE),
    Rule(api_groups=[""], resources=["secrets"], verbs=["get", "patch", "create"]),
]
# Healing also lists the app's kinds, to delete what production no longer holds.
HEAL_RULES: list[k8s.rbac.v1.PolicyRuleArgs] = [*DELIVERY_RULES, *app_rules(["list"])]


def custom_rules(custom: Sequence[CustomResources],
                 verbs: list[str]) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """One rule per custom resource group the app holds."""
    return [Rule(api_groups=[entry.group], resources=list(entry.resources), verbs=verbs)
            for entry in custom]


@dataclass
class AppNamespacesArgs:
    kubeconfig: pulumi.Input[str]
    apps: Sequence[AppConfig]
    delivery_email: pulumi.Input[str]
    namespaces: dict[str, str] | None = None  # app -> namespace name (default: the app's name)
    name_prefix: str = ""  # prefix of the resource names (the environment's)
    reconcile_email: pulumi.Input[str] | None = None  # the environment's reconcile identity
    heal_apps: tuple[str, ...] = ()  # apps the reconcile identity may heal
    reconciler_alias_prefix: str | None = None  # the prefix its reconcile RBAC had before


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
        for config in args.apps:
            app = config.name
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
                rules=[*DELIVERY_RULES, *custom_rules(config.custom_resources, APPLIED)],
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
                former = None if args.reconciler_alias_prefix is None else \
                    [pulumi.Alias(name=f"{args.reconciler_alias_prefix}reconciler-{app}")]
                self._reconciler(config, namespace, args.reconcile_email,
                                 app in args.heal_apps, prefix,
                                 pulumi.ResourceOptions.merge(
                                     in_cluster, pulumi.ResourceOptions(aliases=former)))
        self.register_outputs({"namespaces": list(self.namespaces)})

    def _reconciler(self, config: AppConfig, namespace: k8s.core.v1.Namespace,
                    email: pulumi.Input[str], heal: bool, prefix: str,
                    in_cluster: pulumi.ResourceOptions) -> None:
        """The reconcile identity's Role and binding in the app's namespace."""
        app = config.name
        metadata = k8s.meta.v1.ObjectMetaArgs(name="gitops-reconciler",
                                              namespace=namespace.metadata.name)
        role = k8s.rbac.v1.Role(f"{prefix}reconciler-{app}", metadata=metadata,
                                rules=[*(HEAL_RULES if heal else RECONCILE_RULES),
                                       # A dry-run apply of custom resources, or heal's
                                       # apply; drift lists built-in kinds only.
                                       *custom_rules(config.custom_resources,
                                                     APPLIED if heal else
                                                     ["get", "patch", "create"])],
                                opts=in_cluster)
        k8s.rbac.v1.RoleBinding(
            f"{prefix}reconciler-{app}",
            metadata=metadata,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io",
                                             kind="Role", name=role.metadata.name),
            subjects=[k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io",
                                              kind="User", name=email)],
            opts=in_cluster,
        )
