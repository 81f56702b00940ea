"""history.py: the story of attempts and successes, from git alone."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    assert_bad_input,
    cli,
    image_ref,
    promoted,
    publish,
)


class TestFullCycle:
    """Three publishes, two promotes, a rollback to the first: history tells exactly that."""

    def test_json_story(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-1",
                     source_commit="1" * 40)
        publish(env_repo, tmp_path, "noise", DIGEST_A, build="ci-x")
        c2 = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-2",
                     source_commit="2" * 40)
        c3 = publish(env_repo, tmp_path, "hello", DIGEST_C, build="ci-3",
                     source_commit="3" * 40)
        p1 = promoted(env_repo, "hello", c1, "cd-1")
        p2 = promoted(env_repo, "hello", c2, "cd-2")
        p3 = promoted(env_repo, "hello", c1, "cd-1-rerun")

        result = cli("history", "--repo", env_repo.url, "--app", "hello", "--json")
        assert result.code == 0, result.stderr
        story = json.loads(result.stdout)
        assert story["app"] == "hello"
        attempts = [(a["commit"], a["image"], a["source_commit"], a["build_id"], a["promoted"],
                     a["production_commit"]) for a in story["attempts"]]
        assert attempts == [
            (c3, image_ref("hello", DIGEST_C), "3" * 40, "ci-3", False, None),
            (c2, image_ref("hello", DIGEST_B), "2" * 40, "ci-2", True, p2),
            (c1, image_ref("hello", DIGEST_A), "1" * 40, "ci-1", True, p1),
        ]
        production = [(p["commit"], p["kind"], p["promoted_from"], p["image"], p["build_id"])
                      for p in story["production"]]
        assert production == [
            (p3, "rollback", c1, image_ref("hello", DIGEST_A), "cd-1-rerun"),
            (p2, "promote", c2, image_ref("hello", DIGEST_B), "cd-2"),
            (p1, "promote", c1, image_ref("hello", DIGEST_A), "cd-1"),
        ]
        times = {p["commit"]: p["time"] for p in story["production"]}
        assert story["attempts"][2]["promoted_at"] == times[p1]
        assert all(a["time"] for a in story["attempts"])

    def test_table(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        c1 = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-1")
        c2 = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-2")
        promoted(env_repo, "hello", c2, "cd-2")
        promoted(env_repo, "hello", c1, "cd-1")
        result = cli("history", "--repo", env_repo.url, "--app", "hello")
        assert result.code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "hello: attempts on candidate (newest first)"
        assert lines[1].split() == ["WHEN", "COMMIT", "IMAGE", "SOURCE", "BUILD", "REACHED",
                                    "PRODUCTION"]
        assert c2[:12] in lines[2] and "yes," in lines[2] and "ci-2" in lines[2]
        assert c1[:12] in lines[3] and f"hello@{DIGEST_A[:19]}" in lines[3]
        assert "hello: production (newest first)" in lines
        kinds = [line.split()[2] for line in lines[lines.index(
            "hello: production (newest first)") + 2:]]
        assert kinds == ["rollback", "promote"]

    def test_unknown_app(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        assert_bad_input(cli("history", "--repo", env_repo.url, "--app", "nope"),
                         "unknown app 'nope'")
