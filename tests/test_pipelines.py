"""Cloud Build configs, manifests, the steps image and the local loop."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1
from google.protobuf import json_format

import fake_kubectl
from components import pipelines
from conftest import DIGEST_A, ROOT, cli, fsck, git
from program_graphs import graph_of
from pulumi_harness import TRIGGER, Graph, pipeline_of

BUILD_CONFIGS = sorted([*ROOT.glob("pipelines/*.yaml"), *ROOT.glob("examples/*/cloudbuild.yaml")])
MANIFESTS = sorted((ROOT / "examples" / "hello-app" / "kubernetes").glob("*.yaml"))
USER_SUBSTITUTION = re.compile(r"\$\{(_[A-Z0-9_]+)\}|\$(_[A-Z0-9_]+)")
BUILT_IN = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)\}|(?<!\$)\$([A-Z][A-Z0-9_]*)")
# Default substitutions Cloud Build provides (build and trigger-based builds).
CLOUD_BUILD_DEFAULTS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "TRIGGER_NAME",
                        "COMMIT_SHA", "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME",
                        "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH",
                        "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT"}


def strict_build(config: dict[str, Any]) -> cloudbuild_v1.Build:
    """Parse a Cloud Build config into the API's Build message; unknown fields are errors."""
    message = cloudbuild_v1.Build.pb()()
    json_format.ParseDict(config, message, ignore_unknown_fields=False)
    return cloudbuild_v1.Build.wrap(message)


