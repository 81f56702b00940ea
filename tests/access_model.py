"""The access model: what each identity does, what it is granted, and whether that is enough.

Operations are derived, in this one module, from what the builds really run:
- the triggers in the resource graph (under mocks): which identity runs which pipeline, with
  which substitutions;
- the pipelines (`pipelines/*.yaml`, the example app's `cloudbuild.yaml`): every step image it
  pulls, every image it pushes, the logging option, secrets it reads, the state a preview opens;
- the step scripts each step runs, read with `ast` (with every local module they import): the
  kubectl subcommands, gcloud commands, Google API methods and git pushes they contain;
- the sample apps' manifests (every kind `kubectl apply` and pruning touch, kustomize overlays
  hydrated as CI hydrates them) and the delivery Lease;
- the local commands `pulumi up` runs as the deployer (the steps-image build, the env branches);
- the reconcile ticks: a Cloud Scheduler job publishes to its topic as Cloud Scheduler's service
  agent, and Cloud Build's service agent subscribes each Pub/Sub trigger to its topic and
  creates its builds.
The tables below only translate what is found into permissions (a kubectl subcommand into
Kubernetes verbs, a gcloud command or API method into an IAM permission); a subcommand, command
or method found in the scripts without a row here fails the check, so the tables cannot drift
from the code silently.

Grants are derived from the resource graph: every IAM member resource, with the resource it is
granted on (narrowed by an IAM condition on `resource.name`, the one condition form the program
uses), and the delivery Role's rules in each app namespace of each cluster (a binding's cluster
is the one its Kubernetes provider's kubeconfig names). With delivery environments, each
environment's delivery identity is derived from its own trigger: its cluster (from `_CLUSTER`)
and namespace (from `_NAMESPACE`); each environment's reconcile identity from its reconcile
trigger: its cluster (`_CLUSTER`) and every app's namespace in the environment `_ENVIRONMENT`
names (the build reads the suffix from the env repo's record, which the program writes from
the same config). The service agents' project roles are Google's grants, not the program's:
the model adds them for the APIs the program enables (named `google:...`), and no grant of the
program may hold `cloudbuild.builds.create`. Roles are expanded to
permissions with Google's role data vendored in tests/data/gcp-roles.json (a snapshot: see
tests/data/README.md).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from components import pipelines
from components.pipelines import version_name
from pulumi_harness import PROJECT_NUMBER, ROOT, SAMPLE_APPS, Graph, Resource, sample_app

SCRIPTS = ROOT / "scripts"
ROLE_DATA = Path(__file__).with_name("data") / "gcp-roles.json"
SCRIPT_IN_STEP = re.compile(r"/gitops/scripts/([a-z_]+)\.py")
APP_SIGNING_STEPS = ("publish",)  # the app pipeline's steps that commit to the env repo

# --- translation tables ------------------------------------------------------------------------

# Images anyone may pull without a grant: Google's public builders and Docker Hub.
PUBLIC_IMAGE_PREFIXES = ("gcr.io/cloud-builders/", "gcr.io/google.com/cloudsdktool/",
                         "docker.io/")
AR_IMAGE = re.compile(r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/"
                      r"(?P<repo>[^/]+)/")
PULL = ("artifactregistry.repositories.downloadArtifacts",)
PUSH = ("artifactregistry.repositories.downloadArtifacts",
        "artifactregistry.repositories.uploadArtifacts",
        "artifactregistry.tags.create", "artifactregistry.tags.update")

# kubectl subcommand -> (what it acts on, Kubernetes verbs). "manifests": every kind in the
# app's manifests; "workloads": those with a rollout; "lease": the delivery Lease.
# A `get` or `delete` whose first argument is the constant "lease" acts on the Lease; a `get`
# with `--show-managed-fields` and `--ignore-not-found` reads one named object (prune: a listing
# is never "not found"); any other acts on the app's objects (drift lists them, with their
# managedFields, and prune deletes them).
KUBECTL: dict[str, tuple[str, tuple[str, ...]]] = {
    "apply": ("manifests", ("get", "create", "patch")),  # client-side apply
    "rollout": ("workloads", ("get", "list", "watch")),  # rollout status watches the workload
    "create": ("lease", ("create",)),
    "get lease": ("lease", ("get",)),
    "replace": ("lease", ("update",)),
    "delete lease": ("lease", ("delete",)),
    # A dry-run apply (kubectl diff): authorized as the real patch, or create when missing.
    "diff": ("manifests", ("get", "patch", "create")),
    "get": ("manifests", ("get", "list")),
    # Prune reads one object with its managedFields: was it the delivery that applied it?
    "get one": ("manifests", ("get",)),
    "delete": ("manifests", ("delete",)),
    "kustomize": ("nothing", ()),  # render builds overlays locally: no cluster call
}
# What a reconcile run does in the namespace of an app it may not heal: compare only.
COMPARE_ONLY = {"diff", "get"}
KUBECTL_FLAGS: dict[str, tuple[str, ...]] = {  # flags that need more verbs on the manifests
    "--prune": ("list", "delete"),
    "--server-side": ("patch",),
}
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# kind -> (API group, resource) for the kinds delivery handles.
KINDS = {
    "Deployment": ("apps", "deployments"), "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"), "Service": ("", "services"),
    "ConfigMap": ("", "configmaps"), "ServiceAccount": ("", "serviceaccounts"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"), "Secret": ("", "secrets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Lease": ("coordination.k8s.io", "leases"),
}
# (API group, kind) -> resource, for custom resource kinds (from their CRDs).
CUSTOM_KINDS = {("monitoring.googleapis.com", "PodMonitoring"): "podmonitorings"}
# gcloud command -> IAM permission on the cluster the trigger names (GKE clusters have no IAM of
# their own: grants are on the project, or narrowed to one cluster by an IAM condition).
GCLOUD = {("container", "clusters", "get-credentials"): "container.clusters.get"}
CONDITION_ON_NAME = re.compile(r'^resource\.name == "([^"]+)"$')
# Google API client method -> (IAM permission, what it acts on).
API_METHODS = {
    "fetch_read_write_token": ("cloudbuild.repositories.accessReadWriteToken", "token-repo"),
    "fetch_read_token": ("cloudbuild.repositories.accessReadToken", "token-repo"),
    "run_build_trigger": ("cloudbuild.builds.create", "project"),
    # A gated environment's delivery reads its own Build (who approved it).
    "get_build": ("cloudbuild.builds.get", "approval"),
}


@dataclass(frozen=True)
class Operation:
    """An identity needs a permission on a resource, because of `why`."""

    member: str
    permission: str
    resource: str
    why: str


@dataclass(frozen=True)
class KubeOperation:
    """An identity needs a verb on a namespaced resource, because of `why`."""

    user: str  # the Google service account email GKE maps the identity to
    namespace: str
    group: str
    resource: str
    verb: str
    why: str
    cluster: str = ""  # the cluster's name ("": any cluster of the graph)


@dataclass(frozen=True)
class Grant:
    member: str
    role: str
    resource: str
    name: str  # the Pulumi resource that makes it


# --- roles ---------------------------------------------------------------------------------------


@cache
def role_permissions() -> dict[str, frozenset[str]]:
    data = json.loads(ROLE_DATA.read_text())
    return {role: frozenset(perms) for role, perms in data["roles"].items()}


# Custom roles the program defines (projects/P/roles/X), read from the graph by grants().
CUSTOM_ROLES: dict[str, frozenset[str]] = {}


def permissions_of(role: str) -> frozenset[str]:
    if role in CUSTOM_ROLES:
        return CUSTOM_ROLES[role]
    roles = role_permissions()
    if role not in roles:
        raise KeyError(f"{role} is not in {ROLE_DATA.name}: vendor it with "
                       f"python tests/data/extract_roles.py")
    return roles[role]


# --- grants from the graph ----------------------------------------------------------------------


def grant_resource(resource: Resource) -> str:
    """The resource a grant is made on, as a path that operations name too."""
    i = resource.inputs
    project = i.get("project")
    paths = {
        "gcp:projects/iAMMember:IAMMember": lambda: f"projects/{project}",
        "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":
            lambda: f"projects/{project}/locations/{i['location']}/repositories/"
                    f"{i['repository']}",
        "gcp:cloudbuildv2/connectionIAMMember:ConnectionIAMMember":
            lambda: f"projects/{project}/locations/{i['location']}/connections/{i['name']}",
        "gcp:sourcerepo/repositoryIamMember:RepositoryIamMember":
            lambda: f"projects/{project}/repos/{i['repository']}",
        "gcp:storage/bucketIAMMember:BucketIAMMember": lambda: f"buckets/{i['bucket']}",
        "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember": lambda: i["cryptoKeyId"],
        "gcp:secretmanager/secretIamMember:SecretIamMember":
            lambda: f"projects/{project}/secrets/{i['secretId']}",
        "gcp:serviceaccount/iAMMember:IAMMember": lambda: i["serviceAccountId"],
        "gcp:pubsub/topicIAMMember:TopicIAMMember":
            lambda: f"projects/{project}/topics/{i['topic'].rsplit('/', 1)[-1]}",
    }
    if resource.typ not in paths:
        raise KeyError(f"the access model does not know grants of type {resource.typ}")
    condition = i.get("condition")
    if condition:
        match = CONDITION_ON_NAME.match(condition.get("expression", ""))
        if not match or not match[1].startswith(paths[resource.typ]() + "/"):
            raise KeyError(f"{resource.name}: the access model does not know the condition "
                           f"{condition!r}")
        return match[1]  # the grant applies to that resource only
    return paths[resource.typ]()


# Google's own service agents, and the role Google grants each on the project when its API is
# enabled: the program grants them nothing. They publish the reconcile ticks (Cloud Scheduler)
# and turn them into builds (Cloud Build). Only the cloud proves that the grants are there.
SERVICE_AGENT_ROLES = {"cloudscheduler": "roles/cloudscheduler.serviceAgent",
                       "cloudbuild": "roles/cloudbuild.serviceAgent"}
GOOGLE_GRANT = "google:"  # the name prefix of those grants


def service_agent(api: str) -> str:
    return f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-{api}.iam.gserviceaccount.com"


def service_agent_grants(graph: Graph) -> list[Grant]:
    """The service agents' roles, for every API the program enables that has one."""
    out = []
    for service in graph.of_type("gcp:projects/service:Service"):
        api = service.inputs["service"].split(".")[0]
        if api in SERVICE_AGENT_ROLES:
            out.append(Grant(service_agent(api), SERVICE_AGENT_ROLES[api],
                             f"projects/{service.inputs['project']}",
                             f"{GOOGLE_GRANT}{api}-service-agent"))
    return out


