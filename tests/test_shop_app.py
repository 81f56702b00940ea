"""The shop sample app: two images, a kustomize base with two overlays, delivered end to end.

The local loop runs its pipeline YAML (both images tested, built and pinned; render hydrates
the production overlay) and its deliveries against the fake cluster, so pruning is real: the
second release renames the kustomize-generated ConfigMap, and delivering it, then rolling back,
deletes exactly the ConfigMap the other tree no longer holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import fake_kubectl
from conftest import ROOT, fake_cluster_env, fsck, git
from dockerfile_model import image
from pulumi_harness import pipeline_of, program_graph
from test_pipelines import critical_path, used_substitutions
from test_sample_app import replicas_an_hpa_owns

SHOP = ROOT / "examples" / "shop"
OVERLAYS = ("staging", "production")
IMAGES = ("frontend", "backend")


@cache
def overlay(name: str) -> tuple[dict[str, Any], ...]:
    """The overlay as `kubectl kustomize` (which render runs in the pipeline) builds it."""
    out = subprocess.run(["kubectl", "kustomize", str(SHOP / "kubernetes" / "overlays" / name)],
                         capture_output=True, text=True, check=True).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def printed(doc: dict[str, Any]) -> str:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


class TestManifests:
    """Both overlays hydrate into valid manifests of a realistic two-image app."""

    @pytest.mark.parametrize("name", OVERLAYS)
    def test_every_object_is_valid(self, name: str) -> None:
        for doc in overlay(name):
            kubernetes_validate.validate(doc, "1.33", strict=True)

    @pytest.mark.parametrize("name", OVERLAYS)
    def test_each_deployment_has_an_hpa_that_owns_its_scale_and_a_pdb(self, name: str) -> None:
        docs = overlay(name)
        deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
        assert sorted(deployments) == ["shop-backend", "shop-frontend"]
        assert replicas_an_hpa_owns(list(docs)) == []
        scaled = {h["spec"]["scaleTargetRef"]["name"]
                  for h in of_kind(docs, "HorizontalPodAutoscaler")}
        assert scaled == set(deployments)
        budgets = [p["spec"]["selector"]["matchLabels"]
                   for p in of_kind(docs, "PodDisruptionBudget")]
        for deployment in deployments.values():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert any(selector.items() <= labels.items() for selector in budgets)

    def test_overlays_differ_in_scale_and_title(self) -> None:
        bounds = {name: {(h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
                         for h in of_kind(overlay(name), "HorizontalPodAutoscaler")}
                  for name in OVERLAYS}
        assert bounds == {"staging": {(1, 2)}, "production": {(3, 12)}}
        titles = {name: of_kind(overlay(name), "ConfigMap")[0]["data"]["SHOP_TITLE"]
                  for name in OVERLAYS}
        assert titles == {"staging": "Shop (staging)", "production": "Shop"}

    def test_the_secret_is_referenced_never_shipped(self) -> None:
        docs = overlay("production")
        assert of_kind(docs, "Secret") == []
        backend = next(d for d in of_kind(docs, "Deployment")
                       if d["metadata"]["name"] == "shop-backend")
        env = backend["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "PAYMENT_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": "shop-payment", "key": "api-key"}}} in env

    def test_the_pipeline_pins_exactly_the_two_placeholders(self) -> None:
        docs = overlay("production")
        images = {c["image"] for d in of_kind(docs, "Deployment")
                  for c in d["spec"]["template"]["spec"]["containers"]}
        assert images == set(IMAGES)
        render = next(s for s in yaml.safe_load((SHOP / "cloudbuild.yaml").read_text())["steps"]
                      if s["id"] == "render")
        for name in IMAGES:
            assert f"--image={name}=$$(cat /workspace/{name}-ref)" in render["args"][1]


class TestImages:
    """Each image serves where its Deployment's ports, probes and Service look, as non-root."""

    @pytest.mark.parametrize("name", IMAGES)
    def test_runtime_stage_matches_the_deployment(self, name: str) -> None:
        runtime = image(SHOP / name / "Dockerfile", "runtime")
        assert runtime.user.split(":")[0] not in ("", "0", "root")
        command = runtime.command
        assert command[0] == "gunicorn"
        host, _, port = command[command.index("--bind") + 1].rpartition(":")
        assert host == "0.0.0.0"
        deployment = next(d for d in of_kind(overlay("production"), "Deployment")
                          if d["metadata"]["name"] == f"shop-{name}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": int(port)}]
        assert container["readinessProbe"]["httpGet"]["port"] == "http"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