class TestBuildConfigs:
    """Every Cloud Build YAML is a valid Build message, with its logging option set."""

    @pytest.mark.parametrize("path", BUILD_CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
    def test_parses_strictly(self, path: Path) -> None:
        build = strict_build(yaml.safe_load(path.read_text()))
        assert build.steps
        assert build.options.logging in (cloudbuild_v1.BuildOptions.LoggingMode.CLOUD_LOGGING_ONLY,
                                         cloudbuild_v1.BuildOptions.LoggingMode.NONE)

    def test_strict_parse_rejects_unknown_fields(self) -> None:
        with pytest.raises(json_format.ParseError, match="waitfor"):
            strict_build({"steps": [{"name": "ubuntu", "waitfor": ["-"]}]})

    def test_inline_delivery_build_matches_its_yaml(self) -> None:
        inline = graph_of("github").named("deliver-hello").inputs["build"]
        source = yaml.safe_load((ROOT / "pipelines" / "delivery.yaml").read_text())
        assert inline["steps"][0]["args"] == source["steps"][0]["args"]
        assert inline["steps"][0]["envs"] == source["steps"][0]["env"]
        assert inline["options"] == source["options"]

    def test_no_package_install_in_app_or_delivery_builds(self) -> None:
        for path in (*ROOT.glob("examples/*/cloudbuild.yaml"), ROOT / "pipelines/delivery.yaml"):
            steps = yaml.safe_load(path.read_text())["steps"]
            assert "pip install" not in yaml.safe_dump(steps), path

    def test_tests_and_image_build_run_in_parallel(self) -> None:
        steps = {s["id"]: s for s in yaml.safe_load(
            (ROOT / "examples/hello-app/cloudbuild.yaml").read_text())["steps"]}
        assert steps["test"]["waitFor"] == ["-"] and steps["build"]["waitFor"] == ["-"]
        assert "--cache-from=${_REGISTRY}/${_APP}:latest" in steps["build"]["args"]


def used_substitutions(config: dict[str, Any]) -> tuple[set[str], set[str]]:
    text = yaml.safe_dump(config)
    user = {a or b for a, b in USER_SUBSTITUTION.findall(text)}
    built_in = {a or b for a, b in BUILT_IN.findall(text)}
    return user, built_in


@pytest.fixture(scope="module", params=["github", "csr", "pulumi-cloud"])
def program(request: pytest.FixtureRequest) -> Graph:
    return graph_of(request.param)


class TestSubstitutions:
    """Every user substitution a pipeline uses is set by its trigger or defaulted in the
    pipeline's own `substitutions:`, and every one the trigger sets is used."""

    def test_triggers_and_pipelines_agree(self, program: Graph) -> None:
        for trigger in program.of_type(TRIGGER):
            pipeline = pipeline_of(trigger)
            used, built_in = used_substitutions(pipeline)
            assert used == set(trigger.inputs["substitutions"]) | \
                set(pipeline.get("substitutions", {})), trigger.name
            assert set(trigger.inputs["substitutions"]) <= used, trigger.name
            assert built_in <= CLOUD_BUILD_DEFAULTS, (trigger.name, built_in)

    def test_ci_is_told_the_one_environment(self, program: Graph) -> None:
        """A stack without gitops:environments sets no _ENVIRONMENTS (an app pipeline written
        before it existed still runs); the samples default it to `production`."""
        trigger = program.named("ci-hello")
        ci = trigger.inputs["substitutions"]
        assert "_ENVIRONMENTS" not in ci and ci["_CANDIDATE_BRANCH"] == "candidate"
        assert pipeline_of(trigger)["substitutions"] == {"_ENVIRONMENTS": "production"}


class TestManifests:
    """The sample app's manifests pass Kubernetes schema validation, as written and rendered."""

    @pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
    def test_valid(self, path: Path) -> None:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.33", strict=True)

    def test_render_pins_the_sample_app(self, tmp_path: Path) -> None:
        ref = f"europe-west1-docker.pkg.dev/acme/apps/hello@{DIGEST_A}"
        result = cli("render", "--templates", str(MANIFESTS[0].parent), "--app", "hello",
                     "--image", f"hello={ref}", "--out", str(tmp_path / "out"))
        assert result.code == 0, result.stderr
        deployment = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == ref
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"] and container["resources"]["requests"]


class TestStepsImage:
    """The steps image's libraries are the versions the tests use (what it installs, parsed
    from its Dockerfile, is checked in test_steps_image.py)."""

    def test_image_carries_the_library_and_its_tag_covers_it(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The build context is scripts/, copied whole: the entry scripts and scripts/gitops."""
        dockerfile = (ROOT / "scripts" / "Dockerfile").read_text()
        copies = [line.split()[1:] for line in dockerfile.splitlines()
                  if line.startswith("COPY ")]
        assert [".", "/gitops/scripts"] in copies
        library = sorted((ROOT / "scripts" / "gitops").glob("*.py"))
        hashed = {p.relative_to(ROOT / "scripts").as_posix()
                  for p in pipelines.steps_image_files()}
        assert library and {f"gitops/{p.name}" for p in library} <= hashed
        copy = tmp_path / "scripts"
        shutil.copytree(ROOT / "scripts", copy,
                        ignore=shutil.ignore_patterns("__pycache__"))
        monkeypatch.setattr(pipelines, "SCRIPTS", copy)
        before = pipelines.steps_image_tag()
        module = copy / "gitops" / "envrepo.py"
        module.write_text(module.read_text() + "\n# changed\n")
        assert pipelines.steps_image_tag() != before

    def test_script_requirements_match_the_project_pins(self) -> None:
        def pins(path: Path) -> dict[str, str]:
            lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
            return dict(ln.split("==") for ln in lines if ln)

        project, steps = pins(ROOT / "requirements.txt"), pins(ROOT / "scripts/requirements.txt")
        assert steps and all(project[name] == version for name, version in steps.items())

    def test_sample_app_dockerfile_is_small_non_root_and_pinned(self) -> None:
        dockerfile = (ROOT / "examples" / "hello-app" / "Dockerfile").read_text()
        assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim", dockerfile, re.M)
        assert "USER 10001" in dockerfile and "AS test" in dockerfile


def critical_path(config: dict[str, Any]) -> int:
    """Sequential stages of a build: the longest waitFor chain (Cloud Build's rules)."""
    depth: dict[str, int] = {}
    previous: list[str] = []
    for step in config["steps"]:
        waits = step.get("waitFor")
        parents = [] if waits == ["-"] else (waits if waits is not None else previous)
        depth[step["id"]] = 1 + max((depth[p] for p in parents), default=0)
        previous = [step["id"]]
    return max(depth.values())


class TestPipelineReport:
    """The README's figures are the ones the YAML gives."""

    def test_figures_in_readme(self) -> None:
        app = yaml.safe_load((ROOT / "examples/hello-app/cloudbuild.yaml").read_text())
        delivery = yaml.safe_load((ROOT / "pipelines/delivery.yaml").read_text())
        readme = (ROOT / "README.md").read_text()
        images = {re.sub(r"\$\{_STEPS_IMAGE\}", "steps", s["name"]) for s in app["steps"]}
        row = f"| app CI/CD | {critical_path(app)} | {len(images)} |"
        assert row in readme
        shop = yaml.safe_load((ROOT / "examples/shop/cloudbuild.yaml").read_text())
        shop_images = {re.sub(r"\$\{_STEPS_IMAGE\}", "steps", s["name"]) for s in shop["steps"]}
        assert f"| app CI/CD, two images (shop) | {critical_path(shop)} | {len(shop_images)} |" \
            in readme
        assert f"| delivery | {critical_path(delivery)} | " \
               f"{len({s['name'] for s in delivery['steps']})} |" in readme


@dataclass
class LoopRun:
    stdout: str
    env_repo: Path
    cluster: Path
    keys: Path

    def section(self, app: str) -> str:
        """What the loop printed under app's banners (builds, deliveries, histories)."""
        blocks = re.split(r"^(?==== )", self.stdout, flags=re.M)
        return "".join(block for block in blocks if block.startswith(f"=== {app} "))


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopRun]:
    """`make loop` (local_loop.py, every sample app) as it runs on a machine without a
    kubeconfig: delivering to its stand-in cluster (tests/fake_kubectl.py), events logged only
    (the emulator path is tested in test_events.py); run once for the module (validate-only
    delivery is tested in test_deploy.py)."""
    tmp = tmp_path_factory.mktemp("loop")
    hidden = ("KUBECONFIG", "PUBSUB_EMULATOR_HOST", "GITOPS_EVENTS_TOPIC", "GITOPS_KUBECONFIG")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["HOME"] = str(tmp / "home")  # no ~/.kube/config either
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "local_loop.py"),
                           "--workdir", str(tmp / "loop")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    run = LoopRun(proc.stdout, tmp / "loop" / "env.git", tmp / "loop" / "cluster",
                  tmp / "loop" / "keys")
    yield run
    fsck(run.env_repo)


def tree_objects(env_repo: Path, ref: str, path: str = "apps/shop/") -> list[dict[str, Any]]:
    names = git("ls-tree", "-r", "--name-only", ref, "--", path, cwd=env_repo).split()
    return [doc for name in names
            for doc in yaml.safe_load_all(git("show", f"{ref}:{name}", cwd=env_repo)) if doc]


def printed(doc: dict[str, Any]) -> str:
    """An object's name as kubectl prints it: `configmap/a`, `deployment.apps/web`."""
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


def shop_commits(repo: Path, branch: str) -> list[str]:
    """The branch's commits for shop, newest first."""
    return git("log", "--format=%H", branch, "--", "apps/shop/", cwd=repo).split()


def config_map(repo: Path, commit: str) -> str:
    return next(printed(d) for d in tree_objects(repo, commit) if d["kind"] == "ConfigMap")


class TestLocalLoop:
    """The documented local loop runs the pipelines' YAML end to end for every sample app,
    through two environments: staging's successes reach production's candidate, production's
    rollback stays there. For the shop (two images, a kustomize overlay): both images are
    recorded and shown, each namespace ends with exactly its production branch's objects, and
    only the replaced ConfigMaps (kustomize's content hash renames it in the second release)
    were deleted. One class, so one loop run serves every test (xdist groups by class)."""

    def test_loop_histories(self, loop_run: LoopRun) -> None:
        env_repo = loop_run.env_repo
        assert "no kubeconfig: the delivery pipeline applies to a stand-in cluster" in \
            loop_run.stdout

        def subjects(branch: str) -> list[str]:
            return [s.split(":")[0] for s in
                    git("log", "--format=%s", branch, "--", "apps/hello/",
                        cwd=env_repo).splitlines()]

        assert subjects("staging-candidate") == ["Deploy hello", "Deploy hello"]
        assert subjects("staging-production") == ["Promote hello", "Promote hello"]
        assert subjects("production-candidate") == ["Deploy hello", "Deploy hello"]
        assert subjects("production-production") == ["Rollback hello", "Promote hello",
                                                     "Promote hello"]
        # Each production candidate is the release staging promoted, and says so.
        def log(branch: str) -> list[str]:
            return git("log", "--format=%H", branch, "--", "apps/hello/",
                       cwd=env_repo).split()

        staged = log("staging-production")[:2]
        for commit, staging_success in zip(log("production-candidate")[:2], staged,
                                           strict=True):
            message = git("log", "-1", "--format=%B", commit, cwd=env_repo)
            assert "Promoted-From-Environment: staging" in message
            assert f"Promoted-From-Commit: {staging_success}" in message
            assert git("rev-parse", f"{commit}:apps/hello", cwd=env_repo) == \
                git("rev-parse", f"{staging_success}:apps/hello", cwd=env_repo)
        first = log("production-candidate")[1]
        assert f"from production-candidate {first[:12]}" in \
            git("log", "-1", "--format=%s", log("production-production")[0], cwd=env_repo)
        hello = loop_run.section("hello")
        assert "hello: staging-production (newest first)" in hello
        assert "hello: production-production (newest first)" in hello
        status = loop_run.stdout.rsplit("status: every environment", 1)[1]
        assert "(rolled back) [signed: delivery-production]" in status
        # Signed as with gitops:signers on: history checked every entry, and git agrees.
        rows = [line for line in hello.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]
        assert len(rows) == 9
        assert sum("good (ci)" in row for row in rows) == 2
        assert sum("good (delivery-staging)" in row for row in rows) == 4
        assert sum("good (delivery-production)" in row for row in rows) == 3
        allowed = loop_run.keys / "allowed_signers"
        for branch in ("staging-candidate", "staging-production", "production-candidate",
                       "production-production"):
            subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}",
                            "verify-commit", branch], cwd=env_repo, check=True,
                           capture_output=True)
        # The candidate commits name the build whose provenance describes their image.
        for branch in ("staging-candidate", "production-candidate"):
            assert re.search(r"^Provenance: projects/local-project/locations/europe-west1/"
                             r"builds/local-build-4$",
                             git("log", "-1", "--format=%B", log(branch)[0], cwd=env_repo),
                             re.M)

    def test_shop_histories_and_both_images(self, loop_run: LoopRun) -> None:
        repo = loop_run.env_repo
        candidate = shop_commits(repo, "staging-candidate")
        assert [git("log", "-1", "--format=%s", c, cwd=repo).split(":")[0]
                for c in candidate] == ["Deploy shop", "Deploy shop"]
        production = [git("log", "-1", "--format=%s", c, cwd=repo).split(":")[0]
                      for c in shop_commits(repo, "production-production")]
        assert production == ["Rollback shop", "Promote shop", "Promote shop"]

        def images(commit: str) -> list[str]:
            return git("log", "-1", "--format=%(trailers:key=Image,valueonly)", commit,
                       cwd=repo).split()

        second, first = (images(c) for c in candidate)
        assert [ref.split("@")[0].rsplit("/", 1)[1] for ref in first] == [
            "shop-frontend", "shop-backend"]
        assert second[0] == first[0]  # the frontend did not change
        assert second[1] != first[1]  # the backend did
        assert images(shop_commits(repo, "production-candidate")[0]) == second
        assert images(shop_commits(repo, "production-production")[0]) == first
        assert "shop-frontend@sha256:" in loop_run.section("shop").split("shop history")[1]

    def test_shop_renders_each_environment_from_its_overlay(self, loop_run: LoopRun) -> None:
        """The CI commit of each release holds staging's rendering (overlays/staging) in
        apps/shop/ and production's (overlays/production) in releases/production/shop/, pinned
        to the same digests, before either is applied; staging's success gives production's
        candidate exactly that release; hello renders the same everywhere and stores it once."""
        repo = loop_run.env_repo

        def settings(commit: str, path: str) -> tuple[set[tuple[int, int]], set[str], set[str]]:
            objects = tree_objects(repo, commit, path)
            bounds = {(d["spec"]["minReplicas"], d["spec"]["maxReplicas"]) for d in objects
                      if d["kind"] == "HorizontalPodAutoscaler"}
            titles = {d["data"]["SHOP_TITLE"] for d in objects if d["kind"] == "ConfigMap"}
            images = {c["image"] for d in objects if d["kind"] == "Deployment"
                      for c in d["spec"]["template"]["spec"]["containers"]}
            return bounds, titles, images

        staged = shop_commits(repo, "staging-candidate")
        promoted = shop_commits(repo, "production-candidate")
        assert len(staged) == len(promoted) == 2
        for ci_commit, production_candidate in zip(staged, promoted, strict=True):
            trailers = set(git("log", "-1", "--format=%(trailers:key=Image,valueonly)",
                               ci_commit, cwd=repo).split())
            staging = settings(ci_commit, "apps/shop/")
            production = settings(ci_commit, "releases/production/shop/")
            assert staging[:2] == ({(1, 2)}, {"Shop (staging)"})
            assert production[:2] == ({(3, 12)}, {"Shop"})
            assert staging[2] == production[2] == trailers and len(trailers) == 2
            assert git("rev-parse", f"{production_candidate}:apps/shop", cwd=repo) == \
                git("rev-parse", f"{ci_commit}:releases/production/shop", cwd=repo)
            assert "releases/" not in git("ls-tree", "--name-only", production_candidate,
                                          cwd=repo)
        hello = git("log", "-1", "--format=%H", "staging-candidate", "--", "apps/hello/",
                    cwd=repo)
        assert "hello" not in git("ls-tree", "-r", "--name-only", hello, "--", "releases/",
                                  cwd=repo)
        # The loop shows both renderings before staging's delivery of the release starts.
        for release in (1, 2):
            shown = loop_run.stdout.index(f"=== shop release {release}: every environment's "
                                          "rendering")
            assert loop_run.stdout.index(f"=== shop release {release}: app pipeline") < shown < \
                loop_run.stdout.index(f"=== shop release {release}: staging delivery")
        shop = loop_run.section("shop")
        assert "production: releases/production/shop/" in shop and "+  minReplicas: 3" in shop
        assert "production: renders the same, so gets apps/hello/" in loop_run.section("hello")

    def test_shop_prune_deleted_exactly_the_replaced_config_maps(self, loop_run: LoopRun) -> None:
        repo = loop_run.env_repo
        # Each environment has its own ConfigMap (its overlay sets the title).
        maps = {branch: [config_map(repo, c) for c in shop_commits(repo, branch)]
                for branch in ("staging-candidate", "production-candidate")}
        (staging_second, staging_first), (second, first) = maps.values()
        assert len({staging_first, staging_second, first, second}) == 4
        deleted = [line for line in (loop_run.cluster / "deleted.log").read_text().splitlines()
                   if line.startswith("shop")]
        # Release 2 drops the first in each environment; production's rollback the second.
        assert deleted == [f"shop-staging {staging_first}", f"shop {first}", f"shop {second}"]
        for namespace, branch in (("shop-staging", "staging-production"),
                                  ("shop", "production-production")):
            assert fake_kubectl.live(loop_run.cluster, namespace) == {
                printed(d) for d in tree_objects(repo, branch)}
        # hello's releases change no object's name: nothing of it was deleted.
        assert not [line for line in (loop_run.cluster / "deleted.log").read_text()
                    .splitlines() if line.startswith("hello")]
        applies = [json.loads(line) for line in
                   (loop_run.cluster / "calls.log").read_text().splitlines()
                   if line.startswith('["apply"')]
        assert len(applies) == 11  # 5 deliveries per app, and the heal of hello's drift
        assert all("--field-manager=gitops-delivery" in call for call in applies)

    def test_drift_found_healed_and_announced(self, loop_run: LoopRun) -> None:
        """The hand edit is reported with its object and field, healed from production (the
        namespace holds production's objects again), and every outcome of the loop is an
        event: the waits for approval included."""
        edit, healing = loop_run.stdout.split("=== drift: ")[1:]
        assert "horizontalpodautoscaler.autoscaling/hello patched" in edit
        assert "hello: drifted (healed)\n  changed  HorizontalPodAutoscaler/hello: " \
               "spec.maxReplicas\nshop: in sync\nafter the heal: spec.maxReplicas is 6 in " \
               "the cluster, as production-production holds it\n" in healing
        hpa = yaml.safe_load(git("show", "production-production:apps/hello/hpa.yaml",
                                 cwd=loop_run.env_repo))
        live = fake_kubectl.documents(loop_run.cluster / "applied" / "hello")
        assert [doc["spec"] for _, doc in live if doc["kind"] == "HorizontalPodAutoscaler"] \
            == [hpa["spec"]]
        published = [json.loads(line.split("would publish: ", 1)[1])
                     for line in loop_run.stdout.splitlines() if "would publish: " in line]
        release = ["promoted", "waiting_for_approval", "promoted"]
        assert [e["kind"] for e in published] == [
            *release, *release, "rolled_back", *release, *release, "rolled_back",
            "drift_found", "drift_healed"]
        waiting = [e for e in published if e["kind"] == "waiting_for_approval"]
        assert {(e["app"], e["environment"]) for e in waiting} == {("hello", "production"),
                                                                   ("shop", "production")}
        found, healed = published[-2:]
        assert found["drift"] == healed["drift"] == [{
            "object": "HorizontalPodAutoscaler/hello", "state": "changed",
            "fields": ["spec.maxReplicas"]}]
        assert healed["env_repo_commit"] == git("rev-parse", "production-production",
                                                cwd=loop_run.env_repo)
        # Production's reconcile build ran from its YAML, the loop's last build.
        assert "--- step reconcile (" in healing
        builds = [int(e["build_id"].removeprefix("local-build-")) for e in published]
        assert builds[-2] == builds[-1] > max(builds[:-2])
        assert healed["environment"] == "production"
