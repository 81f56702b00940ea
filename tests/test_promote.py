"""promote.py: production takes exactly a candidate tree, says Promote or Rollback, never forces."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    EnvRepoOnDisk,
    assert_bad_input,
    cli,
    git,
    image_ref,
    publish,
    run_script,
)
from gitops.promote import Kind, PromoteRequest, PromoteResult
from gitops.promote import promote as promote_app
from synthetic import add_commits


def promote(env: EnvRepoOnDisk, app: str, commit: str, build: str = "d-1") -> PromoteResult:
    return promote_app(PromoteRequest(repo=env.url, app=app, commit=commit, build_id=build))


class TestPromote:
    """Only the app's folder moves; the subject and trailers tell what happened."""

    def test_promote_copies_only_that_app(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        hello = publish(env_repo, tmp_path, "hello", DIGEST_A)
        other = publish(env_repo, tmp_path, "other", DIGEST_A)
        assert promote(env_repo, "other", other).kind is Kind.PROMOTE
        publish(env_repo, tmp_path, "other", DIGEST_B)  # a newer, unpromoted attempt
        result = run_script("promote", "--repo", env_repo.url, "--app", "hello", "--commit",
                            hello, "--build-id", "deliver-7")
        assert result.code == 0, result.stderr
        tip = env_repo.tip("production")
        assert result.stdout == f"{tip}\n"
        files = env_repo.files(tip)
        assert sorted(files) == [".gitops/promoted/hello", ".gitops/promoted/other", "README.md",
                                 "apps/hello/deployment.yaml", "apps/other/deployment.yaml"]
        assert image_ref("other", DIGEST_A) in files["apps/other/deployment.yaml"]
        assert files[".gitops/promoted/hello"] == hello
        assert env_repo.subject(tip) == \
            f"Promote hello: hello@{DIGEST_A[:19]} from candidate {hello[:12]}"
        assert env_repo.message(tip).splitlines()[2:] == [
            "App: hello",
            f"Image: {image_ref('hello', DIGEST_A)}",
            "Source-Repo: https://github.com/acme/hello",
            f"Source-Commit: {'1' * 40}",
            "Build-Id: deliver-7",
            f"Promoted-From: {hello}",
        ]

    def test_rerun_is_a_no_op(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        first = promote(env_repo, "hello", commit)
        again = promote(env_repo, "hello", commit, "d-2")
        assert (first.kind, again.kind) == (Kind.PROMOTE, None)
        assert again.commit == first.commit == env_repo.tip("production")
        assert env_repo.log("production") == [first.commit, env_repo.root]

    def test_older_commit_is_a_rollback(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        second = publish(env_repo, tmp_path, "hello", DIGEST_B)
        promote(env_repo, "hello", first)
        promote(env_repo, "hello", second)
        result = promote(env_repo, "hello", first, "rerun-1")
        assert result.kind is Kind.ROLLBACK
        tip = result.commit
        assert env_repo.subject(tip).startswith("Rollback hello:")
        assert env_repo.message(tip).splitlines()[-2:] == [f"Promoted-From: {first}",
                                                           "Rollback: true"]
        assert image_ref("hello", DIGEST_A) in env_repo.files(tip)["apps/hello/deployment.yaml"]
        # Rolling forward again is a promote.
        forward = promote(env_repo, "hello", second).commit
        assert env_repo.subject(forward).startswith("Promote hello:")
        assert "Rollback" not in env_repo.message(forward)
        env_repo.assert_history_clean("production")

    def test_skipping_ahead_is_a_promote(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        publish(env_repo, tmp_path, "hello", DIGEST_B)
        third = publish(env_repo, tmp_path, "hello", DIGEST_C)
        promote(env_repo, "hello", first)
        assert env_repo.subject(promote(env_repo, "hello", third).commit) \
            .startswith("Promote hello:")

    def test_old_commit_deep_in_history(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        """The shallow fetch deepens as far as the commit, and the result is still right."""
        target = publish(env_repo, tmp_path, "hello", DIGEST_A)
        add_commits(env_repo.path, "candidate", 300)
        result = promote(env_repo, "hello", target)
        assert env_repo.files(result.commit, "apps/hello") == \
            env_repo.files(target, "apps/hello")


@pytest.fixture(scope="module")
def refusal_repo(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[EnvRepoOnDisk, str]]:
    """hello published, promoted, published again; built once for the refusals, which must
    leave it unchanged."""
    tmp_path = tmp_path_factory.mktemp("refusals")
    env_repo = EnvRepoOnDisk(tmp_path / "env.git")
    commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
    promote(env_repo, "hello", commit)
    publish(env_repo, tmp_path, "hello", DIGEST_B)
    yield env_repo, commit
    env_repo.fsck()


class TestBadInput:
    """Bad input: exit 2, one error line, both branches unchanged."""

    @pytest.fixture
    def published(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> str:
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        promote(env_repo, "hello", commit)
        publish(env_repo, tmp_path, "hello", DIGEST_B)
        return commit

    def test_commit_not_on_the_source_branch(self, env_repo: EnvRepoOnDisk, published: str,
                                             tmp_path: Path) -> None:
        # A real commit of the repository, but on another branch only.
        side = tmp_path / "side"
        git("clone", "--quiet", "--branch", "candidate", env_repo.url, str(side))
        (side / "apps" / "hello" / "deployment.yaml").write_text("kind: Sneaky\n")
        git("-c", "user.name=x", "-c", "user.email=x@example.com", "commit", "-qam", "sneak",
            cwd=side)
        git("push", "--quiet", "origin", "HEAD:refs/heads/feature", cwd=side)
        sneaky = git("rev-parse", "HEAD", cwd=side)
        before = env_repo.snapshot()
        assert_bad_input(cli("promote", "--repo", env_repo.url, "--app", "hello",
                                    "--commit", sneaky), "is not on branch 'candidate'")
        assert env_repo.snapshot() == before

    @pytest.mark.parametrize("args,fragment", [
        (["--commit", "f" * 40], "is not on branch 'candidate'"),
        (["--commit", "abc123"], "not a full hex commit SHA"),
        (["--app", "Hello"], "not a DNS label"),
        (["--app", "unknown"], "has no manifests"),
        (["--from", "nope"], "branch 'nope' does not exist"),
        (["--to", "candidate"], "must be different"),
        (["--build-id", " padded"], "--build-id"),
    ])
    def test_refused(self, refusal_repo: tuple[EnvRepoOnDisk, str], args: list[str],
                     fragment: str) -> None:
        env_repo, published = refusal_repo
        before = env_repo.snapshot()
        values = {"--repo": env_repo.url, "--app": "hello", "--commit": published}
        for flag, value in zip(args[::2], args[1::2], strict=True):
            values[flag] = value
        result = cli("promote", *[x for pair in values.items() for x in pair])
        assert_bad_input(result, fragment)
        assert env_repo.snapshot() == before

    def test_production_never_moves_backwards_by_force(self, env_repo: EnvRepoOnDisk,
                                                       published: str) -> None:
        subprocess.run(["git", "config", "receive.denyNonFastForwards", "true"],
                       cwd=env_repo.path, check=True)
        latest = env_repo.tip("candidate")
        assert latest is not None
        assert promote(env_repo, "hello", latest).kind is Kind.PROMOTE
        assert promote(env_repo, "hello", published).kind is Kind.ROLLBACK  # a new commit
        env_repo.assert_history_clean("production")
        assert len(env_repo.log("production")) == 3 + 1  # and init_branches' root commit
