"""The git layer: trees git would write itself, pushes classified by porcelain, bounded retries."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DIGEST_A, EnvRepoOnDisk, git, image_ref, publish, write_manifests
from gitops.envrepo import Entry, porcelain_status, reuse_or_open, scratch_repo
from gitops.errors import BadInput, OperationFailed
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests
from gitops.retry import RetryPolicy, retry_push

# Names whose order differs when a tree is compared as "name/": git sorts `hello-api` before
# `hello` ('-' < '/') and `base.yaml` before the folder `base` ('.' < '/').
TRICKY_FILES = {"base.yaml": "kind: A\n", "base/x.yaml": "kind: B\n", "base-x.yaml": "kind: C\n",
                "base0.yaml": "kind: D\n"}


def git_own_tree(files: dict[str, str], work: Path) -> str:
    """The tree git itself makes of files: a work tree, `git add`, `git write-tree`."""
    git("init", "--quiet", str(work))
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    return git("write-tree", cwd=work)


class TestTrees:
    """Trees and commits come from git's plumbing, so they are exactly what git would write."""

    @pytest.mark.parametrize("order", [("hello", "hello-api"), ("hello-api", "hello")])
    def test_apps_whose_names_sort_differently_as_trees(self, env_repo: EnvRepoOnDisk,
                                                        tmp_path: Path,
                                                        order: tuple[str, str]) -> None:
        for app in order:
            publish(env_repo, tmp_path, app, DIGEST_A)
        apps = git("ls-tree", "--name-only", "candidate:apps", cwd=env_repo.path).split()
        assert apps == ["hello-api", "hello"]  # git's order, not plain name order
        # env_repo's fsck --strict (when the test ends) checks every tree's order.

    def test_a_folder_is_the_tree_git_would_make(self, env_repo: EnvRepoOnDisk,
                                                 tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A),
                                 TRICKY_FILES)
        tip = publish_manifests(PublishRequest(repo=env_repo.url, app="hello",
                                               manifests=folder)).commit
        ours = git("rev-parse", f"{tip}:apps/hello", cwd=env_repo.path)
        files = {p.relative_to(folder).as_posix(): p.read_text()
                 for p in folder.rglob("*") if p.is_file()}
        assert ours == git_own_tree(files, tmp_path / "work")

    def test_fsck_rejects_a_tree_in_plain_name_order(self, env_repo: EnvRepoOnDisk,
                                                     tmp_path: Path) -> None:
        """What the strict check at the end of every test would say about a hand-made tree."""
        blob = git("hash-object", "-w", "--stdin", cwd=env_repo.path)  # empty blob
        sub = subprocess.run(["git", "mktree"], cwd=env_repo.path, check=True, text=True,
                             capture_output=True, input=f"100644 blob {blob}\tx.yaml\n"
                             ).stdout.strip()
        entries = sorted([("hello", "40000", sub), ("hello-api", "40000", sub)])  # plain order
        data = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)
                        for name, mode, sha in entries)
        bad = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--literally",
                              "--stdin"], cwd=env_repo.path, check=True, input=data,
                             capture_output=True).stdout.decode().strip()
        commit = subprocess.run(["git", "commit-tree", bad, "-m", "hand-made"],
                                cwd=env_repo.path, check=True, capture_output=True, text=True,
                                env={**os.environ, "GIT_AUTHOR_NAME": "t",
                                     "GIT_AUTHOR_EMAIL": "t@example.com",
                                     "GIT_COMMITTER_NAME": "t",
                                     "GIT_COMMITTER_EMAIL": "t@example.com"}).stdout.strip()
        git("update-ref", "refs/heads/hand-made", commit, cwd=env_repo.path)
        with pytest.raises(AssertionError, match="treeNotSorted"):
            env_repo.fsck()
        git("update-ref", "-d", "refs/heads/hand-made", cwd=env_repo.path)
        git("reflog", "expire", "--expire=now", "--all", cwd=env_repo.path)
        git("prune", "--expire=now", cwd=env_repo.path)

    def test_make_tree_orders_entries_itself(self, env_repo: EnvRepoOnDisk) -> None:
        with scratch_repo(env_repo.url) as env:
            blob = env.write_blob(b"kind: A\n")
            sub = env.make_tree({"x.yaml": Entry.file(blob)})
            tree = env.make_tree({"hello": Entry.tree(sub), "hello-api": Entry.tree(sub),
                                  "base.yaml": Entry.file(blob)})
            listing = env.output("ls-tree", "--name-only", tree).split()
            assert listing == ["base.yaml", "hello-api", "hello"]
            assert env.tree_entries(tree) == {"base.yaml": Entry.file(blob),
                                              "hello-api": Entry.tree(sub),
                                              "hello": Entry.tree(sub)}

    def test_git_runs_in_the_c_locale(self, env_repo: EnvRepoOnDisk) -> None:
        with scratch_repo(env_repo.url) as env:
            assert env.output("var", "GIT_COMMITTER_IDENT").startswith("gitops-bot <")
            assert env.git.environment()["LC_ALL"] == "C"


