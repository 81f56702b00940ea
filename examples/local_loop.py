"""Run the whole GitOps loop on this machine, through the real pipeline YAML.

    python examples/local_loop.py [--app hello|shop|all] [--workdir DIR]

Makes local git repositories from the sample apps (examples/hello-app, one image; examples/shop,
a frontend and a backend image and a kustomize overlay): an app repo each, and an env repo with
two delivery environments, staging then production, as `pulumi up` records them. Then for each
app:

1. runs the app pipeline (its `cloudbuild.yaml`) as Cloud Build would: the substitutions
   resolved the same way (`$$` escapes a `$`), the steps in `waitFor` order, independent ones
   in parallel, the script steps as written; the Docker steps are simulated (no Docker engine
   needed): each image's tests run with pytest in its build context and each image gets a local
   digest, the sha256 of its context's files; it publishes to `staging-candidate`;
2. runs staging's delivery pipeline (`pipelines/delivery.yaml`, staging's substitutions) for the
   new commit: with a kubeconfig (KUBECONFIG or ~/.kube/config) it applies to that cluster for
   real (namespace APP-staging), pruning what the commit no longer holds; without one it
   validates only and says so. Its success publishes the release to `production-candidate`;
3. production's delivery build is held for approval (simulated here: the loop approves it, and
   says so; on Cloud Build an approver approves it in the console or with
   `gcloud beta builds approve`), then runs production's delivery pipeline (namespace APP);
4. does it again for a second release, then re-runs production's first delivery: a rollback
   in production only;
5. prints `history.py` for both environments, with every entry's signature checked, and
   `status.py` side by side;
6. drift: someone edits hello's HorizontalPodAutoscaler in production's namespace by hand
   (`kubectl patch`); production's reconcile pipeline (`pipelines/reconcile.yaml`, with
   production's substitutions and hello allowed to self-heal) reports the object and the
   field that drifted and heals it under the delivery Lease: the field is back to what
   production holds.

Without a kubeconfig the cluster is a stand-in (tests/fake_kubectl.py on PATH): objects kept
as files in WORKDIR/cluster, answering apply, diff, get, patch, delete and Leases as kubectl
does; no container runs and every rollout succeeds. `--no-cluster` validates the manifests
only, applying nothing (and skips the drift stage).

Every outcome is a delivery event (docs/events.md). With PUBSUB_EMULATOR_HOST set (`gcloud
beta emulators pubsub start`), the loop creates a topic there carrying the events schema, the
builds publish to it, and the loop prints every message it received at the end; without one,
each build log shows the message it would have published.

Commits are signed as with `gitops:signers` on: the loop makes an ed25519 key per committing
identity (ci, each environment's delivery identity, and the operator who creates the branches)
with ssh-keygen; the pipelines get the lines the program and docs/supply-chain.md add
(`components.pipelines.with_signing`), and their `availableSecrets` are served from the loop's
own stand-in for Secret Manager.

Because the scripts run through the YAML, a wrong argument in a pipeline fails here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from components.delivery_timing import DeliveryTiming  # noqa: E402 - needs ROOT on sys.path
from components.pipelines import (  # noqa: E402
    ALLOWED_SIGNERS_SUBSTITUTION,
    KEY_ENV,
    version_name,
    with_signing,
)

SCRIPTS = ROOT / "scripts"
PROJECT = "local-project"
REGISTRY = f"europe-west1-docker.pkg.dev/{PROJECT}/apps"
SUBSTITUTION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
IDENTITY = {"GIT_AUTHOR_NAME": "Local Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Local Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
# `docker image inspect --format '...' REF:TAG > FILE`: where a push step writes a digest.
INSPECT = re.compile(r"docker image inspect --format '[^']*'\s+(\S+):\S+\s*>\s*(\S+)")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"error: {path} no longer holds {old!r}; update local_loop.py")
    path.write_text(text.replace(old, new))


def hello_v2(checkout: Path) -> None:
    edit(checkout / "app.py", '"Hello World!\\n"', '"Hello World, v2!\\n"')
    edit(checkout / "test_app.py", "Hello World!", "Hello World, v2!")


def shop_v2(checkout: Path) -> None:
    """A new backend image and a new setting: the ConfigMap gets a new name (kustomize's
    content hash), so delivering it prunes the old one."""
    edit(checkout / "backend" / "app.py", '"price": 1200', '"price": 1300')
    edit(checkout / "kubernetes" / "base" / "kustomization.yaml", "SHOP_CURRENCY=EUR",
         "SHOP_CURRENCY=CHF")


SAMPLE_APPS = {  # app name -> (sample app repository, the change of its second release)
    "hello": (ROOT / "examples" / "hello-app", hello_v2),
    "shop": (ROOT / "examples" / "shop", shop_v2),
}




def substitute(text: str, values: dict[str, str]) -> str:
    """Resolve `$VAR`, `${VAR}` and `$$` as Cloud Build does; unknown variables are errors."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        if name not in values:
            raise SystemExit(f"error: pipeline uses ${name}, which no trigger sets")
        return values[name]
    return SUBSTITUTION.sub(replace, text)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout.strip()


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


