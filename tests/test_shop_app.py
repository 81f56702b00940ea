"""The shop sample app: two images, a kustomize base with two overlays, a realistic app.

Its run through the local loop (both images tested, built, pinned and recorded; its deliveries
pruning against the fake cluster) is tested with the loop, in test_pipelines.py.
"""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1

from conftest import ROOT
from dockerfile_model import image
from pulumi_harness import pipeline_of, program_graph
from test_pipelines import critical_path, strict_build, used_substitutions
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
        set_by_trigger = set(trigger.inputs["substitutions"])
        assert set_by_trigger <= used  # Cloud Build refuses a trigger value the YAML ignores
        assert used == set_by_trigger | set(build.get("substitutions", {}))

    def test_both_images_get_verified_provenance(self) -> None:
        config = yaml.safe_load((SHOP / "cloudbuild.yaml").read_text())
        build = strict_build(config)
        assert build.options.requested_verify_option == \
            cloudbuild_v1.BuildOptions.VerifyOption.VERIFIED
        # Cloud Build pushes (and attests) exactly the tags whose digests render pins.
        push = next(s for s in config["steps"] if s["id"] == "push")
        for tag in build.images:
            assert f"{tag} > /workspace/" in push["args"][1]
        assert [i.split("/")[-1] for i in build.images] == [
            "${_APP}-frontend:${SHORT_SHA}", "${_APP}-backend:${SHORT_SHA}"]
        publish = next(s for s in config["steps"] if s["id"] == "publish")
        assert "--provenance=projects/${PROJECT_ID}/locations/${LOCATION}/builds/${BUILD_ID}" \
            in publish["args"][1]

    def test_tests_and_builds_run_in_parallel(self) -> None:
        build = yaml.safe_load((SHOP / "cloudbuild.yaml").read_text())
        first = [s["id"] for s in build["steps"] if s.get("waitFor") == ["-"]]
        assert first == ["test-frontend", "test-backend", "build-frontend", "build-backend"]
        assert critical_path(build) == 4
