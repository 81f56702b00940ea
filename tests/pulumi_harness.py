"""Run the real `__main__.py` under Pulumi's mocks and record the resource graph.

Only Pulumi's public testing API is used: `pulumi.runtime.set_mocks` (with its `monitor`
argument, to record each registration's parent, dependencies and provider, which `Mocks` alone
does not see) and `@pulumi.runtime.test`, which waits for every registration and output. Each
run happens in a fresh `contextvars.Context`, so the root stack and the config of one run never
leak into the next. The mocks answer with realistic ids, emails and names, derived from the
inputs the way Google Cloud derives them, so wiring (ids and emails flowing between resources)
is visible to the tests.
"""

from __future__ import annotations

import contextvars
import json
import runpy
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
PROJECT_NUMBER = "123456789012"
DEPLOYER_EMAIL = "platform-admin@acme.example"
USER_INFO = "gcp:organizations/getClientOpenIdUserInfo:getClientOpenIdUserInfo"


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str
    urn: str = ""
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""
    aliases: list[str] = field(default_factory=list)  # former names (pulumi.Alias(name=...))


@dataclass
class Graph:
    """What one program run registered."""

    resources: list[Resource] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Resource:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)

    def depends_on(self, resource: Resource) -> set[str]:
        """URNs the resource depends on, directly or through its dependencies and parents."""
        seen: set[str] = set()
        stack = list(resource.dependencies) + ([resource.parent] if resource.parent else [])
        while stack:
            urn = stack.pop()
            if urn in seen or not any(r.urn == urn for r in self.resources):
                continue
            seen.add(urn)
            found = self.by_urn(urn)
            stack.extend(found.dependencies)
            if found.parent:
                stack.append(found.parent)
        return seen

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]


class RecordingMocks(Mocks):
    def __init__(self, project: str, graph: Graph, caller: str) -> None:
        self.project, self.graph, self.caller = project, graph, caller

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        rid, outputs = self.realistic(args.typ, args.name, inputs)
        state = {**inputs, **outputs}
        self.graph.resources.append(Resource(args.typ, args.name, inputs, state, rid))
        return rid, state

    def realistic(self, typ: str, name: str, inputs: dict[str, Any]
                  ) -> tuple[str, dict[str, Any]]:
        project = inputs.get("project", self.project)
        location = inputs.get("location", "global")
        if typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            return (f"projects/{project}/serviceAccounts/{email}", {
                "email": email, "member": f"serviceAccount:{email}",
                "name": f"projects/{project}/serviceAccounts/{email}",
                "uniqueId": "10" + str(abs(hash(email)))[:19]})
        if typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            service = inputs["service"].split(".")[0]
            email = f"service-{PROJECT_NUMBER}@gcp-sa-{service}.iam.gserviceaccount.com"
            return (f"projects/{project}/services/{inputs['service']}",
                    {"email": email, "member": f"serviceAccount:{email}"})
        if typ == "gcp:container/cluster:Cluster":
            return (f"projects/{project}/locations/{location}/clusters/{inputs['name']}", {
                "endpoint": "34.78.120.15",
                "masterAuth": {"clusterCaCertificate": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                               "clientCertificateConfig": {"issueClientCertificate": False}},
                "selfLink": f"https://container.googleapis.com/v1/projects/{project}/"
                            f"locations/{location}/clusters/{inputs['name']}"})
        if typ == "gcp:artifactregistry/repository:Repository":
            rid = f"projects/{project}/locations/{location}/repositories/" \
                  f"{inputs['repositoryId']}"
            return rid, {"name": inputs["repositoryId"]}
        if typ == "gcp:cloudbuildv2/connection:Connection":
            return f"projects/{project}/locations/{location}/connections/{inputs['name']}", {}
        if typ == "gcp:cloudbuildv2/repository:Repository":
            connection = inputs["parentConnection"]
            return (f"projects/{project}/locations/{location}/connections/{connection}/"
                    f"repositories/{inputs['name']}", {})
        if typ == "gcp:sourcerepo/repository:Repository":
            return (f"projects/{project}/repos/{inputs['name']}", {
                "url": f"https://source.developers.google.com/p/{project}/r/{inputs['name']}"})
        if typ == "gcp:cloudbuild/trigger:Trigger":
            trigger_id = f"{abs(hash(name)) % 10**8:08d}-5c1e-4f7a-9b2d-3e8f0a6c4d21"
            return (f"projects/{project}/locations/{location}/triggers/{trigger_id}",
                    {"triggerId": trigger_id})
        if typ == "gcp:pubsub/schema:Schema":
            return f"projects/{project}/schemas/{inputs['name']}", {}
        if typ == "gcp:pubsub/topic:Topic":
            return f"projects/{project}/topics/{inputs['name']}", {}
        if typ == "gcp:projects/iAMCustomRole:IAMCustomRole":
            role = f"projects/{project}/roles/{inputs['roleId']}"
            return role, {"name": role}
        if typ == "gcp:cloudscheduler/job:Job":
            return (f"projects/{project}/locations/{inputs['region']}/jobs/{inputs['name']}",
                    {})
        if typ == "command:local:Command":
            return f"{name}-cmd", {"stdout": "created candidate\ncreated production"}
        if typ.startswith("kubernetes:"):
            metadata = dict(inputs.get("metadata") or {})
            return f"{metadata.get('namespace', '')}/{metadata.get('name', name)}", {}
        return f"{name}-id", {}

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.graph.calls.append(args.token)
        if args.token == USER_INFO:  # "who runs this program": the caller of this run
            return {"email": self.caller, "id": self.caller}
        raise AssertionError(f"unexpected call {args.token}")


