"""render.py and the kinds of objects: custom resources, removed API versions, and what the
delivery identity cannot apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import DIGEST_A, REGISTRY, Result, assert_bad_input, cli
from gitops.kube_api import CLUSTER_SCOPED, REMOVED, KubeSchemas, split_api_version
from gitops.render import DEFAULT_KUBE_VERSION

REF = f"{REGISTRY}/hello@{DIGEST_A}"

RAY_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rayjobs.ray.io}
spec:
  group: ray.io
  scope: Namespaced
  names: {kind: RayJob, plural: rayjobs, singular: rayjob, listKind: RayJobList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                entrypoint: {type: string}
                replicas: {type: integer, nullable: true}
                port: {x-kubernetes-int-or-string: true}
                submitterPodTemplate: {type: object, x-kubernetes-preserve-unknown-fields: true}
                worker:
                  type: object
                  properties:
                    image: {type: string}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored-beside-the-crds}
"""

RAY_JOB = """\
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: train
spec:
  entrypoint: python train.py
  replicas: null
  port: http
  submitterPodTemplate:
    spec:
      containers:
        - name: submit
          image: hello:1.0
  worker:
    image: hello
"""


def run(tmp_path: Path, files: dict[str, str], *extra: str,
        image: str = f"hello={REF}") -> tuple[Result, Path]:
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    for name, text in files.items():
        (templates / name).write_text(text)
    out = tmp_path / "out"
    return cli("render", "--templates", str(templates), "--image", image, "--app", "hello",
               "--out", str(out), *extra), out


def crds(tmp_path: Path, text: str = RAY_CRD) -> str:
    folder = tmp_path / "crds"
    folder.mkdir(exist_ok=True)
    (folder / "ray.yaml").write_text(text)
    return str(folder)


def pod(extra_metadata: str = "") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n{extra_metadata}spec:\n"
            "  containers:\n    - name: a\n      image: hello\n")


class TestCustomResources:
    """Every `image` field of a custom resource that names the image is pinned, at any depth;
    a custom resource is validated only against a CRD the user supplies."""

    def test_pinned_at_any_depth_with_one_notice_per_kind(self, tmp_path: Path) -> None:
        second = RAY_JOB.replace("name: train", "name: tune")
        jobset = ("apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: js}\n"
                  "spec:\n  replicatedJobs:\n    - template: {spec: {template: {spec: "
                  "{containers: [{name: w, image: 'hello:2'}]}}}}\n"
                  "  sidecar: {image: other/tool:1}\n")
        result, out = run(tmp_path, {"ray.yaml": RAY_JOB + "---\n" + second,
                                     "jobset.yaml": jobset})
        assert result.code == 0, result.stderr
        ray = list(yaml.safe_load_all((out / "ray.yaml").read_text()))
        assert ray[0]["spec"]["worker"]["image"] == REF
        assert ray[1]["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["image"] == REF
        jobs = yaml.safe_load((out / "jobset.yaml").read_text())
        assert jobs["spec"]["sidecar"]["image"] == "other/tool:1"
        assert (out / "jobset.yaml").read_text().count(f"'{REF}'") == 1
        notices = [line for line in result.stdout.splitlines() if line.startswith("notice:")]
        assert len(notices) == 2
        assert "2 RayJob (ray.io/v1)" in notices[1] and "--crds" in notices[1]

    def test_valid_against_the_supplied_crd(self, tmp_path: Path) -> None:
        result, out = run(tmp_path, {"ray.yaml": RAY_JOB}, "--crds", crds(tmp_path))
        assert result.code == 0, result.stderr
        assert "notice" not in result.stdout
        assert yaml.safe_load((out / "ray.yaml").read_text())["spec"]["worker"]["image"] == REF

    @pytest.mark.parametrize("mutation,fragment", [
        (("  entrypoint: python train.py\n", "  entrypoint: python train.py\n  colour: blue\n"),
         "colour"),
        (("  replicas: null\n", "  replicas: many\n"), "spec.replicas"),
        (("  port: http\n", "  port: [80]\n"), "spec.port"),
    ])
    def test_invalid_against_the_supplied_crd(self, tmp_path: Path, mutation: tuple[str, str],
                                              fragment: str) -> None:
        result, out = run(tmp_path, {"ray.yaml": RAY_JOB.replace(*mutation)}, "--crds",
                          crds(tmp_path))
        assert_bad_input(result, "ray.yaml: document 1 (RayJob train)", fragment)
        assert not out.exists()

    def test_kind_the_crds_do_not_serve(self, tmp_path: Path) -> None:
        cluster = RAY_JOB.replace("kind: RayJob", "kind: RayCluster")
        result, _ = run(tmp_path, {"ray.yaml": cluster}, "--crds", crds(tmp_path))
        assert_bad_input(result, "serve no RayCluster ray.io/v1")

    def test_cluster_scoped_per_its_crd(self, tmp_path: Path) -> None:
        result, _ = run(tmp_path, {"ray.yaml": RAY_JOB}, "--crds",
                        crds(tmp_path, RAY_CRD.replace("scope: Namespaced", "scope: Cluster")))
        assert_bad_input(result, "RayJob train", "cluster-scoped", "infra program")

    def test_a_custom_group_is_not_taken_for_a_built_in_kind(self, tmp_path: Path) -> None:
        """`apps.example.com/v1 Deployment` is not apps/v1: not validated as one, and its image
        fields outside containers are pinned as a custom resource's."""
        custom = ("apiVersion: apps.example.com/v1\nkind: Deployment\nmetadata: {name: x}\n"
                  "spec:\n  colour: blue\n  image: hello\n")
        result, out = run(tmp_path, {"custom.yaml": custom})
        assert result.code == 0, result.stderr
        assert yaml.safe_load((out / "custom.yaml").read_text())["spec"]["image"] == REF

    def test_built_in_kinds_pin_only_container_images(self, tmp_path: Path) -> None:
        config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  image: hello\n"
        result, out = run(tmp_path, {"pod.yaml": pod(), "config.yaml": config})
        assert result.code == 0, result.stderr
        assert (out / "config.yaml").read_text() == config


class TestRemovedApiVersions:
    """A removed API version is refused with the version that replaces it."""

    @pytest.mark.parametrize("api,kind,replacement", [
        ("extensions/v1beta1", "Deployment", "apps/v1"),
        ("apps/v1beta2", "StatefulSet", "apps/v1"),
        ("policy/v1beta1", "PodDisruptionBudget", "policy/v1"),
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler", "autoscaling/v2"),
        ("batch/v1beta1", "CronJob", "batch/v1"),
        ("networking.k8s.io/v1beta1", "Ingress", "networking.k8s.io/v1"),
        ("rbac.authorization.k8s.io/v1beta1", "Role", "rbac.authorization.k8s.io/v1"),
    ])
    def test_refused_with_replacement(self, tmp_path: Path, api: str, kind: str,
                                      replacement: str) -> None:
        text = f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: old}}\nspec: {{}}\n"
        result, out = run(tmp_path, {"pod.yaml": pod(), "old.yaml": text})
        assert_bad_input(result, f"old.yaml: document 1 ({kind} old)",
                         f"{kind} {api} was removed in Kubernetes", f"use {replacement}")
        assert not out.exists()

    def test_table_matches_the_schemas(self) -> None:
        """Every removed version is absent from the default version's schemas and every
        replacement present (the table is hand-copied from the deprecation guide)."""
        schemas = KubeSchemas(DEFAULT_KUBE_VERSION)
        for (api, kind), (_, replacement) in REMOVED.items():
            assert not schemas.knows(api, kind), (api, kind)
            assert schemas.is_builtin(api, kind)
            if not replacement.startswith("nothing"):
                assert schemas.knows(replacement, kind), (replacement, kind)

    def test_misspelled_kind_in_a_built_in_group(self, tmp_path: Path) -> None:
        text = "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n"
        result, _ = run(tmp_path, {"pod.yaml": pod(), "x.yaml": text})
        assert_bad_input(result, "no schema for Deploymnet apps/v1 in Kubernetes 1.33")