class LocalCloudBuild:
    """Runs Cloud Build configs locally: script steps for real, Docker steps simulated.

    Steps run as Cloud Build runs them: each starts when the steps in its `waitFor` finished
    (`["-"]`: at once; no `waitFor`: after every step before it), independent ones in parallel.
    A step's output is printed when it finishes. `availableSecrets` are served from `secrets`
    (secret version name -> value).
    """

    def __init__(self, workdir: Path, env: dict[str, str], secrets: dict[str, str]) -> None:
        self.workdir, self.env, self.secrets, self.builds = workdir, env, secrets, 0
        self.contexts: dict[str, Path] = {}  # image name -> the folder it was built from
        self.output = threading.Lock()

    def run(self, config: dict[str, Any], source: Path, substitutions: dict[str, str]) -> None:
        self.builds += 1
        workspace = self.workdir / f"workspace-{self.builds}"
        shutil.copytree(source, workspace, ignore=shutil.ignore_patterns(".git"))
        values = {"PROJECT_ID": "local-project", "BUILD_ID": f"local-build-{self.builds}",
                  "LOCATION": "europe-west1",
                  # the build's own substitutions are defaults; the trigger's override them
                  **config.get("substitutions", {}), **substitutions}
        env = dict(self.env)
        for item in config.get("options", {}).get("env", []):
            key, _, value = substitute(item, values).partition("=")
            env[key] = value
        available = {s["env"]: self.secrets[substitute(s["versionName"], values)]
                     for s in config.get("availableSecrets", {}).get("secretManager", [])}
        started: dict[str, Future[None]] = {}
        with ThreadPoolExecutor(max_workers=len(config["steps"])) as pool:
            for step in config["steps"]:
                waits = step.get("waitFor")
                needs = [] if waits == ["-"] else \
                    [started[w] for w in waits] if waits is not None else list(started.values())
                started[step["id"]] = pool.submit(self.after, needs, step, values, workspace,
                                                  env, available)
        for future in started.values():
            future.result()  # the first failed step's SystemExit names it

    def after(self, needs: list[Future[None]], step: dict[str, Any], values: dict[str, str],
              workspace: Path, env: dict[str, str], secrets: dict[str, str]) -> None:
        for need in needs:
            need.result()  # a failed step fails the steps that wait for it
        output = self.step(step, values, workspace, env, secrets)
        with self.output:
            print(f"--- step {step['id']} ({substitute(step['name'], values)})\n{output}",
                  end="", flush=True)

    def step(self, step: dict[str, Any], values: dict[str, str], workspace: Path,
             env: dict[str, str], secrets: dict[str, str]) -> str:
        name = substitute(step["name"], values)
        args = [substitute(arg, values) for arg in step.get("args", [])]
        step_env = dict(env)
        for item in step.get("env", []):
            key, _, value = substitute(item, values).partition("=")
            step_env[key] = value
        for key in step.get("secretEnv", []):  # as Cloud Build does: only the steps that ask
            step_env[key] = secrets[key]
        if name.startswith("gcr.io/cloud-builders/docker"):
            return self.docker(step["id"], args, workspace)
        if name != values.get("_STEPS_IMAGE"):
            raise SystemExit(f"error: step {step['id']} runs {name}, which this loop cannot run")
        # Inside the steps image the scripts live at /gitops/scripts and the source at /workspace.
        mapped = [self.local_paths(arg, workspace) for arg in args]
        entrypoint = step.get("entrypoint", "python")
        command = [sys.executable, *mapped] if entrypoint == "python" else ["bash", *mapped]
        result = subprocess.run(command, cwd=workspace, env=step_env, text=True,
                                capture_output=True)
        if result.returncode != 0:
            raise SystemExit(f"{result.stdout}{result.stderr}error: step {step['id']} failed "
                             f"with exit {result.returncode}")
        sys.stderr.write(result.stderr)
        return result.stdout

    def local_paths(self, arg: str, workspace: Path) -> str:
        arg = arg.replace("/gitops/scripts/", f"{SCRIPTS}/")
        arg = arg.replace("/workspace/", f"{workspace}/")
        return arg.replace("python /", f"{sys.executable} /")

    def docker(self, step_id: str, args: list[str], workspace: Path) -> str:
        if args[:1] == ["build"]:
            context = workspace / args[-1]
            tags = [a.removeprefix("--tag=") for a in args if a.startswith("--tag=")]
            for tag in tags:  # remembered for the push step's digest
                self.contexts[tag.rsplit(":", 1)[0]] = context
            if "--target=test" not in args:
                return f"simulated (no Docker engine): image build of {args[-1]}/\n"
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                                     "no:cacheprovider", "test_app.py"], cwd=context,
                                    text=True, capture_output=True,
                                    # The image's test stage has pytest alone: no plugins.
                                    env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                         "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
            if result.returncode != 0:
                raise SystemExit(f"{result.stdout}error: step {step_id}: app tests failed")
            return (f"simulated (no Docker engine): the test stage's tests in {args[-1]}/, "
                    f"with pytest\n{result.stdout[-400:]}")
        lines = []
        for image, target in INSPECT.findall(" ".join(args)):
            digest = hashlib.sha256()
            context = self.contexts[image]
            for path in sorted(p for p in context.rglob("*") if p.is_file()
                               and not {"__pycache__", ".pytest_cache"} & set(p.parts)):
                digest.update(path.relative_to(context).as_posix().encode())
                digest.update(path.read_bytes())
            ref = f"{image}@sha256:{digest.hexdigest()}"
            Path(target.replace("/workspace/", f"{workspace}/")).write_text(ref + "\n")
            lines.append(f"simulated (no Docker engine): pushed, local digest {ref}\n")
        return "".join(lines)