class RecordingMonitor(MockMonitor):
    """Records each registration's URN, parent, dependencies and provider."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.graph = mocks.graph

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            # Registrations run on several threads: find ours by type and name.
            resource = next(r for r in self.graph.resources
                            if (r.typ, r.name) == (request.type, request.name) and not r.urn)
            resource.urn, resource.parent = response.urn, request.parent
            resource.dependencies = list(request.dependencies)
            resource.provider = request.provider
            resource.aliases = [a.spec.name for a in request.aliases if a.spec.name]
        return response


def base_config(**overrides: Any) -> dict[str, Any]:
    config = {
        "gcp:project": "acme-delivery",
        "gcp:region": "europe-west1",
        "gitops:deployer": f"user:{DEPLOYER_EMAIL}",
        "gitops:githubAppInstallationId": "48151623",
        "gitops:githubTokenSecret": "github-oauth-token",
        "gitops:githubOwner": "acme",
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


TRIGGER = "gcp:cloudbuild/trigger:Trigger"
# Public halves of two ed25519 keys (made with ssh-keygen for these tests; nothing secret).
SIGNERS = {
    "ci": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJsiNniVxoiqyDHrHUBA1uPqp0iYO0+RF3mx2+H0WlXd "
          "gitops-ci@acme.example",
    "delivery": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKFhMEJyVVqFwlkSkDOzJUp3plkqha9Uf/xkdOkAQkBP "
                "gitops-delivery@acme.example",
}
CONFIGS = {
    "github": base_config(),
    "csr": base_config(**{"gitops:sourceProvider": "csr", "gitops:githubAppInstallationId": None,
                          "gitops:githubTokenSecret": None, "gitops:githubOwner": None}),
    "three-apps": base_config(**{"gitops:apps": [
        "hello",
        {"name": "shop", "repo": "shop-svc", "customResources": [
            {"group": "monitoring.googleapis.com", "resources": ["podmonitorings"]}]},
        "billing"]}),
    "standard": base_config(**{"gitops:clusterMode": "standard", "gitops:nodeCount": "2"}),
    "pulumi-cloud": base_config(**{"gitops:stateBackend": "https://api.pulumi.com",
                                   "gitops:pulumiTokenSecret": "pulumi-token"}),
}


# Delivery environments: staging on the stack's cluster (namespace suffix), qa and production on
# their own clusters, production behind an approval gate.
APPROVERS = ["group:release-managers@acme.example", "user:cto@acme.example"]
ENVIRONMENT_CONFIGS = {
    "three-environments": base_config(**{
        "gitops:apps": ["hello", {"name": "shop", "repo": "shop-svc", "selfHeal": True}],
        "gitops:environments": [
            {"name": "staging", "namespaceSuffix": "-staging", "rolloutTimeout": "120s"},
            {"name": "qa", "cluster": "gitops-qa"},
            {"name": "production", "cluster": "gitops-prod", "approval": True,
             "approvers": APPROVERS, "rolloutTimeout": "600s"},
        ]}),
}


@cache
def program_graph(kind: str, stack: str = "dev") -> Graph:
    """The graph of one of CONFIGS (or ENVIRONMENT_CONFIGS), run once per test session."""
    return run_program(CONFIGS[kind] if kind in CONFIGS else ENVIRONMENT_CONFIGS[kind],
                       stack=stack)


# The sample app repositories by the app name a stack gives them. A CI trigger runs its app's
# `cloudbuild.yaml`: the sample's of that name, or hello's (the one-image template) for others.
SAMPLE_APPS = {"hello": ROOT / "examples" / "hello-app", "shop": ROOT / "examples" / "shop"}


def sample_app(app: str) -> Path:
    return SAMPLE_APPS.get(app, SAMPLE_APPS["hello"])


def pipeline_of(trigger: Resource) -> dict[str, Any]:
    """The build config a trigger runs: inline, or the file it names in its repository."""
    if "build" in trigger.inputs:
        build: dict[str, Any] = trigger.inputs["build"]
        return build
    filename = trigger.inputs["filename"]
    app = trigger.inputs.get("substitutions", {}).get("_APP", "")
    source = (sample_app(app) if filename == "cloudbuild.yaml" else ROOT) / filename
    loaded: dict[str, Any] = yaml.safe_load(source.read_text())
    return loaded


def run_program(config: dict[str, Any], stack: str = "dev", graph: Graph | None = None,
                caller: str = DEPLOYER_EMAIL) -> Graph:
    """Run __main__.py with the given config as caller; return what it registered."""
    graph = graph if graph is not None else Graph()

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(MAIN), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        exported: dict[str, Any] = dict(getattr(root, "outputs", {}))
        secret = {k: pulumi.Output.from_input(v.is_secret()) for k, v in exported.items()
                  if isinstance(v, pulumi.Output)}
        return pulumi.Output.all(pulumi.Output.all(**exported), pulumi.Output.all(**secret)) \
            .apply(lambda values: record(graph, values[0], values[1]))

    def in_fresh_context() -> None:
        mocks = RecordingMocks(str(config.get("gcp:project", "unset")), graph, caller)
        pulumi.runtime.set_mocks(mocks, project="gitops", stack=stack, preview=False,
                                 organization="acme", monitor=RecordingMonitor(mocks))
        pulumi.runtime.set_all_config({
            k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
        program()

    contextvars.Context().run(in_fresh_context)
    return graph


def record(graph: Graph, outputs: dict[str, Any], secret: dict[str, bool]) -> None:
    graph.outputs = outputs
    graph.secret_outputs = {key for key, is_secret in secret.items() if is_secret}