def grants(graph: Graph) -> list[Grant]:
    """The graph's grants, and the service agents' roles Google grants (named `google:...`)."""
    for role in graph.of_type("gcp:projects/iAMCustomRole:IAMCustomRole"):
        CUSTOM_ROLES[role.outputs["name"]] = frozenset(role.inputs["permissions"])
    return [*(Grant(r.inputs["member"], r.inputs["role"], grant_resource(r), r.name)
              for r in graph.resources if "member" in r.inputs and "role" in r.inputs),
            *service_agent_grants(graph)]


def covers(grant_on: str, resource: str) -> bool:
    """A grant on a project covers its resources; on a resource, that resource and below."""
    return resource == grant_on or resource.startswith(grant_on + "/")


def allowed(operation: Operation, granted: Iterable[Grant]) -> bool:
    return any(g.member == operation.member and covers(g.resource, operation.resource)
               and operation.permission in permissions_of(g.role) for g in granted)


def missing(operations: Iterable[Operation], granted: list[Grant]) -> list[Operation]:
    return [op for op in operations if not allowed(op, granted)]


# --- scripts: what they contain -----------------------------------------------------------------


@dataclass
class ScriptCalls:
    """What a step script and every local module it imports contain."""

    kubectl: set[str]
    kubectl_flags: set[str]
    gcloud: set[tuple[str, ...]]
    api_methods: set[str]
    pushes: bool
    fetches: bool
    publishes_events: bool = False  # imports the Pub/Sub publisher