class TestReuse:
    """A delivery promotes and chains in the repository it already opened, and only in one
    opened on the same remote."""

    def test_the_open_repository_or_a_new_one(self, env_repo: EnvRepoOnDisk,
                                              tmp_path: Path) -> None:
        with scratch_repo(env_repo.url) as env:
            with reuse_or_open(env_repo.url, env) as reused:
                assert reused is env
            with reuse_or_open(env_repo.url, None) as fresh:
                assert fresh is not env and fresh.fetch("candidate") == env_repo.root
            with pytest.raises(ValueError, match="cannot stand in"), \
                    reuse_or_open((tmp_path / "other.git").as_uri(), env):
                pass


class TestPush:
    """A push that lost a race says so; any other failure raises with the reason."""

    def test_porcelain_status(self) -> None:
        out = ("To file:///srv/env.git\n"
               "!\tabc:refs/heads/candidate\t[rejected] (fetch first)\n"
               " \tdef:refs/heads/production\t1234567..89abcde\n"
               "Done\n")
        assert porcelain_status(out, "refs/heads/candidate") == ("!", "[rejected] (fetch first)")
        assert porcelain_status(out, "refs/heads/production") == (" ", "1234567..89abcde")
        assert porcelain_status(out, "refs/heads/staging") == (None, "")

    def test_race_refusal_and_outage(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", "sha256:" + "1" * 64)
        with scratch_repo(env_repo.url) as env:
            tip = env.fetch("candidate")
            assert tip == first
            stale = env.commit(env.root_tree(tip), tip, "Stale\n")
            moved = publish(env_repo, tmp_path, "other", DIGEST_A)  # another writer
            assert env.push(stale, "candidate", tip) is False  # not a fast-forward: a race
            assert env.remote_tip("candidate") == moved
            assert env.fetch("nope") is None  # a missing branch is no error
        hook = env_repo.path / "hooks" / "update"
        hook.write_text("#!/bin/sh\nexit 1\n")
        hook.chmod(0o755)
        with scratch_repo(env_repo.url) as env:
            tip = env.fetch("candidate")
            fresh = env.commit(env.root_tree(tip), tip, "Refused\n")
            with pytest.raises(OperationFailed, match=r"refused by the remote: "
                                                      r"\[remote rejected\] \(hook declined\)"):
                env.push(fresh, "candidate", tip)
        hook.unlink()
        with (scratch_repo((tmp_path / "gone.git").as_uri()) as env,
              pytest.raises(OperationFailed, match="cannot fetch 'candidate'")):
            env.fetch("candidate")


class FakeTime:
    """A clock that only sleeps and attempts advance."""

    def __init__(self, attempt_seconds: float) -> None:
        self.now = 0.0
        self.attempt_seconds = attempt_seconds
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def attempt(self, answers: list[str | None]) -> Callable[[], str | None]:
        def once() -> str | None:
            self.now += self.attempt_seconds
            return answers.pop(0) if answers else None
        return once


class TestRetry:
    """The budget is a deadline: attempts go on until it passes, never start after it, and the
    pauses between them grow with the losses and the attempt's own duration."""

    def test_attempts_until_the_deadline(self) -> None:
        time = FakeTime(attempt_seconds=0.5)
        with pytest.raises(OperationFailed, match=r"push lost the race (\d+) times in 10s "
                                                  r"\(GITOPS_PUSH_DEADLINE=10\)"):
            retry_push(time.attempt([]), RetryPolicy(deadline=10), time.clock, time.sleep)
        assert 10 <= time.now <= 10.5  # the last attempt started before the deadline
        assert sum(time.pauses) <= 10
        assert len(time.pauses) >= 3

    def test_pauses_grow_with_losses_and_stay_within_the_window(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the widest pause
        time = FakeTime(attempt_seconds=0.1)
        policy = RetryPolicy(deadline=3600, backoff=0.05, growth_cap=16, max_pause=1.0)
        landed = retry_push(time.attempt([None] * 6 + ["abc"]), policy, time.clock,
                            time.sleep)
        assert (landed.value, landed.attempts) == ("abc", 7)
        # unit = the lost attempt's 0.1 s; windows 0.2, 0.4, 0.8, then capped at 1 s
        assert time.pauses == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0])

    def test_the_unit_is_at_least_the_backoff(self) -> None:
        policy = RetryPolicy(backoff=0.05)
        assert policy.window(1, 0.001) == pytest.approx(0.1)
        assert policy.window(3, 0.2) == pytest.approx(1.6)
        assert policy.window(40, 0.2) == policy.max_pause

    def test_the_last_pause_ends_at_the_deadline(self, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
        monkeypatch.setattr(random, "uniform", lambda low, high: high)
        time = FakeTime(attempt_seconds=1.0)
        with pytest.raises(OperationFailed):
            retry_push(time.attempt([]), RetryPolicy(deadline=5, max_pause=30), time.clock,
                       time.sleep)
        # attempt (1 s), pause 2 s, attempt, pause cut from 4 s to the 1 s left, attempt
        assert time.pauses == pytest.approx([2.0, 1.0])
        assert time.now == 6

    def test_returns_the_value_and_its_attempt(self) -> None:
        answers = iter([None, None, "abc"])
        landed = retry_push(lambda: next(answers), RetryPolicy(deadline=60, backoff=0))
        assert (landed.value, landed.attempts) == ("abc", 3)

    @pytest.mark.parametrize("env,fragment", [
        ({"GITOPS_PUSH_DEADLINE": "0"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_DEADLINE": "٣"}, "GITOPS_PUSH_DEADLINE"),  # a non-ASCII digit
        ({"GITOPS_PUSH_DEADLINE": "1e9"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_DEADLINE": "inf"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_DEADLINE": "nan"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_DEADLINE": "99999999"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_DEADLINE": "60\n"}, "GITOPS_PUSH_DEADLINE"),
        ({"GITOPS_PUSH_BACKOFF": "-1"}, "GITOPS_PUSH_BACKOFF"),
        ({"GITOPS_PUSH_BACKOFF": "0.\u0665"}, "GITOPS_PUSH_BACKOFF"),  # ARABIC-INDIC 5
        ({"GITOPS_PUSH_ATTEMPTS": "40"}, "is no longer read"),
    ])
    def test_settings_are_checked(self, env: dict[str, str], fragment: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(BadInput, match=fragment):
            RetryPolicy.from_env()

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("GITOPS_PUSH_DEADLINE", raising=False)
        monkeypatch.delenv("GITOPS_PUSH_BACKOFF", raising=False)
        assert RetryPolicy.from_env() == RetryPolicy(deadline=300, backoff=0.05)