def make_keys(workdir: Path, signers: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """An ed25519 key per signer: private keys by name, and the allowed_signers file."""
    keys = workdir / "keys"
    keys.mkdir(exist_ok=True)
    private, entries = {}, []
    for name in signers:
        key = keys / name
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            str(key)], check=True)
        private[name] = key.read_text()
        key_type, blob = key.with_suffix(".pub").read_text().split()[:2]
        entries.append(f'{name} namespaces="git" {key_type} {blob}')
    allowed = keys / "allowed_signers"
    allowed.write_text("\n".join(entries) + "\n")
    return private, allowed


def make_env_repo(workdir: Path, operator_key: str) -> Path:
    """The env repo with both environments' branches, as `pulumi up` makes them."""
    env_repo = workdir / "env.git"
    git("init", "--quiet", "--bare", str(env_repo), cwd=workdir)
    git("config", "receive.autogc", "false", cwd=env_repo)  # a hosted remote packs on its own
    subprocess.run([sys.executable, str(SCRIPTS / "init_branches.py"), "--environments",
                    json.dumps(ENVIRONMENTS), "--repo", env_repo.as_uri()], check=True,
                   env={**os.environ, KEY_ENV: operator_key})
    return env_repo


def make_app_repo(workdir: Path, app: str, source: Path) -> tuple[Path, Path]:
    """A bare app repository holding the sample app, and a checkout of it."""
    app_repo, checkout = workdir / f"{app}.git", workdir / app
    git("init", "--quiet", "--bare", str(app_repo), cwd=workdir)
    shutil.copytree(source, checkout, ignore=shutil.ignore_patterns("__pycache__",
                                                                     ".pytest_cache"))
    git("init", "--quiet", "--initial-branch=main", cwd=checkout)
    git("add", "-A", cwd=checkout)
    git("commit", "--quiet", "-m", f"{app} app", cwd=checkout)
    git("push", "--quiet", app_repo.as_uri(), "main", cwd=checkout)
    return app_repo, checkout