def local_module(name: str) -> Path | None:
    """The file of a module of this repository (scripts/ first), or None for a library."""
    parts = name.split(".")
    for base in (SCRIPTS, ROOT):
        for candidate in (base.joinpath(*parts).with_suffix(".py"),
                          base.joinpath(*parts, "__init__.py")):
            if candidate.is_file() and ".venv" not in candidate.parts:
                return candidate
    return None


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def closure(script: Path) -> list[Path]:
    """The script and every local module it imports, at any depth, anywhere in a function."""
    seen: list[Path] = []
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        for name in imported_modules(ast.parse(path.read_text())):
            found = local_module(name)
            if found is not None:
                todo.append(found)
    return seen


def strings(nodes: Iterable[ast.expr]) -> list[str]:
    out = []
    for node in nodes:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            break
        out.append(node.value)
    return out


def constants(nodes: Iterable[ast.AST]) -> Iterator[str]:
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                yield sub.value
            elif isinstance(sub, ast.JoinedStr):
                yield "".join(v.value for v in sub.values
                              if isinstance(v, ast.Constant) and isinstance(v.value, str))


@cache
def script_calls(script: Path) -> ScriptCalls:
    calls = ScriptCalls(set(), set(), set(), set(), False, False)
    for path in closure(script):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                    node.func.id if isinstance(node.func, ast.Name) else ""
                if name == "kubectl" and strings(node.args[:1]):
                    sub = strings(node.args[:1])[0]
                    flags = set(constants(node.args))
                    one = sub == "get" and {"--show-managed-fields", "--ignore-not-found"} <= flags
                    calls.kubectl.add(f"{sub} lease" if strings(node.args[:2])[1:] == ["lease"]
                                      else "get one" if one else sub)
                    calls.kubectl_flags |= {c.split("=")[0] for c in constants(node.args)
                                            if c.split("=")[0] in KUBECTL_FLAGS}
                elif name in API_METHODS:
                    calls.api_methods.add(name)
                elif name == "push":
                    calls.pushes = True
                elif name == "fetch_args":
                    calls.fetches = True
            elif isinstance(node, ast.List | ast.Tuple):
                words = strings(node.elts)
                if words[:1] == ["kubectl"] and len(words) > 1:
                    calls.kubectl.add(next(w for w in words[1:] if not w.startswith("-")))
                elif words[:1] == ["gcloud"]:
                    calls.gcloud.add(tuple(w for w in words[1:4] if not w.startswith("-")))
                elif words[:1] in (["push"], ["git", "push"]):
                    calls.pushes = True
            elif isinstance(node, ast.ImportFrom) and node.module == "google.cloud.pubsub_v1":
                calls.publishes_events = True
    return calls


