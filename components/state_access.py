"""Read-only access to this stack's own state for the preview identity.

The state backend exists before `pulumi up` (it holds this stack), so it is not created here;
the preview identity only gets to read it: object read on the GCS bucket and decrypt on the KMS
key of the secrets provider, or, with Pulumi Cloud, access to the Secret Manager secret holding
the access token (which the preview build reads through `availableSecrets`, never a
substitution).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.config import StackConfig


@dataclass
class StateAccessArgs:
    config: StackConfig
    reader: pulumi.Input[str]  # IAM member of the preview identity
    api_dependencies: list[pulumi.Resource]


class StateAccess(pulumi.ComponentResource):
    """Grants the preview identity read access to the state, and nothing that writes."""

    def __init__(self, name: str, args: StateAccessArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:StateAccess", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
        self.grants: list[pulumi.CustomResource] = []
        if cfg.pulumi_cloud:
            self.grants.append(gcp.secretmanager.SecretIamMember(
                "preview-reads-pulumi-token",
                project=cfg.project,
                secret_id=cfg.pulumi_token_secret,
                role="roles/secretmanager.secretAccessor",
                member=args.reader,
                opts=child,
            ))
        else:
            self.grants.append(gcp.storage.BucketIAMMember(
                "preview-reads-state",
                bucket=cfg.state_bucket,
                role="roles/storage.objectViewer",
                member=args.reader,
                opts=child,
            ))
            if cfg.kms_key:
                self.grants.append(gcp.kms.CryptoKeyIAMMember(
                    "preview-decrypts-secrets",
                    crypto_key_id=cfg.kms_key,
                    role="roles/cloudkms.cryptoKeyDecrypter",
                    member=args.reader,
                    opts=child,
                ))
        self.register_outputs({})

    @staticmethod
    def pipeline(config: StackConfig) -> str:
        return "pipelines/preview-pulumi-cloud.yaml" if config.pulumi_cloud \
            else "pipelines/preview.yaml"

    @staticmethod
    def substitutions(config: StackConfig, stack: str) -> dict[str, str]:
        subs = {"_STACK": stack, "_STATE_BACKEND": config.state_backend}
        if config.pulumi_cloud:
            subs["_PULUMI_TOKEN_SECRET"] = (f"projects/{config.project}/secrets/"
                                            f"{config.pulumi_token_secret}/versions/latest")
        return subs