def kubeconfig() -> str | None:
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return path if Path(path).is_file() else None


STAGING = {"name": "staging", "candidate": "staging-candidate",
           "production": "staging-production", "cluster": "gitops",
           "namespaceSuffix": "-staging", "approval": False}
PRODUCTION = {"name": "production", "candidate": "production-candidate",
              "production": "production-production", "cluster": "gitops",
              "namespaceSuffix": "", "approval": True}
ENVIRONMENTS = (STAGING, PRODUCTION)
# The committing identities (as components/config.py names them) and the operator.
IDENTITIES = {env["name"]: f"delivery-{env['name']}" for env in ENVIRONMENTS}
SIGNERS = ("ci", *IDENTITIES.values(), "operator")


def delivery_substitutions(environment: dict[str, Any], following: dict[str, Any] | None,
                           common: dict[str, str]) -> dict[str, str]:
    """What components/triggers.py sets on the environment's delivery trigger of the app.

    The approval gate is simulated by the loop itself (it holds and approves the build), so the
    build does not read an approval from Cloud Build: `_APPROVAL` stays false here.
    """
    return {**common,
            "_ENVIRONMENT": environment["name"],
            "_CANDIDATE_BRANCH": environment["candidate"],
            "_PRODUCTION_BRANCH": environment["production"],
            "_NAMESPACE": f"{common['_APP']}{environment['namespaceSuffix']}",
            "_NEXT_ENVIRONMENT": following["name"] if following else "",
            "_NEXT_CANDIDATE": following["candidate"] if following else "",
            "_APPROVAL": "false"}


def image_lines(env_repo: Path, tree: str) -> set[str]:
    """The `image:` values of every file of a tree of the env repo."""
    names = git("ls-tree", "--name-only", tree, cwd=env_repo).splitlines()
    return {line.split("image:", 1)[1].strip() for name in names
            for line in git("cat-file", "blob", f"{tree}:{name}", cwd=env_repo).splitlines()
            if line.strip().startswith(("image:", "- image:"))}


def show_renderings(app: str, release: int, env_repo: Path, commit: str) -> str:
    """Print what the CI commit holds for each environment, before any is applied: staging's
    `apps/APP/` and every later environment's `releases/ENV/APP/` (or `apps/APP/` when it
    renders the same), what differs, and that all pin the same images. Returns the tree
    production's candidate must get from this release."""
    banner(f"{app} release {release}: every environment's rendering on {STAGING['candidate']} "
           f"{commit[:12]}, before any is applied")
    applied = git("rev-parse", f"{commit}:apps/{app}", cwd=env_repo)
    images = image_lines(env_repo, applied)
    print(f"{STAGING['name']}: apps/{app}/ (tree {applied[:12]})")
    trees = {}
    for environment in ENVIRONMENTS[1:]:
        path = f"releases/{environment['name']}/{app}"
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}:{path}"],
                               cwd=env_repo, capture_output=True, text=True).stdout.strip()
        trees[environment["name"]] = tree = found or applied
        if not found:
            print(f"{environment['name']}: renders the same, so gets apps/{app}/")
            continue
        if image_lines(env_repo, tree) != images:
            raise SystemExit(f"error: {path}/ pins other images than apps/{app}/")
        print(f"{environment['name']}: {path}/ (tree {tree[:12]}), which differs from "
              f"{STAGING['name']}'s in:")
        changed = git("diff", "--no-color", "-U0", "-M", applied, tree,
                      cwd=env_repo).splitlines()
        for line in changed:
            if line.startswith("diff --git "):
                before, after = (side[2:] for side in line.split(" ")[2:4])
                print(f"  {after}" if before == after else f"  {before} -> {after}")
            elif line[:1] in "+-" and line[:3] not in ("+++", "---"):
                print(f"    {line}")
    print(f"same images in every environment: {', '.join(sorted(images))}")
    return trees[PRODUCTION["name"]]


