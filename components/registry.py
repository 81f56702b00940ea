"""The Artifact Registry Docker repository for app images and the steps image.

Cleanup policies bound storage cost: the newest N versions of each image are kept, untagged
images older than the retention are deleted. The CI identity may write to this repository only;
the cluster's nodes may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass
class ImageRegistryArgs:
    project: pulumi.Input[str]
    location: str
    repository_id: str
    keep_images: int
    untagged_retention_days: int
    writers: dict[str, pulumi.Input[str]]  # label -> IAM member
    readers: dict[str, pulumi.Input[str]]
    api_dependencies: list[pulumi.Resource]


class ImageRegistry(pulumi.ComponentResource):
    """A Docker repository with cleanup policies and repository-scoped IAM."""

    def __init__(self, name: str, args: ImageRegistryArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:ImageRegistry", name, None, opts)
        self.repository = gcp.artifactregistry.Repository(
            "images",
            project=args.project,
            location=args.location,
            repository_id=args.repository_id,
            format="DOCKER",
            description="App images and the GitOps steps image",
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                {
                    "id": "keep-newest",
                    "action": "KEEP",
                    "most_recent_versions": {"keep_count": args.keep_images},
                },
                {
                    "id": "delete-old-untagged",
                    "action": "DELETE",
                    "condition": {
                        "tag_state": "UNTAGGED",
                        "older_than": f"{args.untagged_retention_days * 86400}s",
                    },
                },
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
        )
        grants = [("writer", label, member) for label, member in args.writers.items()] + \
                 [("reader", label, member) for label, member in args.readers.items()]
        for access, label, member in grants:
            gcp.artifactregistry.RepositoryIamMember(
                f"images-{access}-{label}",
                project=args.project,
                location=args.location,
                repository=self.repository.name,
                role=f"roles/artifactregistry.{access}",
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
        # REGION-docker.pkg.dev/PROJECT/REPOSITORY: where images are pushed and pulled.
        self.url = pulumi.Output.concat(args.location, "-docker.pkg.dev/", args.project, "/",
                                        self.repository.repository_id)
        self.register_outputs({"url": self.url})
