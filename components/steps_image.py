"""The steps image and the preview image, built and pushed by `pulumi up` with no manual step.

Design decisions:
- Tagged by the content hash of `scripts/` and its build config: the tag changes exactly when
  what goes into the images changes, so triggers always name the scripts and tools they run,
  and an unchanged image is not rebuilt.
- Built by Cloud Build (no Docker engine needed where Pulumi runs) as the CI identity, never the
  default build account. Its source is staged in a dedicated bucket that only that identity may
  read, with a lifecycle rule that deletes old uploads.
- The local command's inputs hold no path of this checkout (relative paths, run from the project
  folder, which it checks): a preview or an `up` from another clone (`/workspace` in Cloud
  Build) sees no change and rebuilds nothing.
- One identity: the submit authenticates with the application-default credentials
  (`CLOUDSDK_AUTH_ACCESS_TOKEN`, only in that shell's environment), the identity the Pulumi
  provider uses and that `gitops:deployer` defaults to, so its actAs grant on the CI account is
  the one that counts, whatever account gcloud's CLI is logged in as.
- The build logs to Cloud Logging only (a user-specified service account needs that), which
  plain `gcloud builds submit` cannot stream: the command submits, streams with
  `gcloud beta builds log --stream` where available, waits for the result, and on failure says
  where the log is (the command and the console URL), not just an id.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_gcp as gcp

from components.pipelines import (
    IMAGES_BUILD,
    PREVIEW_IMAGE_NAME,
    ROOT,
    SCRIPTS,
    STEPS_IMAGE_NAME,
    steps_image_tag,
)
from components.propagation import wait_for_grants

CONSOLE_BUILD_URL = ("https://console.cloud.google.com/cloud-build/builds;region={region}/"
                     "{build}?project={project}")
# What may reach the shell unquoted inside the error message: ids, regions, image references.
PLAIN = re.compile(r"^[A-Za-z0-9._:/@-]+$")


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
    """`image` and `preview_image` are the pushed references; users depend on `build`."""

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
        self.preview_image = pulumi.Output.concat(args.registry_url,
                                                  f"/{PREVIEW_IMAGE_NAME}:{tag}")
        self.build = command.local.Command(
            "build-steps-image",
            create=pulumi.Output.all(self.image, self.preview_image, self.sources.name,
                                     args.project, args.builder_account).apply(
                lambda v: submit_command(image=v[0], preview_image=v[1], bucket=v[2],
                                         project=v[3], region=args.region, account=v[4])),
            triggers=[tag],
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[reader, readable, *args.depends_on]),
        )
        self.register_outputs({"image": self.image, "preview_image": self.preview_image})


def plain(value: str) -> str:
    if not PLAIN.match(value):
        raise ValueError(f"unexpected character in {value!r}")
    return value


def submit_command(image: str, preview_image: str, bucket: str, project: str, region: str,
                   account: str) -> str:
    """The shell script that builds both images; run by /bin/sh from the project folder."""
    where = f"--project={plain(project)} --region={plain(region)}"
    console = CONSOLE_BUILD_URL.format(region=region, build="$build", project=project)
    source = SCRIPTS.relative_to(ROOT).as_posix()
    config = IMAGES_BUILD.relative_to(ROOT).as_posix()
    submit = " ".join([
        "gcloud", "builds", "submit", shlex.quote(source),
        shlex.quote(f"--config={config}"),
        shlex.quote(f"--substitutions=_IMAGE={image},_PREVIEW_IMAGE={preview_image}"),
        where,
        shlex.quote(f"--service-account={account}"),
        shlex.quote(f"--gcs-source-staging-dir=gs://{plain(bucket)}/source"),
        "--async", "--format='value(id)'",
    ])
    return "\n".join([
        "set -eu",
        f'[ -f Pulumi.yaml ] && [ -f {config} ] || {{ echo "error: run pulumi from the project '
        f'folder (the one holding Pulumi.yaml), not $(pwd)" >&2; exit 2; }}',
        'token=$(gcloud auth application-default print-access-token) || { echo "error: no '
        'application-default credentials: run gcloud auth application-default login" >&2; '
        'exit 2; }',
        'export CLOUDSDK_AUTH_ACCESS_TOKEN="$token"',
        f"build=$({submit})",
        f'echo "steps image build $build: streaming its log (console: {console})"',
        f'gcloud beta builds log --stream "$build" {where} || true',
        "while :; do",
        f"  status=$(gcloud builds describe \"$build\" {where} --format='value(status)')",
        '  case "$status" in QUEUED|PENDING|WORKING) sleep 10;; *) break;; esac',
        "done",
        f'[ "$status" = SUCCESS ] || {{ echo "error: steps image build $build ended $status; '
        f'read its log with: gcloud beta builds log $build {where} (or {console})" >&2; '
        "exit 1; }",
    ])