def unknown_script_calls() -> list[str]:
    """Subcommands, commands and methods the scripts contain that the tables cannot translate."""
    problems = []
    for script in sorted(SCRIPTS.glob("*.py")):
        calls = script_calls(script)
        problems += [f"{script.name}: kubectl {sub}" for sub in calls.kubectl
                     if sub not in KUBECTL]
        problems += [f"{script.name}: gcloud {' '.join(cmd)}" for cmd in calls.gcloud
                     if cmd not in GCLOUD]
    return sorted(set(problems))


# --- pipelines: what each build does -----------------------------------------------------------


def pipeline_of(trigger: Resource, config: Any = None) -> dict[str, Any]:
    """The build config a trigger runs: inline (provider field names), or its file (a CI
    trigger runs its sample app's `cloudbuild.yaml`).

    With commit signing on, an app's pipeline is the example's with the lines
    docs/supply-chain.md tells app owners to add (`pipelines.with_signing`): its publish step
    reads the CI key.
    """
    if "build" in trigger.inputs:
        build: dict[str, Any] = trigger.inputs["build"]
        return build
    filename = trigger.inputs["filename"]
    app = trigger.inputs.get("substitutions", {}).get("_APP", "")
    source = (sample_app(app) if filename == "cloudbuild.yaml" else ROOT) / filename
    loaded: dict[str, Any] = yaml.safe_load(source.read_text())
    if filename == "cloudbuild.yaml" and config is not None and config.signing:
        loaded = pipelines.with_signing(loaded, APP_SIGNING_STEPS,
                                        version_name(config.project, "ci"))
    return loaded


def substitute(text: str, subs: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?",
                  lambda m: subs.get(m.group(1), m.group(0)), text)


def step_text(step: dict[str, Any]) -> str:
    args = step.get("args") or []
    return " ".join([*args, step.get("script") or ""])


def image_repository(image: str) -> str | None:
    """The Artifact Registry repository an image lives in; None for a public image."""
    match = AR_IMAGE.match(image)
    if match:
        return (f"projects/{match['project']}/locations/{match['location']}/repositories/"
                f"{match['repo']}")
    first = image.split("/")[0]
    docker_hub = "/" not in image or ("." not in first and ":" not in first)
    if docker_hub or image.startswith(PUBLIC_IMAGE_PREFIXES):
        return None
    raise ValueError(f"image {image}: not in Artifact Registry and not a known public image; "
                     f"the access model cannot tell who may pull it")


def image_operations(member: str, image: str, action: str, why: str) -> list[Operation]:
    repository = image_repository(image)
    if repository is None:
        return []
    return [Operation(member, p, repository, why) for p in (PUSH if action == "push" else PULL)]


