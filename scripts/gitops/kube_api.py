"""What Kubernetes itself knows about a kind: its schema, whether it still exists, its scope.

Design decisions:
- Schemas are kubernetes-validate's (its strict variants: unknown fields are errors, as
  `kubectl apply` with server-side field validation reports them). A kind is built in when a
  definition of that Kubernetes version names its exact group, version and kind
  (`x-kubernetes-group-version-kind`); matching by the group's first label, as the library's
  file names do, would validate a custom `apps.example.com/v1 Deployment` as a real one.
- The definitions are loaded once per run and one validator is kept per kind: the library's
  `validate()` reads its 1.4 MB definitions file again for every document.
- Removed API versions are refused with the version that replaces them, from Kubernetes'
  Deprecated API Migration Guide (kubernetes.io/docs/reference/using-api/deprecation-guide/).
- Cluster-scoped kinds: `kubectl api-resources --namespaced=false` of Kubernetes 1.33 (the
  schemas do not record scope). The delivery identity may only write the app's namespace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import kubernetes_validate
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from gitops.errors import BadInput

DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
Version = tuple[int, int]
# Kinds in every group that are not objects one applies.
META_KINDS = frozenset({"DeleteOptions", "WatchEvent", "Status", "APIGroup", "APIGroupList",
                        "APIResourceList", "APIVersions"})

# (apiVersion, kind) -> (removed in, replacement apiVersion or advice)
REMOVED: dict[tuple[str, str], tuple[str, str]] = {
    **{(api, kind): ("1.16", "apps/v1") for api, kinds in {
        "extensions/v1beta1": ("Deployment", "DaemonSet", "ReplicaSet"),
        "apps/v1beta1": ("Deployment", "StatefulSet", "ReplicaSet"),
        "apps/v1beta2": ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"),
    }.items() for kind in kinds},
    ("extensions/v1beta1", "NetworkPolicy"): ("1.16", "networking.k8s.io/v1"),
    ("extensions/v1beta1", "PodSecurityPolicy"): ("1.16", "nothing (PodSecurityPolicy is gone "
                                                          "since 1.25: use Pod Security "
                                                          "Admission)"),
    ("extensions/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "Ingress"): ("1.22", "networking.k8s.io/v1"),
    ("networking.k8s.io/v1beta1", "IngressClass"): ("1.22", "networking.k8s.io/v1"),
    **{("admissionregistration.k8s.io/v1beta1", kind): ("1.22", "admissionregistration.k8s.io/v1")
       for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")},
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"): ("1.22",
                                                                   "apiextensions.k8s.io/v1"),
    ("apiregistration.k8s.io/v1beta1", "APIService"): ("1.22", "apiregistration.k8s.io/v1"),
    ("authentication.k8s.io/v1beta1", "TokenReview"): ("1.22", "authentication.k8s.io/v1"),
    **{("authorization.k8s.io/v1beta1", kind): ("1.22", "authorization.k8s.io/v1") for kind in
       ("LocalSubjectAccessReview", "SelfSubjectAccessReview", "SubjectAccessReview")},
    ("certificates.k8s.io/v1beta1", "CertificateSigningRequest"): ("1.22",
                                                                   "certificates.k8s.io/v1"),
    ("coordination.k8s.io/v1beta1", "Lease"): ("1.22", "coordination.k8s.io/v1"),
    **{("rbac.authorization.k8s.io/v1beta1", kind): ("1.22", "rbac.authorization.k8s.io/v1")
       for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")},
    ("scheduling.k8s.io/v1beta1", "PriorityClass"): ("1.22", "scheduling.k8s.io/v1"),
    **{("storage.k8s.io/v1beta1", kind): ("1.22", "storage.k8s.io/v1")
       for kind in ("CSIDriver", "CSINode", "StorageClass", "VolumeAttachment")},
    ("batch/v1beta1", "CronJob"): ("1.25", "batch/v1"),
    ("discovery.k8s.io/v1beta1", "EndpointSlice"): ("1.25", "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "Event"): ("1.25", "events.k8s.io/v1"),
    ("autoscaling/v2beta1", "HorizontalPodAutoscaler"): ("1.25", "autoscaling/v2"),
    ("policy/v1beta1", "PodDisruptionBudget"): ("1.25", "policy/v1"),
    ("policy/v1beta1", "PodSecurityPolicy"): ("1.25", "nothing (use Pod Security Admission)"),
    ("node.k8s.io/v1beta1", "RuntimeClass"): ("1.25", "node.k8s.io/v1"),
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): ("1.26", "autoscaling/v2"),
    ("storage.k8s.io/v1beta1", "CSIStorageCapacity"): ("1.27", "storage.k8s.io/v1"),
    **{(f"flowcontrol.apiserver.k8s.io/{version}", kind): (removed,
                                                           "flowcontrol.apiserver.k8s.io/v1")
       for version, removed in (("v1beta1", "1.26"), ("v1beta2", "1.29"), ("v1beta3", "1.32"))
       for kind in ("FlowSchema", "PriorityLevelConfiguration")},
}

# (group, kind) of every cluster-scoped built-in kind.
CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    (group, kind) for group, kinds in {
        "": ("Namespace", "Node", "PersistentVolume", "ComponentStatus"),
        "admissionregistration.k8s.io": (
            "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
            "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"),
        "apiextensions.k8s.io": ("CustomResourceDefinition",),
        "apiregistration.k8s.io": ("APIService",),
        "authentication.k8s.io": ("TokenReview", "SelfSubjectReview"),
        "authorization.k8s.io": ("SelfSubjectAccessReview", "SelfSubjectRulesReview",
                                 "SubjectAccessReview"),
        "certificates.k8s.io": ("CertificateSigningRequest", "ClusterTrustBundle"),
        "flowcontrol.apiserver.k8s.io": ("FlowSchema", "PriorityLevelConfiguration"),
        "internal.apiserver.k8s.io": ("StorageVersion",),
        "networking.k8s.io": ("IngressClass", "IPAddress", "ServiceCIDR"),
        "node.k8s.io": ("RuntimeClass",),
        "policy": ("PodSecurityPolicy",),
        "rbac.authorization.k8s.io": ("ClusterRole", "ClusterRoleBinding"),
        "resource.k8s.io": ("DeviceClass", "ResourceSlice", "DeviceTaintRule"),
        "scheduling.k8s.io": ("PriorityClass",),
        "storage.k8s.io": ("CSIDriver", "CSINode", "StorageClass", "VolumeAttachment",
                           "VolumeAttributesClass"),
        "storagemigration.k8s.io": ("StorageVersionMigration",),
    }.items() for kind in kinds)


def split_api_version(api_version: str) -> tuple[str, str]:
    """(group, version): `apps/v1` -> ("apps", "v1"), `v1` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


