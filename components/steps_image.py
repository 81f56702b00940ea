"""The steps image, built and pushed by `pulumi up` with no manual step.

Design decisions:
- Tagged by the content hash of `scripts/`: the tag changes exactly when what goes into the image
  changes, so triggers always name the scripts they run, and an unchanged image is not rebuilt.
- Built by Cloud Build (no Docker engine needed where Pulumi runs) as the CI identity, never the
  default build account. Its source is staged in a dedicated bucket that only that identity may
  read, with a lifecycle rule that deletes old uploads.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_gcp as gcp

from components.pipelines import PIPELINES, ROOT, SCRIPTS, STEPS_IMAGE_NAME, steps_image_tag
from components.propagation import wait_for_grants


@dataclass
class StepsImageArgs:
    project: pulumi.Input[str]
    region: str
    registry_url: pulumi.Input[str]
    builder_account: pulumi.Input[str]  # projects/{project}/serviceAccounts/{email}
    builder_member: pulumi.Input[str]
    depends_on: list[pulumi.Resource]
    iam_propagation_seconds: int = 120


class StepsImage(pulumi.ComponentResource):
    """`image` is the pushed image reference; resources that use it depend on the build."""

    def __init__(self, name: str, args: StepsImageArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:StepsImage", name, None, opts)
        self.sources = gcp.storage.Bucket(
            "build-sources",
            project=args.project,
            name=pulumi.Output.concat(args.project, "-gitops-build-sources"),
            location=args.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=True,
            lifecycle_rules=[{"action": {"type": "Delete"}, "condition": {"age": 7}}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        reader = gcp.storage.BucketIAMMember(
            "builder-reads-sources",
            bucket=self.sources.name,
            role="roles/storage.objectViewer",
            member=args.builder_member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The builder reads its sources as soon as the build starts: wait out IAM propagation.
        readable = wait_for_grants("builder-reads-sources-propagation", [reader],
                                   args.iam_propagation_seconds, parent=self)
        tag = steps_image_tag()
        self.image = pulumi.Output.concat(args.registry_url, f"/{STEPS_IMAGE_NAME}:{tag}")
        self.build = command.local.Command(
            "build-steps-image",
            create=pulumi.Output.all(self.image, self.sources.name, args.project,
                                     args.builder_account).apply(
                lambda v: submit_command(image=v[0], bucket=v[1], project=v[2],
                                         region=args.region, account=v[3])),
            dir=str(ROOT),
            triggers=[tag],
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[reader, readable, *args.depends_on]),
        )
        self.register_outputs({"image": self.image})


def submit_command(image: str, bucket: str, project: str, region: str, account: str) -> str:
    config = (PIPELINES / "steps-image.yaml").relative_to(ROOT)
    return " ".join([
        "gcloud", "builds", "submit", shlex.quote(str(SCRIPTS.relative_to(ROOT))),
        f"--config={shlex.quote(str(config))}",
        f"--substitutions=_IMAGE={shlex.quote(image)}",
        f"--project={shlex.quote(project)}",
        f"--region={shlex.quote(region)}",
        f"--service-account={shlex.quote(account)}",
        f"--gcs-source-staging-dir=gs://{bucket}/source",
    ])
