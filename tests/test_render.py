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


def render_bytes(tmp_path: Path, files: dict[str, bytes], *images: str,
                 extra: tuple[str, ...] = ()) -> tuple[object, Path]:
    templates = tmp_path / "templates"
    for name, data in files.items():
        (templates / name).parent.mkdir(parents=True, exist_ok=True)
        (templates / name).write_bytes(data)
    out = tmp_path / "out"
    args = ["--app", "hello", "--templates", str(templates), "--out", str(out), *extra]
    for image in images:
        args += ["--image", image]
    return cli("render", *args), out


POD_HEAD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n"


class TestFaithful:
    """Only the image values change, byte for byte, whatever the file's form: the output is
    exactly the input with each pinned value's text replaced (expected bytes built by hand)."""

    def check(self, tmp_path: Path, before: bytes, after: bytes, name: str = "pod.yaml") -> None:
        result, out = render_bytes(tmp_path, {name: before}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert (out / name).read_bytes() == after

    def test_crlf_stays_crlf(self, tmp_path: Path) -> None:
        text = (POD_HEAD + "    - name: a\n      image: hello  # pinned\n").replace("\n", "\r\n")
        self.check(tmp_path, text.encode(), text.replace("image: hello", f"image: {REF}")
                   .encode())

    def test_byte_order_mark_kept(self, tmp_path: Path) -> None:
        text = "\ufeff" + POD_HEAD + "    - name: a\n      image: hello\n"
        self.check(tmp_path, text.encode(), text.replace("image: hello", f"image: {REF}")
                   .encode())

    @pytest.mark.parametrize("written,pinned", [
        ("'hello'", f"'{REF}'"), ('"hello:1"', f'"{REF}"'), ("hello", REF)])
    def test_quoting_style_kept(self, tmp_path: Path, written: str, pinned: str) -> None:
        text = POD_HEAD + f"    - name: a\n      image: {written}\n"
        self.check(tmp_path, text.encode(), text.replace(written, pinned).encode())

    def test_trailing_spaces_and_tabs_after_a_value(self, tmp_path: Path) -> None:
        text = ("apiVersion: v1 \t\nkind: Pod\t\nmetadata:\n  name: p   \nspec:\n"
                "  containers:\n    - name: a\t\n      image: hello \t \n")
        self.check(tmp_path, text.encode(), text.replace("image: hello", f"image: {REF}")
                   .encode())

    def test_flow_style_and_comments(self, tmp_path: Path) -> None:
        text = ("# top\napiVersion: v1  # api\nkind: Pod\nmetadata: {name: p}  # flow\n"
                "spec: {containers: [{name: a, image: hello}, {name: b, image: 'other'}]}\n"
                "# end\n")
        self.check(tmp_path, text.encode(), text.replace("image: hello", f"image: {REF}")
                   .encode())

    def test_anchor_on_the_image_pins_its_aliases(self, tmp_path: Path) -> None:
        text = POD_HEAD + "    - name: a\n      image: &img hello\n    - name: b\n" \
                          "      image: *img\n"
        self.check(tmp_path, text.encode(), text.replace("&img hello", f"&img {REF}").encode())

    def test_alias_of_a_label_used_as_image_is_replaced_at_the_alias(
            self, tmp_path: Path) -> None:
        text = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: &app hello}\n"
                "spec:\n  containers:\n    - name: a\n      image: *app\n")
        self.check(tmp_path, text.encode(), text.replace("image: *app", f"image: {REF}").encode())

    def test_anchored_image_also_used_elsewhere_keeps_the_other_use(
            self, tmp_path: Path) -> None:
        text = (POD_HEAD + "    - name: a\n      image: &app hello\n"
                "      env: [{name: IMAGE, value: *app}]\n")
        after = text.replace("&app hello", f"&app {REF}").replace("value: *app", 'value: "hello"')
        self.check(tmp_path, text.encode(), after.encode())

    def test_merge_keys_and_block_scalars(self, tmp_path: Path) -> None:
        text = (POD_HEAD + "    - &base\n      name: a\n      image: hello\n"
                "    - <<: *base\n      name: b\n    - name: c\n      image: |-\n        hello\n")
        after = text.replace("      image: hello\n", f"      image: {REF}\n") \
                    .replace("      image: |-\n        hello\n", f'      image: "{REF}"\n')
        self.check(tmp_path, text.encode(), after.encode())

    def test_documents_separators_and_end_markers(self, tmp_path: Path) -> None:
        pod = POD_HEAD + "    - name: a\n      image: hello\n"
        text = f"---\n{pod}...\n---\n# only a comment\n---\n{pod.replace('name: p', 'name: q')}"
        self.check(tmp_path, text.encode(), text.replace("image: hello", f"image: {REF}")
                   .encode())