class TestPipeline:
    """The shop's cloudbuild.yaml: what its trigger sets, parallel where it can be."""

    def test_substitutions_agree_with_its_trigger(self) -> None:
        trigger = program_graph("three-apps").named("ci-shop")
        assert trigger.inputs["filename"] == "cloudbuild.yaml"
        build = pipeline_of(trigger)
        assert build == yaml.safe_load((SHOP / "cloudbuild.yaml").read_text())
        used, _ = used_substitutions(build)
        assert used == set(trigger.inputs["substitutions"])

    def test_tests_and_builds_run_in_parallel(self) -> None:
        build = yaml.safe_load((SHOP / "cloudbuild.yaml").read_text())
        first = [s["id"] for s in build["steps"] if s.get("waitFor") == ["-"]]
        assert first == ["test-frontend", "test-backend", "build-frontend", "build-backend"]
        assert critical_path(build) == 4


@dataclass
class LoopRun:
    stdout: str
    env_repo: Path
    cluster: Path


@pytest.fixture(scope="module")
def shop_loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopRun]:
    """`local_loop.py --app shop`, delivering to the fake cluster; run once for the module."""
    tmp = tmp_path_factory.mktemp("shop-loop")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(fake_cluster_env(tmp))
    (tmp / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    env["KUBECONFIG"], env["HOME"] = str(tmp / "kubeconfig"), str(tmp / "home")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "local_loop.py"), "--app",
                           "shop", "--workdir", str(tmp / "loop")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    run = LoopRun(proc.stdout, tmp / "loop" / "env.git", tmp / "cluster")
    yield run
    fsck(run.env_repo)


def tree_objects(env_repo: Path, ref: str) -> list[dict[str, Any]]:
    names = git("ls-tree", "-r", "--name-only", ref, "--", "apps/shop/", cwd=env_repo).split()
    return [doc for name in names
            for doc in yaml.safe_load_all(git("show", f"{ref}:{name}", cwd=env_repo)) if doc]


def commits(repo: Path, branch: str) -> list[str]:
    """The branch's commits for shop, newest first."""
    return git("log", "--format=%H", branch, "--", "apps/shop/", cwd=repo).split()


def config_map(repo: Path, commit: str) -> str:
    return next(printed(d) for d in tree_objects(repo, commit) if d["kind"] == "ConfigMap")


class TestShopLoop:
    """Two releases through staging and production, then a rollback in production, through the
    pipeline YAML: both images recorded and shown, each namespace ends with exactly its
    production branch's objects, and only the replaced ConfigMaps were deleted."""

    def test_histories_and_both_images(self, shop_loop: LoopRun) -> None:
        repo = shop_loop.env_repo
        assert "kubeconfig found" in shop_loop.stdout
        candidate = commits(repo, "staging-candidate")
        assert [git("log", "-1", "--format=%s", c, cwd=repo).split(":")[0]
                for c in candidate] == ["Deploy shop", "Deploy shop"]
        production = git("log", "--format=%s", "production-production", cwd=repo).splitlines()
        assert [s.split(":")[0] for s in production] == [
            "Rollback shop", "Promote shop", "Promote shop", "Initialize env repository"]
        second, first = ([ref for ref in git(
            "log", "-1", "--format=%(trailers:key=Image,valueonly)", c, cwd=repo).split()]
            for c in candidate)
        assert [ref.split("@")[0].rsplit("/", 1)[1] for ref in first] == [
            "shop-frontend", "shop-backend"]
        assert second[0] == first[0]  # the frontend did not change
        assert second[1] != first[1]  # the backend did
        for branch in ("production-candidate", "production-production"):
            assert git("log", "-1", "--format=%(trailers:key=Image,valueonly)", branch,
                       cwd=repo).split() == (first if branch.endswith("production") else second)
        assert "shop-frontend@sha256:" in shop_loop.stdout.split("shop history")[1]

    def test_prune_deleted_exactly_the_replaced_config_maps(self, shop_loop: LoopRun) -> None:
        repo = shop_loop.env_repo
        second, first = (config_map(repo, c) for c in commits(repo, "staging-candidate"))
        assert first != second
        deleted = (shop_loop.cluster / "deleted.log").read_text().splitlines()
        # Release 2 drops the first in each environment; production's rollback the second.
        assert deleted == [f"shop-staging {first}", f"shop {first}", f"shop {second}"]
        for namespace, branch in (("shop-staging", "staging-production"),
                                  ("shop", "production-production")):
            assert fake_kubectl.live(shop_loop.cluster, namespace) == {
                printed(d) for d in tree_objects(repo, branch)}
        applies = [json.loads(line) for line in
                   (shop_loop.cluster / "calls.log").read_text().splitlines()
                   if line.startswith('["apply"')]
        assert len(applies) == 5
        assert all("--field-manager=gitops-delivery" in call for call in applies)
