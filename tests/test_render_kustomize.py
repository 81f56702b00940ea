"""render.py hydrates kustomize overlays with the real `kubectl kustomize`: a base and two
overlays, images pinned by kustomize's own override, the user's files untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from conftest import DIGEST_A, REGISTRY, Result, assert_bad_input, cli

REF = f"{REGISTRY}/hello@{DIGEST_A}"
TAGGED_REF = f"{REGISTRY}/hello:v2@{DIGEST_A}"

BASE = {
    "base/kustomization.yaml": "resources:\n  - deployment.yaml\n  - service.yaml\n"
                               "  - job.yaml\nlabels:\n  - pairs: {app: hello}\n",
    "base/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 1
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
        - name: hello
          image: hello
          envFrom: [{configMapRef: {name: settings}}]
        - name: proxy
          image: envoyproxy/envoy:v1.31.0
""",
    "base/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n"
                         "  ports: [{port: 80, targetPort: 8080}]\n",
    # A custom resource keeping an image outside any container list: render pins it.
    "base/job.yaml": "apiVersion: ray.io/v1\nkind: RayJob\nmetadata:\n  name: train\nspec:\n"
                     "  worker: {image: hello}\n",
    "overlays/staging/kustomization.yaml": """\
resources: [../../base]
patches:
  - target: {kind: Deployment, name: hello}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 2
configMapGenerator:
  - name: settings
    literals: [MODE=staging]
""",
    "overlays/prod/kustomization.yaml": """\
resources: [../../base]
namespace: hello
images:
  - name: hello
    newTag: stable
patches:
  - target: {kind: Deployment, name: hello}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
configMapGenerator:
  - name: settings
    literals: [MODE=prod]
""",
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def render(templates: Path, out: Path, *extra: str, ref: str = REF) -> Result:
    return cli("render", "--templates", str(templates), "--image", f"hello={ref}",
               "--app", "hello", "--out", str(out), *extra)


def objects(out: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(out.iterdir())}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write(tmp_path / "kubernetes", BASE)


class TestOverlays:
    """Each overlay is hydrated into plain manifests, one per object, images pinned."""

    @pytest.mark.parametrize("overlay,replicas,mode", [("overlays/staging", 2, "staging"),
                                                       ("overlays/prod", 3, "prod")])
    def test_overlay_hydrated_and_pinned(self, app: Path, tmp_path: Path, overlay: str,
                                         replicas: int, mode: str) -> None:
        before = tree_hash(app)
        result = render(app, tmp_path / "out", "--overlay", overlay)
        assert result.code == 0, result.stderr
        assert result.last_line == str(tmp_path / "out")
        found = objects(tmp_path / "out")
        [config] = [name for name in found if name.startswith("configmap-settings-")]
        assert set(found) == {"deployment-hello.yaml", "service-hello.yaml",
                              "rayjob-train.yaml", config}
        deployment = found["deployment-hello.yaml"]
        assert deployment["spec"]["replicas"] == replicas
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["image"] for c in containers] == [REF, "envoyproxy/envoy:v1.31.0"]
        assert containers[0]["envFrom"][0]["configMapRef"]["name"] == config[10:-5]
        assert found[config]["data"] == {"MODE": mode}
        assert found["rayjob-train.yaml"]["spec"]["worker"]["image"] == REF
        assert f"notice: 1 RayJob (ray.io/v1) custom resource(s), first in kustomize build of "\
               f"{overlay}: rayjob-train.yaml" in result.stdout
        assert tree_hash(app) == before, "the user's files were changed"

    def test_tag_and_digest_set_by_kustomize(self, app: Path, tmp_path: Path) -> None:
        result = render(app, tmp_path / "out", "--overlay", "overlays/prod", ref=TAGGED_REF)
        assert result.code == 0, result.stderr
        text = (tmp_path / "out" / "deployment-hello.yaml").read_text()
        assert f"image: {TAGGED_REF}\n" in text

    def test_kustomization_at_the_top_is_built_without_overlay(self, tmp_path: Path) -> None:
        files = {k.removeprefix("base/"): v for k, v in BASE.items() if k.startswith("base/")}
        app = write(tmp_path / "kubernetes", files)
        result = render(app, tmp_path / "out")
        assert result.code == 0, result.stderr
        assert "deployment-hello.yaml" in objects(tmp_path / "out")

    def test_overlays_without_choice(self, app: Path, tmp_path: Path) -> None:
        result = render(app, tmp_path / "out")
        assert_bad_input(result, "base, overlays/prod, overlays/staging", "--overlay")