class TestJson:
    """`.json` manifests are pinned in place too; what the API server would refuse is refused."""

    def test_pinned_with_formatting_kept(self, tmp_path: Path) -> None:
        text = ('{\n\t"apiVersion": "v1", "kind": "Pod",\n\t"metadata": {"name": "p"},\n'
                '\t"spec": {"containers": [{"name": "a", "image": "hello:1"}]}\n}\n')
        result, out = render_bytes(tmp_path, {"pod.json": text.encode()}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert (out / "pod.json").read_text() == text.replace('"hello:1"', f'"{REF}"')

    def test_several_objects_in_a_row(self, tmp_path: Path) -> None:
        pod = '{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "%s"}, ' \
              '"spec": {"containers": [{"name": "a", "image": "hello"}]}}'
        text = (pod % "p") + "\n" + (pod % "q") + "\n"
        result, out = render_bytes(tmp_path, {"pods.json": text.encode()}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert (out / "pods.json").read_text().count(f'"image": "{REF}"') == 2

    @pytest.mark.parametrize("text,fragment", [
        ('{"apiVersion": "v1", "apiVersion": "v1"}', "duplicate key"),
        ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, '
         '"data": {"x": NaN}}', "NaN"),
        ('{"apiVersion": "v1",', "invalid JSON"),
        ("", "empty JSON file"),
    ])
    def test_refused(self, tmp_path: Path, text: str, fragment: str) -> None:
        pod = (POD_HEAD + "    - name: a\n      image: hello\n").encode()
        result, out = render_bytes(tmp_path, {"a.yaml": pod, "b.json": text.encode()},
                                   f"hello={REF}")
        assert_bad_input(result, "b.json", fragment)
        assert not out.exists()


class TestEveryFile:
    """Every input manifest is in the output or the run fails; other files are named."""

    def test_nested_folders_and_every_suffix(self, tmp_path: Path) -> None:
        pod = (POD_HEAD + "    - name: a\n      image: hello\n").encode()
        config = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
        files = {"a.yaml": pod, "sub/b.yml": config, "sub/deeper/c.json":
                 b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}',
                 "empty.yaml": b"", "README.md": b"# notes\n"}
        result, out = render_bytes(tmp_path, files, f"hello={REF}")
        assert result.code == 0, result.stderr
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert written == ["a.yaml", "empty.yaml", "sub/b.yml", "sub/deeper/c.json"]
        assert (out / "sub/b.yml").read_bytes() == config
        assert "notice: README.md skipped" in result.stdout
        assert result.last_line == str(out)

    @pytest.mark.parametrize("name,data,fragment", [
        ("Deploy.YAML", b"a: 1\n", "lower-case"),
        ("latin1.yaml", "name: caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        ("values.yaml", b"replicaCount: 2\n", "not a Kubernetes object"),
    ])
    def test_refused_files(self, tmp_path: Path, name: str, data: bytes, fragment: str) -> None:
        pod = (POD_HEAD + "    - name: a\n      image: hello\n").encode()
        result, out = render_bytes(tmp_path, {"pod.yaml": pod, name: data}, f"hello={REF}")
        assert_bad_input(result, name, fragment)
        assert not out.exists()

    def test_symlink_out_of_the_folder(self, tmp_path: Path) -> None:
        (tmp_path / "secret.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
        pod = (POD_HEAD + "    - name: a\n      image: hello\n").encode()
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "link.yaml").symlink_to(tmp_path / "secret.yaml")
        result, out = render_bytes(tmp_path, {"pod.yaml": pod}, f"hello={REF}")
        assert_bad_input(result, "link.yaml", "symlink")
        assert not out.exists()


class TestLists:
    """`kind: List` is accepted and each of its items validated like any object."""

    def list_of(self, item: str) -> bytes:
        pod = ("{apiVersion: v1, kind: Pod, metadata: {name: p}, "
               "spec: {containers: [{name: a, image: hello}]}}")
        return f"apiVersion: v1\nkind: List\nitems:\n  - {pod}\n  - {item}\n".encode()

    def test_items_pinned_and_validated(self, tmp_path: Path) -> None:
        data = self.list_of("{apiVersion: v1, kind: Service, metadata: {name: s}, "
                            "spec: {ports: [{port: 80}]}}")
        result, out = render_bytes(tmp_path, {"list.yaml": data}, f"hello={REF}")
        assert result.code == 0, result.stderr
        assert images_in((out / "list.yaml").read_text()) == [REF]

    def test_invalid_item_named(self, tmp_path: Path) -> None:
        data = self.list_of("{apiVersion: v1, kind: Service, metadata: {name: s}, "
                            "spec: {ports: [{port: eighty}]}}")
        result, _ = render_bytes(tmp_path, {"list.yaml": data}, f"hello={REF}")
        assert_bad_input(result, "list.yaml: document 1 item 2 (Service s)", "port")
