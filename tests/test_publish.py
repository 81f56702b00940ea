"""publish: one commit per call, apps/APP made exactly the folder, never forced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    SCRIPTS,
    EnvRepoOnDisk,
    assert_bad_input,
    cli,
    image_ref,
    publish,
    run_script,
    write_manifests,
)
from gitops import credentials, envrepo
from gitops.branches import init_branches
from gitops.errors import OperationFailed
from gitops.publish import PublishRequest
from gitops.publish import publish as publish_manifests
from gitops.retry import RetryPolicy

NO_WAIT = RetryPolicy(deadline=60, backoff=0.0)


def request(env: EnvRepoOnDisk, folder: Path, app: str = "hello") -> PublishRequest:
    return PublishRequest(repo=env.url, app=app, manifests=folder)


class TestPublish:
    """Each call lands as one commit whose trailers carry the provenance."""

    def test_first_publish(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = run_script("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(folder), "--image", image_ref("hello", DIGEST_A),
                            "--source-repo", "https://github.com/acme/hello",
                            "--source-commit", "1" * 40, "--build-id", "build-1")
        assert result.code == 0, result.stderr
        tip = env_repo.tip("candidate")
        assert result.stdout == f"{tip}\n"
        assert env_repo.log("candidate") == [tip, env_repo.root]
        assert env_repo.subject(tip) == f"Deploy hello: hello@{DIGEST_A[:19]}"
        assert env_repo.message(tip).splitlines()[2:] == [
            "App: hello",
            f"Image: {image_ref('hello', DIGEST_A)}",
            "Source-Repo: https://github.com/acme/hello",
            f"Source-Commit: {'1' * 40}",
            "Build-Id: build-1",
        ]
        assert list(env_repo.files(tip)) == ["README.md", "apps/hello/deployment.yaml"]

    def test_folder_is_mirrored_exactly_and_other_apps_untouched(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        other = publish(env_repo, tmp_path, "other", DIGEST_A)
        folder = write_manifests(tmp_path / "hello", "hello", image_ref("hello", DIGEST_A),
                                 {"service.yaml": "apiVersion: v1\nkind: Service\n",
                                  "old.yaml": "apiVersion: v1\nkind: ConfigMap\n",
                                  "nested/pdb.yml": "apiVersion: policy/v1\n"})
        assert publish_manifests(request(env_repo, folder)).created
        (folder / "old.yaml").unlink()
        (folder / "service.yaml").write_text("apiVersion: v1\nkind: Service\n# changed\n")
        second = publish_manifests(request(env_repo, folder)).commit
        files = env_repo.files(second)
        assert sorted(files) == ["README.md", "apps/hello/deployment.yaml",
                                 "apps/hello/nested/pdb.yml",
                                 "apps/hello/service.yaml", "apps/other/deployment.yaml"]
        assert files["apps/hello/service.yaml"].endswith("# changed")
        assert env_repo.files(other, "apps/other") == env_repo.files(second, "apps/other")
        env_repo.assert_history_clean("candidate")

    def test_identical_content_makes_no_commit(self, env_repo: EnvRepoOnDisk,
                                               tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A, build="b-1")
        folder = write_manifests(tmp_path / "again", "hello", image_ref("hello", DIGEST_A))
        again = publish_manifests(PublishRequest(
            repo=env_repo.url, app="hello", manifests=folder, image=image_ref("hello", DIGEST_A),
            source_repo="https://github.com/acme/hello", source_commit="1" * 40,
            build_id="b-2"))
        assert (again.commit, again.created, again.attempts) == (first, False, 1)
        assert env_repo.log("candidate") == [first, env_repo.root]

    def test_other_branch(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        init_branches(env_repo.url, ["staging"])
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = cli("publish", "--repo", str(env_repo.path), "--app", "hello",
                            "--manifests", str(folder), "--branch", "staging")
        assert result.code == 0, result.stderr
        assert env_repo.tip("staging") == result.last_line
        assert env_repo.tip("candidate") == env_repo.root

    def test_fetch_is_shallow_and_single_branch(self, env_repo: EnvRepoOnDisk,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
        for n in range(5):
            publish(env_repo, tmp_path, f"app{n}", DIGEST_A)
        subprocess.run(["git", "branch", "--force", "production", "candidate"],
                       cwd=env_repo.path, check=True)
        seen: dict[str, object] = {}
        real_push = envrepo.EnvRepo.push

        def spy(self: envrepo.EnvRepo, commit: str, branch: str, base: str | None) -> bool:
            seen["commits"] = self.output("rev-list", "--count", "--all").strip()
            seen["refs"] = self.output("for-each-ref", "--format=%(refname)").split()
            seen["shallow"] = self.is_shallow()
            return real_push(self, commit, branch, base)

        monkeypatch.setattr(envrepo.EnvRepo, "push", spy)
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_B))
        publish_manifests(request(env_repo, folder))
        # The fetched tip only: nothing of the other branch or of the older history.
        assert seen == {"commits": "1", "refs": ["refs/remotes/origin/candidate"],
                        "shallow": True}


class TestRetries:
    """A lost race is rebuilt on the new tip until the deadline; any other push failure is
    reported at once."""

    def test_rejected_push_is_rebuilt_on_the_new_tip(self, env_repo: EnvRepoOnDisk,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        publish(env_repo, tmp_path, "base", DIGEST_A)
        real_push = envrepo.EnvRepo.push
        calls: list[bool] = []

        def racing_push(self: envrepo.EnvRepo, commit: str, branch: str,
                        base: str | None) -> bool:
            if not calls:  # another writer (a process) lands between our fetch and our push
                rival = write_manifests(tmp_path / "rival", "rival", image_ref("rival", DIGEST_B))
                assert run_script("publish", "--repo", env_repo.url, "--app", "rival",
                                  "--manifests", str(rival)).code == 0
            calls.append(real_push(self, commit, branch, base))
            return calls[-1]

        monkeypatch.setattr(envrepo.EnvRepo, "push", racing_push)
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = publish_manifests(request(env_repo, folder), NO_WAIT)
        assert calls == [False, True]
        assert (result.commit, result.attempts) == (env_repo.tip("candidate"), 2)
        assert [env_repo.subject(c).split(":")[0] for c in env_repo.log("candidate")] == \
            ["Deploy hello", "Deploy rival", "Deploy base", "Initialize env repository"]
        env_repo.assert_history_clean("candidate")

    def test_retries_stop_at_the_deadline(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        pushes: list[str] = []

        def always_lose(self: envrepo.EnvRepo, commit: str, branch: str,
                        base: str | None) -> bool:
            pushes.append(commit)
            return False

        monkeypatch.setattr(envrepo.EnvRepo, "push", always_lose)
        monkeypatch.setenv("GITOPS_PUSH_DEADLINE", "0.3")
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        before = env_repo.snapshot()
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(folder))
        assert result.code == 1
        assert result.stderr.startswith("error: push lost the race ")
        assert "GITOPS_PUSH_DEADLINE=0.3" in result.stderr
        assert len(pushes) >= 2  # retried on the new tip until the deadline
        assert env_repo.snapshot() == before

    def test_a_refusal_is_not_retried(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        """A hook that says no is reported at once, with the remote's reason."""
        publish(env_repo, tmp_path, "base", DIGEST_A)
        calls = env_repo.path / "hook-calls"
        hook = env_repo.path / "hooks" / "pre-receive"
        hook.write_text(f"#!/bin/sh\necho call >> {calls}\necho 'candidate is protected' >&2\n"
                        "exit 1\n")
        hook.chmod(0o755)
        before = env_repo.snapshot()
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_B))
        result = cli("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(folder))
        assert result.code == 1
        assert result.stderr == ("error: push to 'candidate' refused by the remote: "
                                 "[remote rejected] (pre-receive hook declined)\n")
        assert calls.read_text() == "call\n"  # one attempt, not forty
        assert env_repo.snapshot() == before

    def test_a_stale_lock_is_a_refusal_not_a_race(self, env_repo: EnvRepoOnDisk,
                                                  tmp_path: Path) -> None:
        """A lock file nobody releases: the branch does not move, so it is not retried."""
        publish(env_repo, tmp_path, "base", DIGEST_A)
        lock = env_repo.path / "refs" / "heads" / "candidate.lock"
        lock.write_text("")
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_B))
        try:
            with pytest.raises(OperationFailed,
                               match=r"refused by the remote: \[remote rejected\]"):
                publish_manifests(request(env_repo, folder), RetryPolicy(deadline=5, backoff=0))
        finally:
            lock.unlink()