def loop(app: str, cloud_build: LocalCloudBuild, workdir: Path, env_repo: Path,
         allowed_signers: Path) -> None:
    """Two releases of app through both environments, then a rollback in production; the
    histories, with every entry's signature checked."""
    source, second_release = SAMPLE_APPS[app]
    app_repo, checkout = make_app_repo(workdir, app, source)
    # The pipelines as they run with signing on: the app's with docs/supply-chain.md's lines,
    # each environment's delivery one as the program inlines it into its triggers.
    app_pipeline = with_signing(yaml.safe_load((source / "cloudbuild.yaml").read_text()),
                                ("publish",), version_name(PROJECT, "ci"))
    delivery_yaml = yaml.safe_load((ROOT / "pipelines" / "delivery.yaml").read_text())
    delivery_pipelines = {
        name: with_signing(delivery_yaml, ("deliver",), version_name(PROJECT, identity),
                           verify=True) for name, identity in IDENTITIES.items()}
    trigger = {"_APP": app, "_APP_REPO": app_repo.as_uri(), "_REGISTRY": REGISTRY,
               "_ENV_REPO": env_repo.as_uri(), "_ENV_REPO_LINK": "",
               "_STEPS_IMAGE": f"{REGISTRY}/gitops-steps:local",
               "_CANDIDATE_BRANCH": STAGING["candidate"],
               "_ENVIRONMENTS": " ".join(environment["name"] for environment in ENVIRONMENTS)}
    common = {"_APP": app, "_ENV_REPO": env_repo.as_uri(), "_ENV_REPO_LINK": "",
              "_CLUSTER": "gitops", "_CLUSTER_LOCATION": "europe-west1",
              **DeliveryTiming.from_setting("300s").substitutions(),
              "_STEPS_IMAGE": trigger["_STEPS_IMAGE"], "LOCATION": "europe-west1",
              ALLOWED_SIGNERS_SUBSTITUTION: ";".join(allowed_signers.read_text().splitlines()),
              # Events go to PUBSUB_EMULATOR_HOST's topic when one is named; else logged.
              "_EVENTS_TOPIC": os.environ.get("GITOPS_EVENTS_TOPIC", "")}
    staging = delivery_substitutions(STAGING, PRODUCTION, common)
    production = delivery_substitutions(PRODUCTION, None, common)

    def deliver(subs: dict[str, str], commit: str) -> None:
        cloud_build.run(delivery_pipelines[subs["_ENVIRONMENT"]], checkout,
                        {**subs, "COMMIT_SHA": commit, "SHORT_SHA": commit[:7]})

    production_candidates = []
    for release in (1, 2):
        if release == 2:
            second_release(checkout)
            git("commit", "--quiet", "-am", f"{app} v2", cwd=checkout)
            git("push", "--quiet", app_repo.as_uri(), "main", cwd=checkout)
        commit = git("rev-parse", "HEAD", cwd=checkout)
        banner(f"{app} release {release}: app pipeline for {commit[:12]}")
        cloud_build.run(app_pipeline, checkout,
                        {**trigger, "COMMIT_SHA": commit, "SHORT_SHA": commit[:7]})
        candidate = git("rev-parse", f"refs/heads/{STAGING['candidate']}", cwd=env_repo)
        production_rendering = show_renderings(app, release, env_repo, candidate)
        banner(f"{app} release {release}: staging delivery for {STAGING['candidate']} "
               f"{candidate[:12]}")
        deliver(staging, candidate)
        promoted = git("rev-parse", f"refs/heads/{PRODUCTION['candidate']}", cwd=env_repo)
        if git("rev-parse", f"{promoted}:apps/{app}", cwd=env_repo) != production_rendering:
            raise SystemExit(f"error: {PRODUCTION['candidate']} {promoted[:12]} does not hold "
                             f"production's rendering of {candidate[:12]}")
        print(f"{PRODUCTION['candidate']} {promoted[:12]}: apps/{app}/ is production's "
              f"rendering from {STAGING['candidate']} {candidate[:12]}")
        production_candidates.append(promoted)
        banner(f"{app} release {release}: production delivery for {PRODUCTION['candidate']} "
               f"{promoted[:12]}")
        print("held for approval (simulated: approved by the loop; on Cloud Build: "
              "gcloud beta builds approve projects/P/locations/R/builds/BUILD_ID)")
        deliver(production, promoted)

    first = production_candidates[0]
    banner(f"{app} rollback in production: re-running the delivery build of {first[:12]}")
    deliver(production, first)

    for environment in ENVIRONMENTS:
        banner(f"{app} history: {environment['name']} (signatures checked against the "
               f"allowed signers)")
        subprocess.run([sys.executable, str(SCRIPTS / "history.py"), "--repo",
                        env_repo.as_uri(), "--app", app, "--environment", environment["name"],
                        "--allowed-signers", str(allowed_signers)], check=True)