def csr_repository(url: str) -> str | None:
    match = re.match(r"^https://source\.developers\.google\.com/p/([^/]+)/r/([^/]+)$", url)
    return f"projects/{match[1]}/repos/{match[2]}" if match else None


def build_operations(member: str, build: dict[str, Any], subs: dict[str, str], why: str,
                     config: Any) -> tuple[list[Operation], list[tuple[str, dict[str, str]]]]:
    """The IAM operations of one build, and the step scripts it runs (with their env)."""
    project = subs["PROJECT_ID"]
    ops: list[Operation] = []
    scripts: list[tuple[str, dict[str, str]]] = []
    options = build.get("options") or {}
    if options.get("logging") != "NONE":
        ops.append(Operation(member, "logging.logEntries.create", f"projects/{project}",
                             f"{why}: build logs"))
    for step in build.get("steps") or []:
        image = substitute(step["name"], subs)
        ops += image_operations(member, image, "pull", f"{why}: step {step.get('id')} runs in "
                                                      f"{image}")
        text = substitute(step_text(step), subs)
        for ref in re.findall(r"--cache-from=(\S+)", text):
            ops += image_operations(member, ref, "pull", f"{why}: layer cache {ref}")
        for ref in re.findall(r"docker push (?:--all-tags )?(\S+)", text):
            ops += image_operations(member, ref, "push", f"{why}: docker push {ref}")
        env = dict(item.split("=", 1) for item in (step.get("env") or step.get("envs") or []))
        env = {k: substitute(v, subs) for k, v in env.items()}
        for script in SCRIPT_IN_STEP.findall(text):
            repo = re.search(r"--repo=(\S+)", text)
            env["_REPO"] = repo[1] if repo else ""
            env.update({key: subs[key] for key in ("_CLUSTER", "_CLUSTER_LOCATION")
                        if key in subs})
            scripts.append((script, env))
        if re.search(r"\bpulumi (preview|up|login)\b", text):
            ops += state_operations(member, config, f"{why}: step {step.get('id')} opens the "
                                                    "stack's state")
    for ref in build.get("images") or []:
        ref = substitute(ref, subs)
        ops += image_operations(member, ref, "push", f"{why}: images: {ref}")
    available = build.get("availableSecrets") or {}
    # Cloud Build YAML says secretManager; an inline trigger build (provider) secretManagers.
    for secret in available.get("secretManager") or available.get("secretManagers") or []:
        version = substitute(secret["versionName"], subs)
        ops.append(Operation(member, "secretmanager.versions.access",
                             version.split("/versions/")[0], f"{why}: secret {secret['env']}"))
    return ops, scripts


def state_operations(member: str, config: Any, why: str) -> list[Operation]:
    """What `pulumi login/preview` needs: read the state, decrypt its secrets, see the cluster."""
    ops = [Operation(member, "container.clusters.get", f"projects/{config.project}",
                     f"{why} (the Kubernetes provider reaches the cluster)")]
    if config.state_bucket:
        ops += [Operation(member, p, f"buckets/{config.state_bucket}", why)
                for p in ("storage.objects.get", "storage.objects.list")]
        if config.kms_key:
            ops.append(Operation(member, "cloudkms.cryptoKeyVersions.useToDecrypt",
                                 config.kms_key, why))
    return ops


def script_operations(member: str, script: str, env: dict[str, str], project: str,
                      why: str) -> list[Operation]:
    calls = script_calls(SCRIPTS / f"{script}.py")
    why = f"{why}: {script}.py"
    ops: list[Operation] = []
    cluster = f"projects/{project}/locations/{env.get('_CLUSTER_LOCATION')}/clusters/" \
              f"{env.get('_CLUSTER')}" if env.get("_CLUSTER") else f"projects/{project}"
    for command in calls.gcloud:
        ops.append(Operation(member, GCLOUD[command], cluster,
                             f"{why} runs gcloud {' '.join(command)}"))
    token_repo = env.get("GITOPS_GIT_TOKEN_REPOSITORY", "")
    unused = "fetch_read_write_token" if env.get("GITOPS_GIT_READ_ONLY") == "1" \
        else "fetch_read_token"  # the step's environment picks the token it asks for
    for method in calls.api_methods - {unused}:
        permission, target = API_METHODS[method]
        if target == "token-repo" and not token_repo:
            continue  # no linked repository named: the script uses git's own credentials
        if target == "approval" and env.get("GITOPS_RECORD_APPROVAL") != "true":
            continue  # not a gated environment: the script does not read its build
        resource = token_repo if target == "token-repo" else f"projects/{project}"
        ops.append(Operation(member, permission, resource, f"{why} calls {method}"))
    topic = env.get("GITOPS_EVENTS_TOPIC", "")
    if calls.publishes_events and topic:
        ops.append(Operation(member, "pubsub.topics.publish", topic,
                             f"{why} publishes delivery events"))
    csr = csr_repository(env.get("_REPO", ""))
    if csr and calls.fetches:
        ops.append(Operation(member, "source.repos.get", csr, f"{why} fetches {csr}"))
    if csr and calls.pushes:
        ops.append(Operation(member, "source.repos.update", csr, f"{why} pushes to {csr}"))
    if calls.pushes and env.get("_REPO", "").startswith("https://github.com/") and \
            not token_repo:
        ops.append(Operation(member, "(a credential for github.com)", env["_REPO"],
                             f"{why} pushes to GitHub without naming a linked repository"))
    return ops


