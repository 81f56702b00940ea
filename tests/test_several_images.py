"""An app that builds several images: every image is recorded, shown and usable for rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    REGISTRY,
    EnvRepoOnDisk,
    assert_bad_input,
    cli,
    promoted,
    write_manifests,
)
from gitops import events, rollback
from gitops.envrepo import scratch_repo
from gitops.history import history
from gitops.status import status

DIGEST_D = "sha256:" + "d" * 64


def frontend(digest: str) -> str:
    return f"{REGISTRY}/shop-frontend@{digest}"


def backend(digest: str) -> str:
    return f"{REGISTRY}/shop-backend@{digest}"


def publish_two(env: EnvRepoOnDisk, tmp_path: Path, front: str, back: str, build: str) -> str:
    """Publish the shop app (two images) through the command line; the new candidate tip."""
    folder = write_manifests(tmp_path / f"m-{build}", "shop", frontend(front),
                             {"backend.yaml": f"image: {backend(back)}\n"})
    result = cli("publish", "--repo", env.url, "--app", "shop", "--manifests", str(folder),
                 "--image", frontend(front), "--image", backend(back), "--build-id", build,
                 "--source-commit", "5" * 40)
    assert result.code == 0, result.stderr
    return result.last_line


@pytest.fixture(scope="module")
def shop_repo(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[EnvRepoOnDisk, dict[str, str]]]:
    """Two releases of shop, both promoted. Built once; the tests only read it."""
    tmp_path = tmp_path_factory.mktemp("shop")
    env = EnvRepoOnDisk(tmp_path / "env.git")
    c1 = publish_two(env, tmp_path, DIGEST_A, DIGEST_B, "ci-1")
    c2 = publish_two(env, tmp_path, DIGEST_C, DIGEST_D, "ci-2")
    p1 = promoted(env, "shop", c1, "cd-1")
    p2 = promoted(env, "shop", c2, "cd-2")
    yield env, {"c1": c1, "c2": c2, "p1": p1, "p2": p2}
    env.fsck()


@pytest.fixture
def env_repo(shop_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> EnvRepoOnDisk:
    return shop_repo[0]


@pytest.fixture
def shop(shop_repo: tuple[EnvRepoOnDisk, dict[str, str]]) -> dict[str, str]:
    return shop_repo[1]


class TestTrailers:
    """Each image is one `Image:` trailer, on candidate and on production, in build order."""

    def test_candidate_and_production_carry_every_image(self, env_repo: EnvRepoOnDisk,
                                                        shop: dict[str, str]) -> None:
        for commit in (shop["c1"], shop["p1"]):
            images = [line.split(": ", 1)[1] for line in env_repo.message(commit).splitlines()
                      if line.startswith("Image: ")]
            assert images == [frontend(DIGEST_A), backend(DIGEST_B)]
        assert env_repo.subject(shop["c1"]) == (
            f"Deploy shop: shop-frontend@{DIGEST_A[:19]}, shop-backend@{DIGEST_B[:19]}")
        assert f"shop-backend@{DIGEST_B[:19]}" in env_repo.subject(shop["p1"])

    def test_the_same_image_name_twice_is_refused(self, env_repo: EnvRepoOnDisk,
                                                  tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "shop", frontend(DIGEST_A))
        before = env_repo.snapshot()
        result = cli("publish", "--repo", env_repo.url, "--app", "shop", "--manifests",
                     str(folder), "--image", frontend(DIGEST_A), "--image", frontend(DIGEST_B))
        assert_bad_input(result, "--image", "shop-frontend", "more than once")
        assert env_repo.snapshot() == before


class TestShown:
    """history and status list every image, in the library's types and in their output."""

    def test_history_lists_all_images(self, env_repo: EnvRepoOnDisk,
                                      shop: dict[str, str]) -> None:
        story = history(env_repo.url, "shop")
        assert [a.images for a in story.attempts] == [
            (frontend(DIGEST_C), backend(DIGEST_D)), (frontend(DIGEST_A), backend(DIGEST_B))]
        assert story.production[0].images == (frontend(DIGEST_C), backend(DIGEST_D))
        result = cli("history", "--repo", env_repo.url, "--app", "shop", "--json")
        data = json.loads(result.stdout)
        assert data["attempts"][1]["images"] == [frontend(DIGEST_A), backend(DIGEST_B)]
        assert data["production"][1]["images"] == [frontend(DIGEST_A), backend(DIGEST_B)]
        table = cli("history", "--repo", env_repo.url, "--app", "shop").stdout
        assert f"shop-frontend@{DIGEST_C[:19]},shop-backend@{DIGEST_D[:19]}" in table

    def test_status_shows_all_images(self, env_repo: EnvRepoOnDisk,
                                     shop: dict[str, str]) -> None:
        (app,) = status(env_repo.url, "shop")
        assert app.production is not None
        assert app.production.images == (frontend(DIGEST_C), backend(DIGEST_D))
        data = json.loads(cli("status", "--repo", env_repo.url, "--json").stdout)
        assert data[0]["production"]["images"] == [frontend(DIGEST_C), backend(DIGEST_D)]
        row = cli("status", "--repo", env_repo.url).stdout.splitlines()[1]
        assert f"shop-frontend@{DIGEST_C[:19]},shop-backend@{DIGEST_D[:19]}" in row


class TestEvents:
    """A delivery event of a two-image commit names both images."""

    def test_event_images(self, env_repo: EnvRepoOnDisk, shop: dict[str, str]) -> None:
        with scratch_repo(env_repo.url) as env:
            env.fetch_whole("production")
            trailers = env.trailers(shop["p1"])
        assert events.images_of(trailers) == (frontend(DIGEST_A), backend(DIGEST_B))


class TestRollbackByAnyImage:
    """A digest of any of an attempt's images finds that attempt."""

    @pytest.mark.parametrize("digest", [DIGEST_A, DIGEST_B])
    def test_either_digest_of_the_first_release(self, env_repo: EnvRepoOnDisk,
                                                shop: dict[str, str], digest: str) -> None:
        plan = rollback.plan_rollback(env_repo.url, "shop", digest, "acme-delivery",
                                      "europe-west1")
        assert plan.commit == shop["c1"]

    def test_a_full_backend_reference(self, env_repo: EnvRepoOnDisk,
                                      shop: dict[str, str]) -> None:
        plan = rollback.plan_rollback(env_repo.url, "shop", backend(DIGEST_D), "acme-delivery",
                                      "europe-west1")
        assert plan.commit == shop["c2"]
        assert plan.what == f"image shop-backend@{DIGEST_D[:19]}"
