"""Signed env-repo commits: one Secret Manager secret per committing build identity.

Design decisions:
- The program creates the secrets' containers only, never a version: a private key in a
  version made by Pulumi would sit in the stack's state. The operator makes the keys with
  `ssh-keygen` and adds each as a version (docs/supply-chain.md); until then the builds that
  read them fail at their start, saying the secret has no version. That step outside `pulumi up`
  is why signing is off by default (`gitops:signers` turns it on).
- Each identity may read its own key only (`roles/secretmanager.secretAccessor` on that
  secret), so a compromised app build cannot sign as the delivery identity, and no identity
  holds a project-wide Secret Manager grant.
- Builds read the key through Cloud Build's secret support (`availableSecrets` / `secretEnv`,
  `versions/latest`): it reaches the step as an environment variable, never a substitution, a
  file in the image or the log. `versions/latest` lets a key be rotated by adding a version.
- The public keys come from config (`gitops:signers`): the program cannot read a key it did
  not make. They are the allowed signers, handed to the delivery trigger and exported for
  operators (`pulumi stack output allowed_signers > allowed_signers`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.config import signing_secret_id
from components.pipelines import version_name

SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"


@dataclass
class CommitSigningArgs:
    project: str
    members: dict[str, pulumi.Input[str]]  # committing build identity -> IAM member
    allowed_signers: list[str]  # allowed_signers lines from config
    api_dependencies: list[pulumi.Resource]


class CommitSigning(pulumi.ComponentResource):
    """A key secret per committing identity, readable by that identity alone."""

    def __init__(self, name: str, args: CommitSigningArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:CommitSigning", name, None, opts)
        self.project = args.project
        self.secrets: dict[str, gcp.secretmanager.Secret] = {}
        self.grants: list[pulumi.CustomResource] = []
        for identity, member in args.members.items():
            secret = gcp.secretmanager.Secret(
                f"signing-key-{identity}",
                project=args.project,
                secret_id=signing_secret_id(identity),
                replication=gcp.secretmanager.SecretReplicationArgs(
                    auto=gcp.secretmanager.SecretReplicationAutoArgs()),
                labels={"gitops": "commit-signing", "identity": identity},
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies),
            )
            self.secrets[identity] = secret
            self.grants.append(gcp.secretmanager.SecretIamMember(
                f"signing-key-{identity}-reader",
                project=args.project,
                secret_id=secret.secret_id,
                role=SECRET_ACCESSOR,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            ))
        # One line per signer; the trigger substitution carries them `;`-separated.
        self.allowed_signers = "\n".join(args.allowed_signers) + "\n"
        self.register_outputs({"secrets": {k: s.secret_id for k, s in self.secrets.items()},
                               "allowed_signers": self.allowed_signers})

    def version(self, identity: str) -> str:
        return version_name(self.project, identity)

    @property
    def allowed_signers_substitution(self) -> str:
        return ";".join(self.allowed_signers.splitlines())
