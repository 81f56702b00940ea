"""Project APIs, enabled once and depended on by every resource that needs them.

`disable_on_destroy=False`: destroying this stack must not switch off APIs that other workloads
in the project may use. Artifact Analysis (containeranalysis) is always on: the app pipeline asks
for verified build provenance, which Cloud Build stores there, and a verified build fails when
it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

BASE_APIS = (
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "storage.googleapis.com",
    "containeranalysis.googleapis.com",
)
PROVIDER_APIS = {
    "github": ("secretmanager.googleapis.com",),
    "csr": ("sourcerepo.googleapis.com",),
}


@dataclass
class ProjectApisArgs:
    project: pulumi.Input[str]
    source_provider: str
    extra: tuple[str, ...] = ()


class ProjectApis(pulumi.ComponentResource):
    """Enables the APIs the delivery system uses; `depends_on(...)` returns them for options."""

    def __init__(self, name: str, args: ProjectApisArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ProjectApis", name, None, opts)
        self.services: dict[str, gcp.projects.Service] = {}
        apis = dict.fromkeys((*BASE_APIS, *PROVIDER_APIS[args.source_provider], *args.extra))
        for api in apis:
            self.services[api] = gcp.projects.Service(
                api.split(".")[0],
                project=args.project,
                service=api,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"services": list(self.services)})

    def depends_on(self, *apis: str) -> list[pulumi.Resource]:
        """The Service resources for the named APIs (short names like "container")."""
        return [self.services[f"{api}.googleapis.com"] for api in apis]