def builtin_substitutions(trigger: Resource) -> dict[str, str]:
    return {"PROJECT_ID": trigger.inputs["project"], "BUILD_ID": "b-1", "COMMIT_SHA": "1" * 40,
            "SHORT_SHA": "1111111", "LOCATION": trigger.inputs["location"]}


def member_of_account(resource_name: str) -> str:
    return f"serviceAccount:{resource_name.rsplit('/', 1)[-1]}"


@dataclass
class Derived:
    operations: list[Operation]
    kube: list[KubeOperation]


def operations(graph: Graph, config: Any) -> Derived:
    """Everything every identity does, from the triggers, pipelines, scripts and commands."""
    ops: list[Operation] = []
    kube: list[KubeOperation] = []
    for trigger in graph.of_type("gcp:cloudbuild/trigger:Trigger"):
        member = member_of_account(trigger.inputs["serviceAccount"])
        subs = {**builtin_substitutions(trigger), **trigger.inputs.get("substitutions", {})}
        why = f"trigger {trigger.name}"
        build_ops, scripts = build_operations(member, pipeline_of(trigger, config), subs, why,
                                              config)
        ops += build_ops
        source = trigger.inputs.get("triggerTemplate")
        if source:  # CSR: the build's identity fetches the source
            ops.append(Operation(member, "source.repos.get",
                                 f"projects/{source['projectId']}/repos/{source['repoName']}",
                                 f"{why}: fetch the source"))
        manual = csr_repository((trigger.inputs.get("sourceToBuild") or {}).get("uri", ""))
        if manual:  # a manual trigger on CSR: the build's identity fetches the source
            ops.append(Operation(member, "source.repos.get", manual, f"{why}: fetch the source"))
        for script, env in scripts:
            ops += script_operations(member, script, env, subs["PROJECT_ID"], why)
            cluster = subs.get("_CLUSTER", "")
            if "_APP" in subs:  # a delivery: the app's namespace in its environment
                kube += kube_operations(member, script, subs.get("_NAMESPACE", subs["_APP"]),
                                        why, cluster=cluster)
            else:  # a reconcile run: every app of its environment, healing those allowed to
                heal = set(filter(None, subs.get("_HEAL_APPS", "").split(",")))
                [env] = [e for e in config.environments if e.name == subs["_ENVIRONMENT"]]
                for app in config.apps:
                    kube += kube_operations(member, script, env.namespace(app.name), why,
                                            None if app.name in heal else COMPARE_ONLY,
                                            cluster=cluster)
        # The deployer creates the trigger, which runs as the trigger's account.
        ops.append(Operation(deployer_member(config), "iam.serviceAccounts.actAs",
                             trigger.inputs["serviceAccount"], f"create {why}"))
    ops += deployer_commands(graph, config)
    ops += tick_operations(graph)
    ops += node_operations(graph, ops)
    ops += connection_operations(graph)
    return Derived(ops, kube)


