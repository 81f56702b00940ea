"""The Artifact Registry Docker repository for app images and the steps image.

Design decisions:
- Access is granted on this repository only, never the project: CI writes (it pushes app
  images and builds the steps image); every other build identity and the cluster's nodes read
  (every build pulls the steps image its steps run in; nodes pull app images).
- Cleanup bounds storage. Artifact Registry applies delete policies, and a keep policy only
  exempts what it matches from them; when both match a version, keep wins. So:
  - `delete-old`: every version, tagged or not, older than `imageRetentionDays` days (every
    build tags its image, so deleting untagged versions alone would keep everything);
  - `delete-old-untagged`: untagged versions older than `untaggedRetentionDays` days;
  - `keep-newest`: the newest `keepImages` versions of every image, whatever their age.
  Production runs the image of the newest successful delivery of its app, which is among the
  newest N versions of that image unless N newer builds of the app all failed delivery; the
  steps image the triggers name is the newest version of its package. Ages are whole days,
  written as seconds ("older_than" takes a duration).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

SECONDS_PER_DAY = 86_400


def days(count: int) -> str:
    """A cleanup-policy duration of count whole days."""
    return f"{count * SECONDS_PER_DAY}s"


@dataclass
class ImageRegistryArgs:
    project: pulumi.Input[str]
    location: str
    repository_id: str
    keep_images: int
    image_retention_days: int
    untagged_retention_days: int
    writers: dict[str, pulumi.Input[str]]  # label -> IAM member
    readers: dict[str, pulumi.Input[str]]
    api_dependencies: list[pulumi.Resource]


Policy = gcp.artifactregistry.RepositoryCleanupPolicyArgs
Condition = gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs


def cleanup_policies(args: ImageRegistryArgs) -> list[Policy]:
    """Delete by age (whole days), keep the newest N: see the module docstring."""
    return [
        Policy(id="delete-old", action="DELETE",
               condition=Condition(tag_state="ANY", older_than=days(args.image_retention_days))),
        Policy(id="delete-old-untagged", action="DELETE",
               condition=Condition(tag_state="UNTAGGED",
                                   older_than=days(args.untagged_retention_days))),
        Policy(id="keep-newest", action="KEEP",
               most_recent_versions=gcp.artifactregistry.
               RepositoryCleanupPolicyMostRecentVersionsArgs(keep_count=args.keep_images)),
    ]


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
            cleanup_policies=cleanup_policies(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
        )
        grants = [("writer", label, member) for label, member in args.writers.items()] + \
                 [("reader", label, member) for label, member in args.readers.items()]
        self.grants: list[pulumi.CustomResource] = []
        for access, label, member in grants:
            self.grants.append(gcp.artifactregistry.RepositoryIamMember(
                f"images-{access}-{label}",
                project=args.project,
                location=args.location,
                repository=self.repository.name,
                role=f"roles/artifactregistry.{access}",
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            ))
        # REGION-docker.pkg.dev/PROJECT/REPOSITORY: where images are pushed and pulled.
        self.url = pulumi.Output.concat(args.location, "-docker.pkg.dev/", args.project, "/",
                                        self.repository.repository_id)
        self.register_outputs({"url": self.url})