class TestOverlayRefusals:
    """What the overlay builds passes the same checks as plain manifests; kustomize's own
    errors are bad input; nothing is written."""

    def test_other_namespace(self, app: Path, tmp_path: Path) -> None:
        write(app, {"overlays/elsewhere/kustomization.yaml":
                    "resources: [../../base]\nnamespace: shared\n"})
        result = render(app, tmp_path / "out", "--overlay", "overlays/elsewhere")
        assert_bad_input(result, "kustomize build of overlays/elsewhere: service-hello.yaml: "
                         "document 1 (Service hello)", "'shared'", "infra program")
        assert not (tmp_path / "out").exists()

    def test_cluster_scoped_object(self, app: Path, tmp_path: Path) -> None:
        write(app, {"overlays/wide/kustomization.yaml": "resources: [../../base, ns.yaml]\n",
                    "overlays/wide/ns.yaml": "apiVersion: v1\nkind: Namespace\n"
                                             "metadata: {name: hello}\n"})
        result = render(app, tmp_path / "out", "--overlay", "overlays/wide")
        assert_bad_input(result, "overlays/wide: namespace-hello.yaml", "cluster-scoped")

    def test_kustomize_error(self, app: Path, tmp_path: Path) -> None:
        write(app, {"overlays/broken/kustomization.yaml": "resources: [missing.yaml]\n"})
        result = render(app, tmp_path / "out", "--overlay", "overlays/broken")
        assert_bad_input(result, "kustomize build of", "overlays/broken", "missing.yaml")

    def test_image_the_overlay_does_not_use(self, app: Path, tmp_path: Path) -> None:
        result = cli("render", "--templates", str(app), "--image", f"hello={REF}",
                     "--image", f"other={REGISTRY}/other@{DIGEST_A}", "--app", "hello",
                     "--out", str(tmp_path / "out"), "--overlay", "overlays/prod")
        assert_bad_input(result, "no container uses image 'other'", "overlays/prod")

    @pytest.mark.parametrize("overlay,fragment", [("../elsewhere", "outside"),
                                                  ("overlays/none", "no kustomization")])
    def test_bad_overlay_path(self, app: Path, tmp_path: Path, overlay: str,
                              fragment: str) -> None:
        assert_bad_input(render(app, tmp_path / "out", "--overlay", overlay), fragment)

    def test_without_kubectl(self, app: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        result = render(app, tmp_path / "out", "--overlay", "overlays/prod")
        assert result.code == 1
        assert result.stderr.startswith("error: kubectl is not on PATH")


class TestEveryEnvironment:
    """`--environments` renders the same images once per environment into OUT/ENV/, each from
    its own overlay, or the default overlay when it has none (without one: an error); an
    overlay no environment uses is named. Bad input writes nothing."""

    def test_each_environment_from_its_overlay(self, app: Path, tmp_path: Path) -> None:
        result = render(app, tmp_path / "out", "--environments", "dev staging production",
                        "--environment-overlays", "overlays", "--default-overlay", "base")
        assert result.code == 0, result.stderr
        assert result.last_line == str(tmp_path / "out")
        for line in ("dev: rendered from base", "staging: rendered from overlays/staging",
                     "production: rendered from base",
                     "notice: overlay overlays/prod is no environment's (environments: dev "
                     "staging production)"):
            assert line in result.stdout.splitlines()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            "dev", "production", "staging"]
        replicas = {}
        for env in ("dev", "staging", "production"):
            deployment = objects(tmp_path / "out" / env)["deployment-hello.yaml"]
            replicas[env] = deployment["spec"]["replicas"]
            assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == REF
        assert replicas == {"dev": 1, "staging": 2, "production": 1}
        assert objects(tmp_path / "out" / "dev") == objects(tmp_path / "out" / "production")

    def test_plain_manifests_render_the_same_for_every_environment(self, tmp_path: Path) -> None:
        files = {k.removeprefix("base/"): v for k, v in BASE.items()
                 if k.startswith("base/") and "kustomization" not in k}
        plain = write(tmp_path / "kubernetes", files)
        result = render(plain, tmp_path / "out", "--environments", "staging production")
        assert result.code == 0, result.stderr
        staging = objects(tmp_path / "out" / "staging")
        assert staging == objects(tmp_path / "out" / "production")
        assert staging["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0][
            "image"] == REF

    @pytest.mark.parametrize("extra,fragment", [
        (("--environments", "staging qa", "--environment-overlays", "overlays"),
         "environment 'qa' has no overlay"),
        (("--environments", "staging Prod"), "environment 'Prod' is not a DNS label"),
        (("--environments", "staging  prod"), "environment '' is not a DNS label"),
        (("--environments", "prod prod"), "names an environment twice"),
        (("--environments", "prod", "--environment-overlays", "../.."), "not a folder inside"),
        (("--environments", "prod", "--environment-overlays", "overlays",
          "--default-overlay", "nowhere"), "--default-overlay 'nowhere': no kustomization"),
        (("--environments", "prod", "--default-overlay", "base"), "needs "
                                                                  "--environment-overlays"),
        (("--environment-overlays", "overlays"), "need --environments"),
        (("--environments", "prod", "--environment-overlays", "overlays", "--overlay",
          "overlays/prod"), "not both"),
    ])
    def test_bad_input(self, app: Path, tmp_path: Path, extra: tuple[str, ...],
                       fragment: str) -> None:
        assert_bad_input(render(app, tmp_path / "out", *extra), fragment)
        assert not (tmp_path / "out").exists()
