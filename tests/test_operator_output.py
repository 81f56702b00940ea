"""Operator commands say what they did and accept what the other commands print."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    assert_bad_input,
    cli,
    promoted,
    publish,
    run_script,
)

ROLLBACK = ("--project", "acme-delivery-prod", "--region", "europe-west1", "--dry-run")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[EnvRepoOnDisk, dict[str, str]]:
    """hello: A, B and C promoted in turn, then A again (a rollback): production, newest first,
    holds rollback-to-A, C, B, A. Read only: rollbacks here are dry runs."""
    tmp = tmp_path_factory.mktemp("story")
    repo = EnvRepoOnDisk(tmp / "env.git")
    candidates = {}
    for digest, build in ((DIGEST_A, "b-1"), (DIGEST_B, "b-2"), (DIGEST_C, "b-3")):
        candidates[digest] = publish(repo, tmp, "hello", digest, build=build)
        promoted(repo, "hello", candidates[digest], build)
    promoted(repo, "hello", candidates[DIGEST_A], "b-4")
    return repo, candidates


@pytest.fixture
def env_repo_story(story: tuple[EnvRepoOnDisk, dict[str, str]]) -> EnvRepoOnDisk:
    return story[0]


@pytest.fixture
def delivered(story: tuple[EnvRepoOnDisk, dict[str, str]]) -> dict[str, str]:
    return story[1]


class TestRollbackTargets:
    """`-N` counts the rows of history's production list, rollbacks included; a short digest as
    status and history print it is accepted when it names one image."""

    def test_minus_n_counts_rollback_rows_too(self, env_repo_story: EnvRepoOnDisk,
                                              delivered: dict[str, str]) -> None:
        history = cli("history", "--repo", env_repo_story.url, "--app", "hello")
        rows = [line.split() for line in history.stdout.split("production (newest first)")[1]
                .splitlines()[2:] if line.strip()]
        assert [row[2] for row in rows] == ["rollback", "promote", "promote", "promote"]
        for n, (_, _, _, from_candidate, *_) in enumerate(rows[1:], start=1):
            plan = cli("rollback", "--repo", env_repo_story.url, "--app", "hello", "--target",
                       f"-{n}", *ROLLBACK)
            assert plan.code == 0, plan.stderr
            assert f"at candidate commit {from_candidate}" in plan.stdout
        assert delivered[DIGEST_C].startswith(rows[1][3])  # -1: the row below the rollback

    def test_short_digest_as_printed(self, env_repo_story: EnvRepoOnDisk,
                                     delivered: dict[str, str]) -> None:
        status = cli("status", "--repo", env_repo_story.url)
        shown = next(word for word in status.stdout.split() if "@sha256:" in word)
        assert shown == "hello@sha256:" + "a" * 12  # production holds A again
        for target in ("hello@sha256:bbbbbbbbbbbb", "sha256:bbbbbbb"):
            plan = cli("rollback", "--repo", env_repo_story.url, "--app", "hello", "--target",
                       target, *ROLLBACK)
            assert plan.code == 0, plan.stderr
            assert f"at candidate commit {delivered[DIGEST_B]}" in plan.stdout

    def test_short_digest_that_matches_nothing(self, env_repo_story: EnvRepoOnDisk,
                                               delivered: dict[str, str]) -> None:
        result = cli("rollback", "--repo", env_repo_story.url, "--app", "hello", "--target",
                     "sha256:ddddddd", *ROLLBACK)
        assert_bad_input(result, "no candidate attempt of hello built sha256:ddddddd")

    def test_ambiguous_short_digest(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        for digest, build in (("sha256:abcdef1" + "0" * 57, "b-1"),
                              ("sha256:abcdef1" + "1" * 57, "b-2")):
            promoted(env_repo, "hello", publish(env_repo, tmp_path, "hello", digest,
                                                build=build), build)
        result = cli("rollback", "--repo", env_repo.url, "--app", "hello", "--target",
                     "sha256:abcdef1", *ROLLBACK)
        assert_bad_input(result, "ambiguous, 2 images of hello start with sha256:abcdef1")


class TestFreezeSaysWhatItDid:
    """freeze and unfreeze print what happened, then the tip; a new reason is recorded."""

    def test_freeze_refreeze_unfreeze(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        def run(script: str, *extra: str) -> list[str]:
            result = cli(script, "--repo", env_repo.url, "--app", "hello", *extra)
            assert result.code == 0, result.stderr
            assert result.stdout.splitlines()[-1] == env_repo.tip("candidate")
            return result.stdout.splitlines()[:-1]

        assert run("freeze", "--reason", "incident 42") == ["froze hello: incident 42"]
        first = env_repo.tip("candidate")
        assert run("freeze", "--reason", "incident 42") == [
            "hello was already frozen (incident 42): nothing changed"]
        assert run("freeze") == ["hello was already frozen (incident 42): nothing changed"]
        assert env_repo.tip("candidate") == first
        assert run("freeze", "--reason", "incident 43") == [
            "hello was already frozen (incident 42): reason now 'incident 43'"]
        assert env_repo.subject(env_repo.tip("candidate")) == \
            "Freeze hello (reason changed): incident 43"
        assert env_repo.files("candidate", ".gitops") == {".gitops/frozen/hello": "incident 43"}
        assert run("unfreeze") == ["unfroze hello: deliveries of new candidate commits resume; "
                                   "nothing recorded during the freeze was deployed"]
        assert run("unfreeze") == ["hello was not frozen: nothing changed"]
        env_repo.assert_history_clean("candidate")

    def test_unfreeze_help_describes_unfreezing(self) -> None:
        helped = run_script("unfreeze", "--help")
        assert "Lift an app's freeze" in helped.stdout
        assert "Removes `.gitops/frozen/APP`" in helped.stdout