# --- after the deliveries: drift, and the events everything published -------------------------

FAKE_KUBECTL = ROOT / "tests" / "fake_kubectl.py"
EVENTS_SCHEMA = ROOT / "scripts" / "gitops" / "delivery_event.avsc"


def stand_in_cluster(workdir: Path) -> dict[str, str]:
    """The environment that puts the stand-in kubectl first on PATH (its cluster in
    WORKDIR/cluster; `kubectl kustomize` runs the real kubectl)."""
    bin_dir, state = workdir / "bin", workdir / "cluster"
    bin_dir.mkdir(exist_ok=True)
    kubectl = bin_dir / "kubectl"
    real = shutil.which("kubectl") or ""
    kubectl.write_text(f"#!/bin/sh\nFAKE_CLUSTER_DIR={shlex.quote(str(state))} "
                       f"FAKE_REAL_KUBECTL={shlex.quote(real)} exec "
                       f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_KUBECTL))} "
                       '"$@"\n')
    kubectl.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GITOPS_KUBECONFIG": str(workdir / "kubeconfig")}


def emulator_topic() -> tuple[str, str] | None:
    """With PUBSUB_EMULATOR_HOST: a new topic there carrying the events schema (as `pulumi up`
    creates it) and a subscription to it; (topic, subscription). None without an emulator."""
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        return None
    from tests.pubsub_emulator import events_topic

    return events_topic(PROJECT, EVENTS_SCHEMA.read_text(), "loop")


def show_events(subscription: str) -> list[dict[str, Any]]:
    """Print every event the subscription received, in publish order; the events."""
    from google.cloud import pubsub_v1

    subscriber, messages = pubsub_v1.SubscriberClient(), []
    while True:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 100,
                                            "return_immediately": True})
        if not response.received_messages:
            break
        messages += response.received_messages
        subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [
            m.ack_id for m in response.received_messages]})
    messages.sort(key=lambda m: m.message.publish_time)
    received = [json.loads(m.message.data) for m in messages]
    banner(f"events: {len(received)} received on {subscription} (each one validated by the "
           f"topic against {EVENTS_SCHEMA.relative_to(ROOT)})")
    for event in received:
        print(f"{event['kind']:22} {event['environment']:11} {event['app']:6} "
              f"{event['summary']}")
        for drifted in event["drift"]:
            fields = f": {', '.join(drifted['fields'])}" if drifted["fields"] else ""
            print(f"{'':42} {drifted['state']} {drifted['object']}{fields}")
    return received