class TestWhatDeliveryCannotApply:
    """Cluster-scoped kinds and other namespaces are refused before candidate, naming the file
    and the object and where such objects belong."""

    @pytest.mark.parametrize("api,kind", [
        ("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("v1", "PersistentVolume"),
        ("storage.k8s.io/v1", "StorageClass"), ("scheduling.k8s.io/v1", "PriorityClass"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ])
    def test_cluster_scoped_kinds(self, tmp_path: Path, api: str, kind: str) -> None:
        text = f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: wide\n"
        result, out = run(tmp_path, {"pod.yaml": pod(), "wide.yaml": text})
        assert_bad_input(result, f"wide.yaml: document 1 ({kind} wide)", "cluster-scoped",
                         "namespace 'hello'", "infra program")
        assert not out.exists()

    def test_another_namespace(self, tmp_path: Path) -> None:
        result, _ = run(tmp_path, {"pod.yaml": pod("  namespace: kube-system\n")})
        assert_bad_input(result, "pod.yaml: document 1 (Pod p)", "'kube-system'",
                         "infra program")

    def test_another_namespace_in_a_custom_resource(self, tmp_path: Path) -> None:
        job = RAY_JOB.replace("  name: train\n", "  name: train\n  namespace: ml\n")
        result, _ = run(tmp_path, {"ray.yaml": job})
        assert_bad_input(result, "ray.yaml: document 1 (RayJob train)", "'ml'")

    def test_the_apps_own_namespace(self, tmp_path: Path) -> None:
        result, _ = run(tmp_path, {"pod.yaml": pod("  namespace: hello\n")})
        assert result.code == 0, result.stderr

    def test_app_is_a_dns_label(self, tmp_path: Path) -> None:
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "pod.yaml").write_text(pod())
        result = cli("render", "--templates", str(templates), "--image", f"hello={REF}",
                     "--app", "Hello_App", "--out", str(tmp_path / "out"))
        assert_bad_input(result, "not a DNS label")

    def test_scope_table_names_real_kinds(self) -> None:
        known = {(split_api_version(api)[0], kind) for version in (DEFAULT_KUBE_VERSION, "1.37")
                 for api, kind in KubeSchemas(version).kinds}
        removed = {(split_api_version(api)[0], kind) for api, kind in REMOVED}
        assert CLUSTER_SCOPED - known <= removed


class TestSecretsStayOutOfLogs:
    """A schema error in a Secret names the field and the rule, never the value."""

    def test_secret_values_stay_out_of_the_error(self, tmp_path: Path) -> None:
        secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
                  "stringData:\n  password: 81726354\n")
        result, _ = run(tmp_path, {"pod.yaml": pod(), "secret.yaml": secret})
        assert_bad_input(result, "(Secret db): stringData.password", "'type' rule")
        assert "81726354" not in result.stderr