def tick_operations(graph: Graph) -> list[Operation]:
    """A reconcile tick: a Cloud Scheduler job publishes to its topic as Cloud Scheduler's
    service agent; for each Pub/Sub trigger, Cloud Build's service agent subscribes to the
    topic and turns each message into the trigger's build (which runs as the trigger's
    account, attached by the deployer: see operations())."""
    ops = []
    for job in graph.of_type("gcp:cloudscheduler/job:Job"):
        assert "httpTarget" not in job.inputs, f"{job.name} calls an endpoint"
        ops.append(Operation(service_agent("cloudscheduler"), "pubsub.topics.publish",
                             job.inputs["pubsubTarget"]["topicName"],
                             f"scheduler job {job.name} publishes its tick"))
    for trigger in graph.of_type("gcp:cloudbuild/trigger:Trigger"):
        if "pubsubConfig" not in trigger.inputs:
            continue
        topic, project = trigger.inputs["pubsubConfig"]["topic"], trigger.inputs["project"]
        why = f"Pub/Sub trigger {trigger.name} on {topic}"
        agent = service_agent("cloudbuild")
        ops += [Operation(agent, "pubsub.subscriptions.create", f"projects/{project}", why),
                Operation(agent, "pubsub.topics.attachSubscription", topic, why),
                Operation(agent, "cloudbuild.builds.create", f"projects/{project}", why)]
    return ops


def connection_operations(graph: Graph) -> list[Operation]:
    """The Cloud Build service agent reads the GitHub token when the connection is created."""
    out = []
    for connection in graph.of_type("gcp:cloudbuildv2/connection:Connection"):
        agent = graph.one("gcp:projects/serviceIdentity:ServiceIdentity")
        version = connection.inputs["githubConfig"]["authorizerCredential"][
            "oauthTokenSecretVersion"]
        out.append(Operation(agent.outputs["member"], "secretmanager.versions.access",
                             version.split("/versions/")[0],
                             f"connection {connection.name} reads the GitHub token"))
    return out


NODE_PERMISSIONS = ("logging.logEntries.create", "monitoring.metricDescriptors.create",
                    "monitoring.timeSeries.create")  # GKE's documented node needs


def node_operations(graph: Graph, ops: list[Operation]) -> list[Operation]:
    """Every cluster's nodes pull what CI pushes (the images the Deployments run) and report."""
    pushed = {op.resource for op in ops if op.permission ==
              "artifactregistry.repositories.uploadArtifacts" and "trigger ci-" in op.why}
    out = []
    for cluster in graph.of_type("gcp:container/cluster:Cluster"):
        # The stack's cluster's account is `nodes`; an environment's own cluster's `C-nodes`.
        prefix = cluster.name.removesuffix("cluster")
        nodes = next(a for a in graph.of_type("gcp:serviceaccount/account:Account")
                     if a.name == f"{prefix}nodes")
        member = f"serviceAccount:{nodes.outputs['email']}"
        out += [Operation(member, p, f"projects/{cluster.inputs['project']}", "GKE nodes")
                for p in NODE_PERMISSIONS]
        out += [Operation(member, PULL[0], repository, "nodes pull the app images CI pushes")
                for repository in sorted(pushed)]
    return out


def deployer_member(config: Any) -> str:
    return str(config.deployer)


def deployer_commands(graph: Graph, config: Any) -> list[Operation]:
    """The local commands `pulumi up` runs as the deployer, and the builds they start."""
    ops: list[Operation] = []
    for command in graph.of_type("command:local:Command"):
        create = command.inputs["create"]
        submit = next((line for line in create.splitlines() if "gcloud builds submit" in line),
                      None)
        if submit is not None:
            # The command is a shell script; its submit line quotes each option as one word.
            words = shlex.split(submit[submit.index("gcloud builds submit"):].rstrip(")"))
            options = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
            account = options["service-account"]
            member = member_of_account(account)
            ops.append(Operation(deployer_member(config), "iam.serviceAccounts.actAs", account,
                                 f"{command.name}: gcloud builds submit as {member}"))
            bucket = options["gcs-source-staging-dir"].removeprefix("gs://").split("/", 1)[0]
            ops.append(Operation(member, "storage.objects.get", f"buckets/{bucket}",
                                 f"{command.name}: the build reads its staged source"))
            subs = dict(s.split("=", 1) for s in options["substitutions"].split(","))
            subs["PROJECT_ID"] = config.project
            build = yaml.safe_load((ROOT / options["config"]).read_text())
            ops += build_operations(member, build, subs, command.name, config)[0]
        elif "init_branches.py" in create:
            env = command.inputs.get("environment") or {}
            url = create.split("--repo ", 1)[1].strip("'")
            ops += script_operations(deployer_member(config), "init_branches",
                                     {**env, "_REPO": url}, config.project, command.name)
    return ops