def parse_version(text: str) -> Version | None:
    match = VERSION_RE.fullmatch(text)
    return (int(match[1]), int(match[2])) if match else None


@cache
def supported_versions() -> dict[Version, str]:
    """(major, minor) -> the folder of kubernetes-validate's strict schemas for it."""
    found = {}
    for entry in (files(kubernetes_validate) / "kubernetes-json-schema").iterdir():
        name = entry.name.removesuffix("-local-strict")
        version = parse_version(name) if name != entry.name else None
        if version:
            found[version] = entry.name
    return dict(sorted(found.items()))


def schema_version(kube_version: str) -> Version:
    """The schema set for a Kubernetes version (`1.33`, `1.33.0` or `v1.33.2`)."""
    wanted = parse_version(kube_version)
    if wanted is None:
        raise BadInput(f"--kube-version {kube_version!r} is not a version such as 1.33")
    available = supported_versions()
    if wanted not in available:
        first, last = min(available), max(available)
        raise BadInput(f"--kube-version {kube_version}: schemas exist for "
                       f"{first[0]}.{first[1]} to {last[0]}.{last[1]}")
    return wanted


@dataclass(frozen=True)
class Problem:
    path: str
    message: str  # may quote the offending value
    rule: str  # the schema keyword that failed (`type`, `additionalProperties`, ...)


class KubeSchemas:
    """The built-in kinds of one Kubernetes version and their strict schemas."""

    def __init__(self, kube_version: str) -> None:
        self.version = schema_version(kube_version)
        self.label = f"{self.version[0]}.{self.version[1]}"
        folder = files(kubernetes_validate) / "kubernetes-json-schema" / \
            supported_versions()[self.version]
        definitions = json.loads((folder / "_definitions.json").read_text())
        self.kinds: dict[tuple[str, str], str] = {}  # (apiVersion, kind) -> definition
        for name, definition in definitions["$defs"].items():
            for gvk in definition.get("x-kubernetes-group-version-kind", []):
                if gvk["kind"] in META_KINDS:
                    continue
                api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self.kinds[(api, gvk["kind"])] = name
        self.groups = {split_api_version(api)[0] for api, _ in self.kinds} | \
            {split_api_version(api)[0] for api, _ in REMOVED}
        self.registry: Registry = Resource.from_contents(
            {**definitions, "$id": DEFINITIONS_ID}) @ Registry()
        self.validators: dict[str, jsonschema.protocols.Validator] = {}

    def is_builtin(self, api_version: str, kind: str) -> bool:
        """Whether the kind belongs to Kubernetes itself (known, removed or misspelled)."""
        return split_api_version(api_version)[0] in self.groups

    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.kinds

    def unknown(self, api_version: str, kind: str) -> str:
        """Why a built-in (apiVersion, kind) has no schema: removed (and its replacement)."""
        removed = REMOVED.get((api_version, kind))
        if removed and (parse_version(removed[0]) or (0, 0)) <= self.version:
            return (f"{kind} {api_version} was removed in Kubernetes {removed[0]}: "
                    f"use {removed[1]}")
        others = sorted(api for api, k in self.kinds if k == kind)
        hint = f" (it exists in {', '.join(others)})" if others else ""
        return f"no schema for {kind} {api_version} in Kubernetes {self.label}{hint}"

    def problem(self, data: dict[str, Any]) -> Problem | None:
        """The first schema violation of a built-in object, or None."""
        name = self.kinds[(str(data["apiVersion"]), str(data["kind"]))]
        validator = self.validators.get(name)
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                {"$ref": f"{DEFINITIONS_ID}#/$defs/{name}"}, registry=self.registry)
            self.validators[name] = validator
        error = best_match(validator.iter_errors(data))
        if error is None:
            return None
        return Problem(".".join(str(p) for p in error.absolute_path) or "(root)", error.message,
                       str(error.validator))


@cache
def schemas_for(kube_version: str) -> KubeSchemas:
    return KubeSchemas(kube_version)


def is_cluster_scoped(api_version: str, kind: str) -> bool:
    return (split_api_version(api_version)[0], kind) in CLUSTER_SCOPED
