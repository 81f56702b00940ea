"""The triggers under mocks: delivery timing, who may start a preview, what the preview runs in."""

from __future__ import annotations

import pytest
import yaml
from google.cloud.devtools import cloudbuild_v1

from components.config import ConfigError
from components.delivery_timing import MARGIN_SECONDS, DeliveryTiming
from conftest import ROOT
from program_graphs import graph_of
from pulumi_harness import TRIGGER, Graph, base_config, pipeline_of, run_program

DELIVERY_YAML = ROOT / "pipelines" / "delivery.yaml"


def seconds(value: str) -> int:
    assert value.endswith("s"), value
    return int(value[:-1])


@pytest.fixture(scope="module")
def github() -> Graph:
    return graph_of("github")


@pytest.fixture(scope="module")
def slow_rollouts() -> Graph:
    return run_program(base_config(**{"gitops:rolloutTimeout": "1200s",
                                      "gitops:stateBackend": "https://api.pulumi.com",
                                      "gitops:pulumiTokenSecret": "pulumi-token"}))


class TestDeliveryTiming:
    """Lock wait + rollout timeout + margin < build timeout, all from gitops:rolloutTimeout: a
    delivery waiting for the Lease or rolling out is never killed by Cloud Build."""

    @pytest.mark.parametrize("setting", ["300s", "1s", "1200s", "5000s"])
    def test_inequality(self, setting: str) -> None:
        timing = DeliveryTiming.from_setting(setting)
        assert timing.lock_wait + timing.rollout + MARGIN_SECONDS < timing.build_timeout
        # A waiting delivery outlasts the Lease of a crashed holder, and its own revert fits.
        assert timing.lock_wait >= timing.lease
        assert timing.lock_wait + 2 * timing.rollout + MARGIN_SECONDS <= timing.build_timeout

    @pytest.mark.parametrize("setting", ["0s", "300", "5m", "30000s"])
    def test_bad_settings_are_refused(self, setting: str) -> None:
        with pytest.raises(ConfigError, match="gitops:rolloutTimeout"):
            DeliveryTiming.from_setting(setting)

    @pytest.mark.parametrize("fixture,setting", [("github", "300s"),
                                                 ("slow_rollouts", "1200s")])
    def test_triggers_pass_the_derived_values(self, fixture: str, setting: str,
                                              request: pytest.FixtureRequest) -> None:
        graph: Graph = request.getfixturevalue(fixture)
        timing = DeliveryTiming.from_setting(setting)
        trigger = graph.named("deliver-hello")
        subs = trigger.inputs["substitutions"]
        build_timeout = seconds(trigger.inputs["build"]["timeout"])
        lock, rollout = seconds(subs["_LOCK_TIMEOUT"]), seconds(subs["_ROLLOUT_TIMEOUT"])
        assert (rollout, lock, build_timeout) == (timing.rollout, timing.lock_wait,
                                                  timing.build_timeout)
        assert lock + rollout + MARGIN_SECONDS < build_timeout

    def test_deploy_gets_both_flags(self) -> None:
        args = yaml.safe_load(DELIVERY_YAML.read_text())["steps"][0]["args"]
        assert "--timeout=${_ROLLOUT_TIMEOUT}" in args
        assert "--lock-timeout=${_LOCK_TIMEOUT}" in args

    def test_yaml_timeout_is_the_default_settings(self) -> None:
        build = yaml.safe_load(DELIVERY_YAML.read_text())
        assert seconds(build["timeout"]) == DeliveryTiming.from_setting("300s").build_timeout


class TestForkPullRequests:
    """A pull request from someone without write access runs no preview until a maintainer
    comments /gcbrun: the preview identity can read and decrypt the stack's state."""

    def test_github_preview_needs_a_comment_for_outsiders(self, github: Graph) -> None:
        pull_request = github.named("preview").inputs["repositoryEventConfig"]["pullRequest"]
        control = pull_request["commentControl"]
        assert control == "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"
        # The value is one of the API's enum names.
        assert control in cloudbuild_v1.PullRequestFilter.CommentControl.__members__

    def test_only_the_preview_reviews_pull_requests(self, github: Graph) -> None:
        reviewing = [t.name for t in github.of_type(TRIGGER)
                     if "pullRequest" in t.inputs.get("repositoryEventConfig", {})]
        assert reviewing == ["preview"]


class TestPreviewRunsInThePreviewImage:
    """The preview's steps run in the preview image, which `pulumi up` builds with the steps
    image; with Pulumi Cloud the stack is named org/project/stack."""

    def test_every_preview_step_uses_the_preview_image(self, github: Graph) -> None:
        trigger = github.named("preview")
        image = trigger.inputs["substitutions"]["_PREVIEW_IMAGE"]
        assert image == github.outputs["steps_image"].replace("/gitops-steps:",
                                                              "/gitops-preview:")
        assert {s["name"] for s in pipeline_of(trigger)["steps"]} == {"${_PREVIEW_IMAGE}"}
        assert github.named("build-steps-image").urn in github.depends_on(trigger)

    def test_pulumi_cloud_stack_is_fully_qualified(self, slow_rollouts: Graph) -> None:
        subs = slow_rollouts.named("preview").inputs["substitutions"]
        assert subs["_STACK"] == "acme/gitops/dev"

    def test_gcs_stack_is_the_bare_name(self, github: Graph) -> None:
        assert github.named("preview").inputs["substitutions"]["_STACK"] == "dev"


class TestOperationsEntries:
    """Each risk fixed here has its entry in docs/operations.md."""

    @pytest.mark.parametrize("topic", [
        "The stack file: when to commit it", "Pull requests from forks",
        "Preview cannot reach the cluster", "The steps image lacks a tool",
        "One image tag, different tools", "`pulumi up` from another clone", "Two identities",
        "A failed steps image build shows only an id", "Delivery timing",
        "Sample app crash-loops", "Every delivery resets the scale",
        "Pulumi Cloud: the preview finds no stack"])
    def test_entry(self, topic: str) -> None:
        assert f"**{topic}" in (ROOT / "docs" / "operations.md").read_text()


def test_too_long_a_rollout_stops_the_program_with_the_fix() -> None:
    graph = Graph()
    with pytest.raises(Exception, match=r"at most 21450s"):
        run_program(base_config(**{"gitops:rolloutTimeout": "30000s"}), graph=graph)
    assert not graph.of_type(TRIGGER)
