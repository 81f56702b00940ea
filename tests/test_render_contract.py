"""render.py's exit-code contract holds for any bytes: exit 0 with the output folder as the
last line, or exit 2 with exactly one `error:` line and nothing written; never a traceback.

Property-based: random bytes, YAML-looking text, JSON values, and valid manifests with random
edits. The library's main runs in-process; examples are capped and derandomized so the run is
short and the same on every machine.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DIGEST_A, REGISTRY, Result, assert_bad_input, cli

REF = f"{REGISTRY}/hello@{DIGEST_A}"


def budget(examples: int) -> settings:
    """A fixed number of derandomized examples (same on every run), no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello  # the app
  labels: {app: &app hello}
spec:
  selector:
    matchLabels:
      app: *app
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
        - name: web
          image: "hello:1"
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}]}}
"""
YAML_PIECES = ["apiVersion: v1\n", "kind: Pod\n", "kind: List\n", "items:\n", "metadata:\n",
               "  name: p\n", "spec:\n", "  containers:\n", "    - image: hello\n", "image: ",
               "hello", "&a ", "*a", "<<: ", "!!binary ", "!tag ", "{{ .Values.x }}", "[", "]",
               "{", "}", ": ", "- ", "---\n", "...\n", "'", '"', "#", "|", ">", "\t", "\r\n",
               "\n", "  ", "\ufeff", "\x00", "é", "2024-01-01", "0x1F", "1:20", "~", "=", "?"]
API_VERSIONS = ["v1", "apps/v1", "batch/v1", "ray.io/v1", "extensions/v1beta1", "", "a/b/c"]
KINDS = ["Pod", "Deployment", "CronJob", "List", "DeploymentList", "RayJob", "Namespace", "X"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
    st.sampled_from(["v1", "Pod", "List", "hello", "hello:1", "image", "apps/v1"]),
    lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "name", "spec",
                                     "template", "items", "containers", "image"]),
                    inner, max_size=5),
    max_leaves=25)


def render_one(name: str, data: bytes) -> tuple[Result, Path]:
    with tempfile.TemporaryDirectory() as tmp:
        templates, out = Path(tmp) / "templates", Path(tmp) / "out"
        templates.mkdir()
        (templates / name).write_bytes(data)
        result = cli("render", "--templates", str(templates), "--image", f"hello={REF}",
                     "--app", "hello", "--out", str(out))
        written = out.exists()
    return result, Path(str(written))


def holds_contract(name: str, data: bytes) -> None:
    result, written = render_one(name, data)
    assert result.code in (0, 2), result
    if result.code == 2:
        assert_bad_input(result)
        assert str(written) == "False"
    else:
        assert result.stderr == ""
        assert str(written) == "True"


class TestAnyInput:
    """Only exit 0, or exit 2 with one `error:` line, whatever the bytes."""

    @budget(60)
    @given(st.binary(max_size=400), st.sampled_from(["a.yaml", "a.json"]))
    def test_random_bytes(self, data: bytes, name: str) -> None:
        holds_contract(name, data)

    @budget(80)
    @given(st.lists(st.sampled_from(YAML_PIECES), max_size=40))
    def test_yaml_looking_text(self, pieces: list[str]) -> None:
        holds_contract("a.yaml", "".join(pieces).encode("utf-8", "surrogatepass"))

    @budget(40)
    @given(st.fixed_dictionaries(
        {"apiVersion": st.sampled_from(API_VERSIONS), "kind": st.sampled_from(KINDS)},
        optional={"metadata": st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "hello", "", "x" * 300])},
            optional={"namespace": st.sampled_from(["hello", "other", ""])}),
            "spec": JSON_VALUES, "items": st.lists(JSON_VALUES, max_size=3),
            "image": JSON_VALUES}) | JSON_VALUES)
    def test_json_objects(self, value: object) -> None:
        holds_contract("a.json", json.dumps(value).encode())
        holds_contract("a.yaml", json.dumps(value).encode())

    @budget(100)
    @given(st.lists(st.tuples(st.integers(0, len(MANIFEST)), st.integers(0, 3),
                              st.sampled_from(YAML_PIECES)), min_size=1, max_size=4))
    def test_manifests_with_random_edits(self, edits: list[tuple[int, int, str]]) -> None:
        text = MANIFEST
        for position, removed, inserted in edits:
            text = text[:position] + inserted + text[position + removed:]
        holds_contract("a.yaml", text.encode())

    def test_unedited_manifest_renders(self) -> None:
        result, _ = render_one("a.yaml", MANIFEST.encode())
        assert result.code == 0, result.stderr


class TestKnownTracebacks:
    """Inputs that once gave a traceback and exit 1 give exit 2 and a reason."""

    @pytest.mark.parametrize("text,fragment", [
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
         "    - name: a\n      image: {{ .Values.image }}\n", "template placeholder"),
        ("{{- if .Values.enabled }}\napiVersion: v1\nkind: Pod\n{{- end }}\n", "template"),
        ("[" * 5000 + "]" * 5000, "invalid YAML"),
        ("a:\n" + "".join("  " * i + "b:\n" for i in range(1, 150)), "nested deeper"),
        ("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)),
         "excessive aliasing"),
        ("a: &a [*a]\n", "contains it"),
        ("a: *nowhere\n", "no anchor"),
    ])
    def test_yaml(self, text: str, fragment: str) -> None:
        result, _ = render_one("a.yaml", text.encode())
        assert_bad_input(result, fragment)

    def test_line_breaks_in_names_stay_on_one_line(self) -> None:
        text = ('apiVersion: v1\nkind: Pod\nmetadata: {name: "a\\nb"}\n'
                'spec: {containers: [{name: a, image: hello, colour: red}]}\n')
        result, _ = render_one("a.yaml", text.encode())
        assert_bad_input(result, "(Pod a b)", "colour")

    def test_deep_json(self) -> None:
        result, _ = render_one("a.json", ("[" * 5000 + "]" * 5000).encode())
        assert_bad_input(result, "a.json", "nested")