@cache
def sample_documents(app_dir: Path) -> tuple[dict[str, Any], ...]:
    """What a sample app delivers: its manifests, or each overlay as `kubectl kustomize` (what
    render runs in CI) builds it."""
    folder = app_dir / "kubernetes"
    overlays = sorted(p for p in (folder / "overlays").glob("*") if p.is_dir())
    texts = [subprocess.run(["kubectl", "kustomize", str(o)], capture_output=True, text=True,
                            check=True).stdout for o in overlays] if overlays else \
        [p.read_text() for p in sorted(folder.glob("*.y*ml"))]
    return tuple(doc for text in texts for doc in yaml.safe_load_all(text) if doc)


def manifest_kinds() -> list[tuple[str, str]]:
    """(API group, kind) of every object the sample apps deliver, in order, once each."""
    found: list[tuple[str, str]] = []
    for app_dir in SAMPLE_APPS.values():
        for doc in sample_documents(app_dir):
            version = str(doc["apiVersion"])
            kind = (version.split("/")[0] if "/" in version else "", str(doc["kind"]))
            if kind not in found:
                found.append(kind)
    return found


def resource_of(group: str, kind: str) -> str:
    if kind in KINDS and KINDS[kind][0] == group:
        return KINDS[kind][1]
    if (group, kind) in CUSTOM_KINDS:
        return CUSTOM_KINDS[(group, kind)]
    raise KeyError(f"kind {kind} of group {group!r}: add it to KINDS or CUSTOM_KINDS")


def kube_operations(member: str, script: str, app: str, why: str,
                    only: set[str] | None = None, cluster: str = "",
                    kinds: list[tuple[str, str]] | None = None) -> list[KubeOperation]:
    """Kubernetes verbs the script's kubectl calls need in the app's namespace (app: its name;
    only: just these subcommands; cluster: the cluster's name), for the sample apps' kinds (or
    the given ones)."""
    calls = script_calls(SCRIPTS / f"{script}.py")
    user = member.split(":", 1)[1]
    kinds = manifest_kinds() if kinds is None else kinds
    targets = {"manifests": kinds,
               "workloads": [k for k in kinds if k[0] == "apps" and k[1] in ROLLOUT_KINDS],
               "lease": [("coordination.k8s.io", "Lease")], "nothing": []}
    out = []
    for sub in sorted(calls.kubectl if only is None else calls.kubectl & only):
        target, verbs = KUBECTL[sub]
        if target == "manifests":
            verbs = tuple(sorted({*verbs, *(v for flag in calls.kubectl_flags
                                            for v in KUBECTL_FLAGS[flag])}))
        for group, kind in targets[target]:
            resource = resource_of(group, kind)
            out += [KubeOperation(user, app, group, resource, verb,
                                  f"{why}: {script}.py kubectl {sub} ({kind})", cluster)
                    for verb in verbs]
    return out


def rbac_allows(graph: Graph, op: KubeOperation) -> bool:
    """Whether a RoleBinding in op's namespace binds op's user to a Role allowing op."""
    roles = graph.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    for binding in graph.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"):
        namespace = binding.inputs["metadata"]["namespace"]
        if op.cluster and cluster_of(graph, binding) != op.cluster:
            continue
        if namespace != op.namespace or not any(
                s["kind"] == "User" and s["name"] == op.user for s in binding.inputs["subjects"]):
            continue
        # The Role of that name in the same namespace of the same cluster (provider).
        role = next((r for r in roles
                     if (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]) ==
                     (namespace, binding.inputs["roleRef"]["name"])
                     and r.provider == binding.provider), None)
        for rule in (role.inputs["rules"] if role else []):
            if op.group in rule["apiGroups"] and op.resource in rule["resources"] and \
                    (op.verb in rule["verbs"] or "*" in rule["verbs"]):
                return True
    return False


def cluster_of(graph: Graph, resource: Resource) -> str:
    """The cluster an in-cluster resource lives in: its provider's kubeconfig context."""
    provider_urn = resource.provider.rsplit("::", 1)[0]
    provider = graph.by_urn(provider_urn)
    kubeconfig = provider.inputs["kubeconfig"]
    return kubeconfig_cluster(kubeconfig["value"] if isinstance(kubeconfig, dict)
                              else kubeconfig)


@cache
def kubeconfig_cluster(text: str) -> str:
    """The GKE cluster a kubeconfig's current context names (`gke_<name>`)."""
    return str(yaml.safe_load(text)["current-context"]).removeprefix("gke_")