class TestBadInput:
    """Bad input: exit 2, one error line, the repository unchanged."""

    @pytest.mark.parametrize("override,fragment", [
        ({"--app": "Hello"}, "not a DNS label"),
        ({"--app": "a" * 64}, "not a DNS label"),
        ({"--app": "hello-"}, "not a DNS label"),
        ({"--image": image_ref("hello", "sha256:123")}, "image reference"),
        ({"--image": "hello:latest"}, "image reference"),
        ({"--source-commit": "not-a-sha"}, "--source-commit"),
        ({"--build-id": "b1\nInjected: yes"}, "--build-id"),
        ({"--source-repo": ""}, "--source-repo"),
        ({"--branch": "bad..branch"}, "branch"),
        ({"--manifests": "/nonexistent/folder"}, "does not exist"),
    ])
    def test_refused(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                     override: dict[str, str], fragment: str) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        before = env_repo.snapshot()
        folder = write_manifests(tmp_path / "new", "hello", image_ref("hello", DIGEST_B))
        args = {"--repo": env_repo.url, "--app": "hello", "--manifests": str(folder),
                "--image": image_ref("hello", DIGEST_B), "--source-commit": "2" * 40,
                "--build-id": "b-2", **override}
        result = cli("publish", *[item for pair in args.items() for item in pair])
        assert_bad_input(result, fragment)
        assert env_repo.snapshot() == before

    @pytest.mark.parametrize("files,fragment", [
        ({"broken.yaml": "a: [1, 2\n"}, "invalid YAML"),
        ({"notes.txt": "hello\n"}, "not a .yaml/.yml manifest"),
    ])
    def test_invalid_manifest_folder(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                     files: dict[str, str], fragment: str) -> None:
        before = env_repo.snapshot()
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A), files)
        result = cli("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(folder))
        assert_bad_input(result, fragment)
        assert env_repo.snapshot() == before

    def test_empty_folder(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        result = cli("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(tmp_path / "empty"))
        assert_bad_input(result, "holds no files")
        assert env_repo.tip("candidate") == env_repo.root

    def test_unreachable_repo_is_an_operational_failure(self, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = cli("publish", "--repo", (tmp_path / "missing.git").as_uri(), "--app",
                            "hello", "--manifests", str(folder))
        assert result.code == 1
        assert result.stderr.startswith("error: cannot fetch 'candidate'")
        assert len(result.stderr.strip().splitlines()) == 1


class TestCredentials:
    """A token comes from the environment and never shows in output or git config."""

    TOKEN = "ghs_S3cr3tT0kenValue0123456789"
    LINK = "projects/acme/locations/europe-west1/connections/github/repositories/gitops-env"

    def test_token_never_printed(self, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        # Port 9 on loopback refuses the connection: the fetch fails fast, as a real outage.
        result = run_script("publish", "--repo",
                            f"https://bot:{self.TOKEN}@127.0.0.1:9/acme/env.git",
                            "--app", "hello", "--manifests", str(folder),
                            env={"GITOPS_GIT_TOKEN": self.TOKEN})
        assert result.code == 1
        assert self.TOKEN not in result.stderr + result.stdout
        assert "https://***@127.0.0.1:9/acme/env.git" in result.stderr

    def test_token_reaches_git_as_an_environment_header_only(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GITOPS_GIT_TOKEN", self.TOKEN)
        monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
        env = credentials.git_environment("https://github.com/acme/env.git")
        config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
                  for i in range(int(env["GIT_CONFIG_COUNT"]))}
        assert config["http.extraHeader"] == \
            f"Authorization: Basic {credentials.basic_auth(self.TOKEN)}"
        assert env["LC_ALL"] == "C"
        local = credentials.git_environment("/srv/env.git")
        assert "http.extraHeader" not in local.values()
        with envrepo.scratch_repo("https://github.com/acme/env.git") as scratch:
            config_file = Path(scratch.repo.git_dir, "config").read_text()
            assert self.TOKEN not in config_file
            assert credentials.basic_auth(self.TOKEN) not in config_file
            assert "extraHeader" not in config_file

    def test_token_from_the_connection_repository(self, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
        """With a linked repository named, the short-lived token comes from Cloud Build."""
        asked: list[str] = []

        def fake_token(repository: str) -> str:
            asked.append(repository)
            return "ghs_ShortLivedInstallationToken0123456789"

        monkeypatch.setattr(credentials, "connection_token", fake_token)
        monkeypatch.setattr(credentials, "CONNECTION_TOKENS", {})
        monkeypatch.delenv(credentials.TOKEN_ENV, raising=False)
        monkeypatch.setenv(credentials.TOKEN_REPOSITORY_ENV, self.LINK)
        assert "http.extraHeader" not in credentials.git_environment("/srv/env.git").values()
        assert asked == []  # a local remote needs no token
        env = credentials.git_environment("https://github.com/acme/gitops-env.git")
        assert asked == [self.LINK]
        assert f"Authorization: Basic {credentials.basic_auth(fake_token(self.LINK))}" in \
            env.values()

        def broken(repository: str) -> str:
            raise RuntimeError("403 Permission 'cloudbuild.repositories.accessReadWriteToken' "
                               "denied\non resource")

        assert credentials.TOKEN_ENV not in os.environ  # in this process's memory only
        monkeypatch.setattr(credentials, "CONNECTION_TOKENS", {})
        monkeypatch.setattr(credentials, "connection_token", broken)
        with pytest.raises(OperationFailed, match=r"cannot get a token for projects/.*"
                                                  r"accessReadWriteToken' denied on resource"):
            credentials.git_environment("https://github.com/acme/gitops-env.git")

    def test_token_failure_is_one_error_line(self, tmp_path: Path) -> None:
        """The real client, without credentials: one `error:` line, exit 1, no traceback."""
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        result = run_script(
            "publish", "--repo", "https://github.com/acme/gitops-env.git", "--app", "hello",
            "--manifests", str(folder),
            env={credentials.TOKEN_REPOSITORY_ENV: self.LINK, credentials.TOKEN_ENV: "",
                 # No credentials anywhere: the client fails before any request is sent.
                 "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-key.json"),
                 "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "TMPDIR": str(scratch)})
        assert result.code == 1, result
        assert result.stdout == ""
        assert result.stderr.startswith(f"error: cannot get a token for {self.LINK}: ")
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert list(scratch.iterdir()) == []


def test_scripts_run_from_any_directory(env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
    folder = write_manifests(tmp_path / "rel" / "m", "hello", image_ref("hello", DIGEST_A))
    proc = subprocess.run([sys.executable, str(SCRIPTS / "publish.py"),
                           "--repo", env_repo.url, "--app", "hello", "--manifests", "m"],
                          cwd=folder.parent, capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == env_repo.tip("candidate")


class TestFirstFetch:
    """publish starts its first fetch before GitPython loads; nothing is left behind."""

    @pytest.mark.parametrize("case", ["success", "bad-input", "unreachable"])
    def test_no_scratch_repository_left_behind(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                               case: str) -> None:
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A),
                                 {"broken.yaml": "a: [\n"} if case == "bad-input" else None)
        repo = (tmp_path / "missing.git").as_uri() if case == "unreachable" else env_repo.url
        result = run_script("publish", "--repo", repo, "--app", "hello", "--manifests",
                            str(folder), env={"TMPDIR": str(scratch)})
        assert result.code == {"success": 0, "bad-input": 2, "unreachable": 1}[case]
        assert list(scratch.iterdir()) == []

    def test_the_early_fetch_is_the_first_fetch(self, env_repo: EnvRepoOnDisk,
                                                tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        with envrepo.scratch_repo(env_repo.url, first_fetch="candidate") as env:
            early = env.early["candidate"]
            assert env.fetch("candidate") == first
            assert early.returncode == 0 and env.early == {}  # consumed, not fetched again
            workdir = Path(env.repo.git_dir)
        assert not workdir.exists()

    def test_an_early_fetch_of_a_missing_branch(self, env_repo: EnvRepoOnDisk,
                                                tmp_path: Path) -> None:
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        with envrepo.scratch_repo(env_repo.url, first_fetch="staging") as env:
            assert env.fetch("staging") is None