def drift_stage(app: str, cloud_build: LocalCloudBuild, workdir: Path, env_repo: Path,
                allowed_signers: Path) -> None:
    """A hand edit in production's namespace of app, found and healed by production's
    reconcile build (its YAML, as the program inlines it into the trigger, app allowed to
    self-heal)."""
    env = cloud_build.env
    namespace = f"{app}{PRODUCTION['namespaceSuffix']}"
    banner(f"drift: someone edits {app} in production by hand (namespace {namespace})")
    edit = ["kubectl", f"--kubeconfig={env['GITOPS_KUBECONFIG']}", "patch",
            "horizontalpodautoscaler.autoscaling", app, f"--namespace={namespace}",
            "--type=merge", '--patch={"spec":{"maxReplicas":12}}']
    print(f"$ {shlex.join(edit)}", flush=True)
    subprocess.run(edit, env=env, check=True)
    banner(f"drift: production's reconcile build, {app} allowed to self-heal")
    # As components/triggers.py makes the trigger with gitops:signers on and selfHeal for app:
    # the step checks signatures (it signs nothing), reads the env repo, never pushes.
    reconcile_yaml = with_signing(
        yaml.safe_load((ROOT / "pipelines" / "reconcile.yaml").read_text()), ("reconcile",),
        None, verify=True)
    source = workdir / "reconcile-source"  # the step reads the env repo itself
    source.mkdir(exist_ok=True)
    cloud_build.run(reconcile_yaml, source, {
        "_ENV_REPO": env_repo.as_uri(), "_ENV_REPO_LINK": "", "_ENVIRONMENT": PRODUCTION["name"],
        "_CLUSTER": PRODUCTION["cluster"], "_CLUSTER_LOCATION": "europe-west1", "_HEAL_APPS": app,
        **DeliveryTiming.from_setting("300s").substitutions(),
        ALLOWED_SIGNERS_SUBSTITUTION: ";".join(allowed_signers.read_text().splitlines()),
        "_STEPS_IMAGE": f"{REGISTRY}/gitops-steps:local",
        "_EVENTS_TOPIC": os.environ.get("GITOPS_EVENTS_TOPIC", "")})
    live = json.loads(subprocess.run(
        [*edit[:2], "get", *edit[3:6], "--output=json"], env=env, check=True, text=True,
        capture_output=True).stdout)["spec"]["maxReplicas"]
    held = yaml.safe_load(git("show", f"{PRODUCTION['production']}:apps/{app}/hpa.yaml",
                              cwd=env_repo))["spec"]["maxReplicas"]
    if live != held:
        raise SystemExit(f"error: the heal left spec.maxReplicas at {live}, production has "
                         f"{held}")
    print(f"after the heal: spec.maxReplicas is {live} in the cluster, as "
          f"{PRODUCTION['production']} holds it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=[*SAMPLE_APPS, "all"], default="all",
                        help="which sample app to run (default: all)")
    parser.add_argument("--workdir", type=Path, help="where to make the repositories "
                        "(default: a new temporary folder, kept)")
    parser.add_argument("--no-cluster", action="store_true",
                        help="validate the manifests only, apply nothing (no drift stage)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gitops-loop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    keys, allowed_signers = make_keys(workdir, SIGNERS)
    env_repo = make_env_repo(workdir, keys["operator"])
    # Nothing of the caller's git credentials or signing reaches the builds: only what the
    # pipelines give their steps.
    env = {key: value for key, value in os.environ.items()
           if key not in ("GITOPS_GIT_TOKEN", "GITOPS_GIT_TOKEN_REPOSITORY", KEY_ENV,
                          "GITOPS_ALLOWED_SIGNERS")}
    cluster = None if args.no_cluster else kubeconfig()
    if args.no_cluster:
        env["GITOPS_NO_CLUSTER"] = "1"
        print("--no-cluster: the delivery pipeline validates manifests only, NOT applying")
    elif cluster:
        env["GITOPS_KUBECONFIG"] = cluster
        print(f"kubeconfig found ({cluster}): the delivery pipeline applies to that cluster")
    else:
        env.update(stand_in_cluster(workdir))
        print(f"no kubeconfig: the delivery pipeline applies to a stand-in cluster "
              f"({FAKE_KUBECTL.relative_to(ROOT)}: objects kept as files in "
              f"{workdir / 'cluster'}, no container runs)")
    events = emulator_topic()
    if events:  # the builds publish there (loop() gives its name to the triggers)
        os.environ["GITOPS_EVENTS_TOPIC"] = events[0]
        print(f"PUBSUB_EMULATOR_HOST set: events are published to {events[0]}")
    else:
        print("no PUBSUB_EMULATOR_HOST: each build logs the events it would publish")
    cloud_build = LocalCloudBuild(workdir, env, {
        version_name(PROJECT, identity): keys[identity]
        for identity in ("ci", *IDENTITIES.values())})
    for app in SAMPLE_APPS if args.app == "all" else [args.app]:
        loop(app, cloud_build, workdir, env_repo, allowed_signers)
    banner("status: every environment")
    subprocess.run([sys.executable, str(SCRIPTS / "status.py"), "--repo", env_repo.as_uri(),
                    "--allowed-signers", str(allowed_signers)], check=True)
    if not args.no_cluster and args.app in ("hello", "all"):
        drift_stage("hello", cloud_build, workdir, env_repo, allowed_signers)
    if events:
        show_events(events[1])
    print(f"\nrepositories kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
