"""render.py: digest pinning that leaves every other byte alone, and refuses what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import DIGEST_A, REGISTRY, assert_bad_input, cli

REF = f"{REGISTRY}/hello@{DIGEST_A}"

POD_SPEC = """\
      initContainers:
        - name: migrate
          image: hello:1.0   # replaced too
      containers:
        - name: web
          image: "hello"
        - name: proxy
          image: envoyproxy/envoy:v1.31.0
"""


def workload(kind: str) -> str:
    api = {"Pod": "v1", "ReplicationController": "v1", "Job": "batch/v1",
           "CronJob": "batch/v1"}.get(kind, "apps/v1")
    selector = "  selector:\n    matchLabels:\n      app: hello\n"
    labels = "    metadata:\n      labels:\n        app: hello\n"
    pod = POD_SPEC
    if kind == "Pod":
        return f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n{indent_spec(pod, 2)}"
    if kind == "Job":
        return (f"apiVersion: {api}\nkind: Job\nmetadata:\n  name: hello\nspec:\n  template:\n"
                f"    spec:\n      restartPolicy: Never\n{indent_spec(pod, 6)}")
    if kind == "CronJob":
        return (f"apiVersion: {api}\nkind: CronJob\nmetadata:\n  name: hello\nspec:\n"
                f"  schedule: '*/5 * * * *'\n  jobTemplate:\n    spec:\n      template:\n"
                f"        spec:\n          restartPolicy: OnFailure\n{indent_spec(pod, 10)}")
    extra = "  serviceName: hello\n" if kind == "StatefulSet" else ""
    if kind == "ReplicationController":
        selector = "  selector:\n    app: hello\n"
    return (f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: hello\nspec:\n{extra}{selector}"
            f"  template:\n{labels}    spec:\n{indent_spec(pod, 6)}")


def indent_spec(pod: str, spaces: int) -> str:
    """Re-indent POD_SPEC (written at 6 spaces) to the given depth."""
    return "".join(" " * spaces + line[6:] for line in pod.splitlines(keepends=True))


def render(tmp_path: Path, files: dict[str, str], *images: str) -> tuple[object, Path]:
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    for name, text in files.items():
        (templates / name).write_text(text)
    out = tmp_path / "out"
    args = ["--templates", str(templates), "--out", str(out)]
    for image in images:
        args += ["--image", image]
    return cli("render", "--app", "hello", *args), out


def images_in(text: str) -> list[str]:
    found = []
    for doc in yaml.safe_load_all(text):
        stack = [doc]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("image"), str):
                    found.append(node["image"])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return sorted(found)


class TestPinning:
    """Every container and init container using NAME, in every workload kind, gets REF."""

    @pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "Job",
                                      "CronJob", "Pod", "ReplicaSet", "ReplicationController"])
    def test_every_workload_kind(self, tmp_path: Path, kind: str) -> None:
        result, out = render(tmp_path, {"app.yaml": workload(kind)}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert result.last_line == str(out)
        assert images_in((out / "app.yaml").read_text()) == sorted(
            [REF, REF, "envoyproxy/envoy:v1.31.0"])

    def test_multi_document_files_and_other_kinds_untouched(self, tmp_path: Path) -> None:
        service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n" \
                  "  ports:\n    - port: 80\n      targetPort: 8080\n"
        text = workload("Deployment") + "---\n" + service + "---\n" + workload("CronJob")
        result, out = render(tmp_path, {"all.yaml": text}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert images_in((out / "all.yaml").read_text()).count(REF) == 4

    def test_everything_else_is_kept_byte_for_byte(self, tmp_path: Path) -> None:
        text = "# Hello app\n" + workload("Deployment").replace(
            "metadata:\n  name: hello", "metadata:\n  # keep me\n  name: hello  # and me")
        result, out = render(tmp_path, {"app.yaml": text}, f"hello={REF}")
        assert result.code == 0, result.stderr
        before, after = text.splitlines(), (out / "app.yaml").read_text().splitlines()
        assert len(before) == len(after)
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        assert changed == [
            ("          image: hello:1.0   # replaced too",
             f"          image: {REF}   # replaced too"),
            ('          image: "hello"', f'          image: "{REF}"'),  # still quoted
        ]

    def test_tagged_and_digested_templates_match_by_name(self, tmp_path: Path) -> None:
        text = workload("Pod").replace('"hello"', f"{REGISTRY}/hello:old@{DIGEST_A}") \
            .replace("hello:1.0", f"{REGISTRY}/hello:1.0")
        ref = f"{REGISTRY}/hello@sha256:{'d' * 64}"
        result, out = render(tmp_path, {"pod.yaml": text}, f"{REGISTRY}/hello={ref}")
        assert result.code == 0, result.stderr
        assert images_in((out / "pod.yaml").read_text()).count(ref) == 2

    def test_flow_style_containers(self, tmp_path: Path) -> None:
        text = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                "spec: {containers: [{name: c, image: hello}]}\n")
        result, out = render(tmp_path, {"pod.yml": text}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert images_in((out / "pod.yml").read_text()) == [REF]

    def test_several_images(self, tmp_path: Path) -> None:
        envoy = f"envoyproxy/envoy@sha256:{'e' * 64}"
        result, out = render(tmp_path, {"app.yaml": workload("Deployment")},
                             f"hello={REF}", f"envoyproxy/envoy={envoy}")
        assert result.code == 0, result.stderr
        assert images_in((out / "app.yaml").read_text()) == sorted([REF, REF, envoy])


class TestRefusals:
    """Bad input: exit 2, one error line, nothing written."""

    @pytest.mark.parametrize("ref", [
        f"{REGISTRY}/hello:1.0",
        f"{REGISTRY}/hello@sha256:{'a' * 63}",
        f"{REGISTRY}/hello@sha512:{'a' * 64}",
        f"{REGISTRY}/Hello@{DIGEST_A}",
        f"hello @{DIGEST_A}",
    ])
    def test_reference_without_valid_digest(self, tmp_path: Path, ref: str) -> None:
        result, out = render(tmp_path, {"app.yaml": workload("Deployment")}, f"hello={ref}")
        assert_bad_input(result, "image reference")
        assert not out.exists()

    def test_name_no_container_uses(self, tmp_path: Path) -> None:
        result, out = render(tmp_path, {"app.yaml": workload("Deployment")},
                             f"hello={REF}", f"other={REGISTRY}/other@{DIGEST_A}")
        assert_bad_input(result, "no container uses image 'other'")
        assert not out.exists()

    def test_yaml_that_does_not_parse(self, tmp_path: Path) -> None:
        result, out = render(tmp_path, {"a.yaml": workload("Pod"), "b.yaml": "a: [1, 2\n"},
                             f"hello={REF}")
        assert_bad_input(result, "b.yaml", "invalid YAML")
        assert not out.exists()

    @pytest.mark.parametrize("mutation,fragment", [
        (("  name: hello\nspec:", "  name: hello\nspec:\n  replicas: two"), "replicas"),
        (("  name: hello\nspec:", "  name: hello\n  colour: blue\nspec:"), "colour"),
        (("apiVersion: apps/v1", "apiVersion: apps/v9"), "no schema"),
    ])
    def test_schema_failures(self, tmp_path: Path, mutation: tuple[str, str],
                             fragment: str) -> None:
        text = workload("Deployment").replace(*mutation, 1)
        result, out = render(tmp_path, {"app.yaml": text}, f"hello={REF}")
        assert_bad_input(result, "app.yaml", fragment)
        assert not out.exists()

    def test_output_folder_not_empty(self, tmp_path: Path) -> None:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.yaml").write_text("precious: true\n")
        result, out = render(tmp_path, {"app.yaml": workload("Deployment")}, f"hello={REF}")
        assert_bad_input(result, "not empty")
        assert [p.name for p in out.iterdir()] == ["keep.yaml"]

    def test_usage_error_is_one_line(self, tmp_path: Path) -> None:
        assert_bad_input(cli("render", "--templates", str(tmp_path)), "required")
