"""Source repositories: GitHub through a Cloud Build 2nd-gen connection, or Cloud Source
Repositories.

Design decisions:
- GitHub (default): the repositories already exist on GitHub; we link them through one
  connection in the build region. The Cloud Build service agent must read the OAuth token secret
  before the connection is created, so the connection waits for that grant and its propagation.
  Builds that push (CI to candidate, delivery to production) get `roles/cloudbuild.tokenAccessor`
  on the connection only: they ask the connection for a short-lived read/write token at run
  time, so no token sits in a substitution or a file. Builds that only read the env repo
  (reconcile) get `roles/cloudbuild.readTokenAccessor` and a read-only token. The deployer
  gets the token accessor role too, because `pulumi up` creates the env branches with the
  connection's token (no local GitHub credential is needed).
- CSR: Cloud Source Repositories (closed to new Google Cloud customers since June 2024) are
  created here; writers (the pushing builds and the deployer) get `roles/source.writer` on the
  env repo only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.config import StackConfig
from components.propagation import wait_for_grants


@dataclass
class RepoRef:
    """What triggers and builds need to know about one repository."""

    name: str
    url: pulumi.Input[str]
    link: pulumi.Output[str] | None = None  # 2nd-gen repository resource id (GitHub only)


@dataclass
class SourceRepositoriesArgs:
    config: StackConfig
    pushers: dict[str, pulumi.Input[str]]  # label -> IAM member that pushes to the env repo
    deployer: str  # IAM member running `pulumi up`; creates the env branches
    readers: dict[str, tuple[list[str], pulumi.Input[str]]] = field(default_factory=dict)
    # label -> (repository keys: "app-<name>", "env", "infra"; IAM member) that read (CSR)
    api_dependencies: list[pulumi.Resource] = field(default_factory=list)


class SourceRepositories(pulumi.ComponentResource):
    """App repositories, the env repository and the infra repository, with their access."""

    def __init__(self, name: str, args: SourceRepositoriesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gitops:index:SourceRepositories", name, None, opts)
        cfg = args.config
        self.apps: dict[str, RepoRef] = {}
        # Keys: "app-<name>" for app repositories, so no app name can clash with env or infra.
        names = {f"app-{app.name}": app.repo for app in cfg.apps}
        names.update({"env": cfg.env_repo, "infra": cfg.infra_repo})
        self.connection: gcp.cloudbuildv2.Connection | None = None
        self.grants: list[pulumi.CustomResource] = []
        refs = self._github(cfg, names, args) if cfg.github else self._csr(cfg, names, args)
        self.env = refs.pop("env")
        self.infra = refs.pop("infra")
        self.apps = {key.removeprefix("app-"): ref for key, ref in refs.items()}
        self.register_outputs({
            "env_repo_url": self.env.url,
            "infra_repo_url": self.infra.url,
            "app_repo_urls": {app: ref.url for app, ref in self.apps.items()},
        })

    def _github(self, cfg: StackConfig, names: dict[str, str],
                args: SourceRepositoriesArgs) -> dict[str, RepoRef]:
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies)
        agent = gcp.projects.ServiceIdentity(
            "cloudbuild-agent", project=cfg.project, service="cloudbuild.googleapis.com",
            opts=child)
        # The service agent reads the token when the connection is created: grant it first.
        secret_access = gcp.secretmanager.SecretIamMember(
            "agent-reads-github-token",
            project=cfg.project,
            secret_id=cfg.github_token_secret,
            role="roles/secretmanager.secretAccessor",
            member=agent.member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.grants.append(secret_access)
        secret_visible = wait_for_grants("github-token-grant-propagation", [secret_access],
                                         cfg.iam_propagation_seconds, parent=self)
        self.connection = gcp.cloudbuildv2.Connection(
            "github",
            project=cfg.project,
            location=cfg.region,
            name="github",
            github_config=gcp.cloudbuildv2.ConnectionGithubConfigArgs(
                app_installation_id=cfg.github_app_installation_id,
                authorizer_credential=gcp.cloudbuildv2.
                ConnectionGithubConfigAuthorizerCredentialArgs(
                    oauth_token_secret_version=f"projects/{cfg.project}/secrets/"
                                               f"{cfg.github_token_secret}/versions/latest"),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret_access, secret_visible]),
        )
        token_users = {**args.pushers, "deployer": args.deployer}
        for label, member in token_users.items():
            self.grants.append(gcp.cloudbuildv2.ConnectionIAMMember(
                f"{label}-token-accessor",
                project=cfg.project,
                location=cfg.region,
                name=self.connection.name,
                role="roles/cloudbuild.tokenAccessor",
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            ))
        # A build that reads the env repo itself (reconcile) asks for a read-only token.
        for label, (keys, member) in args.readers.items():
            if "env" in keys:
                self.grants.append(gcp.cloudbuildv2.ConnectionIAMMember(
                    f"{label}-read-token-accessor",
                    project=cfg.project,
                    location=cfg.region,
                    name=self.connection.name,
                    role="roles/cloudbuild.readTokenAccessor",
                    member=member,
                    opts=pulumi.ResourceOptions(parent=self),
                ))
        refs = {}
        for key, repo in names.items():
            url = cfg.repo_url(repo)
            link = gcp.cloudbuildv2.Repository(
                f"link-{key}",
                project=cfg.project,
                location=cfg.region,
                name=repo,
                parent_connection=self.connection.name,
                remote_uri=url,
                opts=pulumi.ResourceOptions(parent=self),
            )
            refs[key] = RepoRef(name=repo, url=url, link=link.id)
        return refs

    def _csr(self, cfg: StackConfig, names: dict[str, str],
             args: SourceRepositoriesArgs) -> dict[str, RepoRef]:
        # protect: these repositories hold the code and the delivery history; `pulumi destroy`
        # must not delete them (docs/operations.md, "Tear down", says how to on purpose).
        child = pulumi.ResourceOptions(parent=self, depends_on=args.api_dependencies, protect=True)
        repos = {
            key: gcp.sourcerepo.Repository(f"repo-{key}", project=cfg.project, name=repo,
                                           opts=child)
            for key, repo in names.items()
        }
        # The deployer writes too: `pulumi up` creates the env branches.
        for label, member in {**args.pushers, "deployer": args.deployer}.items():
            self.grants.append(gcp.sourcerepo.RepositoryIamMember(
                f"{label}-writes-env",
                project=cfg.project,
                repository=repos["env"].name,
                role="roles/source.writer",
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            ))
        for label, (keys, member) in args.readers.items():
            for key in keys:
                self.grants.append(gcp.sourcerepo.RepositoryIamMember(
                    f"{label}-reads-{key}",
                    project=cfg.project,
                    repository=repos[key].name,
                    role="roles/source.reader",
                    member=member,
                    opts=pulumi.ResourceOptions(parent=self),
                ))
        return {key: RepoRef(name=names[key], url=repo.url) for key, repo in repos.items()}
