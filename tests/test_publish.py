"""publish.py: one commit per call, apps/APP made exactly the folder, never forced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    EnvRepoOnDisk,
    assert_bad_input,
    image_ref,
    publish,
    run_script,
    write_manifests,
)


class TestPublish:
    """Each call lands as one commit whose trailers carry the provenance."""

    def test_first_publish_creates_the_branch(self, env_repo: EnvRepoOnDisk,
                                              tmp_path: Path) -> None:
        result = publish(env_repo, tmp_path, "hello", DIGEST_A, build="build-1")
        assert result.code == 0, result.stderr
        tip = env_repo.tip("candidate")
        assert result.last_line == tip
        assert env_repo.log("candidate") == [tip]
        assert env_repo.subject(tip) == f"Deploy hello: hello@{DIGEST_A[:19]}"
        assert env_repo.message(tip).splitlines()[2:] == [
            "App: hello",
            f"Image: {image_ref('hello', DIGEST_A)}",
            "Source-Repo: https://github.com/acme/hello",
            f"Source-Commit: {'1' * 40}",
            "Build-Id: build-1",
        ]
        assert list(env_repo.files(tip)) == ["apps/hello/deployment.yaml"]

    def test_folder_is_mirrored_exactly_and_other_apps_untouched(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        other = publish(env_repo, tmp_path, "other", DIGEST_A)
        folder = write_manifests(tmp_path / "hello", "hello", image_ref("hello", DIGEST_A),
                                 {"service.yaml": "apiVersion: v1\nkind: Service\n",
                                  "old.yaml": "apiVersion: v1\nkind: ConfigMap\n"})
        (folder / "nested").mkdir()
        (folder / "nested" / "pdb.yml").write_text("apiVersion: policy/v1\n")
        args = ["--repo", env_repo.url, "--app", "hello", "--manifests", str(folder)]
        assert run_script("publish", *args).code == 0
        (folder / "old.yaml").unlink()
        (folder / "service.yaml").write_text("apiVersion: v1\nkind: Service\n# changed\n")
        second = run_script("publish", *args)
        assert second.code == 0, second.stderr
        files = env_repo.files(second.last_line)
        assert sorted(files) == ["apps/hello/deployment.yaml", "apps/hello/nested/pdb.yml",
                                 "apps/hello/service.yaml", "apps/other/deployment.yaml"]
        assert files["apps/hello/service.yaml"].endswith("# changed")
        assert env_repo.files(other.last_line, "apps/other") == \
            env_repo.files(second.last_line, "apps/other")
        env_repo.assert_history_clean("candidate")

    def test_identical_content_makes_no_commit(self, env_repo: EnvRepoOnDisk,
                                               tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A, build="b-1")
        again = publish(env_repo, tmp_path, "hello", DIGEST_A, build="b-2")
        assert again.code == 0, again.stderr
        assert again.last_line == first.last_line == env_repo.tip("candidate")
        assert len(env_repo.log("candidate")) == 1

    def test_other_branch(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = run_script("publish", "--repo", str(env_repo.path), "--app", "hello",
                            "--manifests", str(folder), "--branch", "staging")
        assert result.code == 0, result.stderr
        assert env_repo.tip("staging") == result.last_line
        assert env_repo.tip("candidate") is None

    def test_fetch_is_shallow_and_single_branch(self, env_repo: EnvRepoOnDisk,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
        for n in range(5):
            publish(env_repo, tmp_path, f"app{n}", DIGEST_A)
        publish(env_repo, tmp_path, "zz", DIGEST_A)
        subprocess.run(["git", "branch", "production", "candidate"], cwd=env_repo.path,
                       check=True)
        import envrepo
        import publish as publish_script

        seen: dict[str, object] = {}
        real_push = envrepo.EnvRepo.push

        def spy(self: envrepo.EnvRepo, commit: str, branch: str) -> bool:
            seen["commits"] = self.g.rev_list("--count", "--all")
            seen["refs"] = self.g.for_each_ref("--format=%(refname)").split()
            seen["shallow"] = self.is_shallow()
            return real_push(self, commit, branch)

        monkeypatch.setattr(envrepo.EnvRepo, "push", spy)
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_B))
        publish_script.main(["--repo", env_repo.url, "--app", "hello",
                             "--manifests", str(folder)])
        assert seen == {"commits": "1", "refs": ["refs/remotes/origin/candidate"],
                        "shallow": True}

    def test_rejected_push_is_rebuilt_on_the_new_tip(self, env_repo: EnvRepoOnDisk,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """Another writer lands between our fetch and our push: we rebuild, never force."""
        import envrepo
        import publish as publish_script

        publish(env_repo, tmp_path, "base", DIGEST_A)
        real_push = envrepo.EnvRepo.push
        calls: list[bool] = []

        def racing_push(self: envrepo.EnvRepo, commit: str, branch: str) -> bool:
            if not calls:
                assert publish(env_repo, tmp_path, "rival", DIGEST_B).code == 0
            calls.append(real_push(self, commit, branch))
            return calls[-1]

        monkeypatch.setattr(envrepo.EnvRepo, "push", racing_push)
        monkeypatch.setattr(envrepo, "backoff", lambda attempt: None)
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        tip = publish_script.main(["--repo", env_repo.url, "--app", "hello",
                                   "--manifests", str(folder)])
        assert calls == [False, True]
        assert tip == env_repo.tip("candidate")
        assert [env_repo.subject(c).split(":")[0] for c in env_repo.log("candidate")] == \
            ["Deploy hello", "Deploy rival", "Deploy base"]
        env_repo.assert_history_clean("candidate")

    def test_push_attempts_are_bounded(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        import envrepo
        import publish as publish_script

        monkeypatch.setattr(envrepo.EnvRepo, "push", lambda self, commit, branch: False)
        monkeypatch.setattr(envrepo, "backoff", lambda attempt: None)
        monkeypatch.setenv(envrepo.MAX_ATTEMPTS_ENV, "3")
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        before = env_repo.snapshot()
        with pytest.raises(envrepo.OperationFailed, match="rejected 3 times"):
            publish_script.main(["--repo", env_repo.url, "--app", "hello",
                                 "--manifests", str(folder)])
        assert env_repo.snapshot() == before


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
        result = run_script("publish", *[item for pair in args.items() for item in pair])
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
        result = run_script("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(folder))
        assert_bad_input(result, fragment)
        assert env_repo.snapshot() == before

    def test_empty_folder(self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        result = run_script("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(tmp_path / "empty"))
        assert_bad_input(result, "holds no files")
        assert env_repo.tip("candidate") is None

    def test_unreachable_repo_is_an_operational_failure(self, tmp_path: Path) -> None:
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        result = run_script("publish", "--repo", str(tmp_path / "missing.git"), "--app",
                            "hello", "--manifests", str(folder))
        assert result.code == 1
        assert result.stderr.startswith("error: cannot fetch 'candidate'")
        assert len(result.stderr.strip().splitlines()) == 1


class TestCredentials:
    """A token comes from the environment and never shows in output or git config."""

    TOKEN = "ghs_S3cr3tT0kenValue0123456789"

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
        import envrepo

        monkeypatch.setenv("GITOPS_GIT_TOKEN", self.TOKEN)
        monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
        import gitenv

        env = gitenv.git_environment("https://github.com/acme/env.git")
        config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
                  for i in range(int(env["GIT_CONFIG_COUNT"]))}
        assert config["http.extraHeader"] == \
            f"Authorization: Basic {gitenv.basic_auth(self.TOKEN)}"
        local = gitenv.git_environment("/srv/env.git")
        assert "http.extraHeader" not in local.values()
        with envrepo.scratch_repo("https://github.com/acme/env.git") as scratch:
            config = Path(scratch.repo.git_dir, "config").read_text()
            assert self.TOKEN not in config
            assert gitenv.basic_auth(self.TOKEN) not in config
            assert "extraHeader" not in config


def test_token_from_the_connection_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a linked repository named, the short-lived token comes from Cloud Build."""
    import gitenv

    link = "projects/acme/locations/europe-west1/connections/github/repositories/gitops-env"
    asked: list[str] = []

    def fake_token(repository: str) -> str:
        asked.append(repository)
        return "ghs_ShortLivedInstallationToken0123456789"

    monkeypatch.setattr(gitenv, "connection_token", fake_token)
    monkeypatch.delenv(gitenv.TOKEN_ENV, raising=False)
    monkeypatch.setenv(gitenv.TOKEN_REPOSITORY_ENV, link)
    assert "http.extraHeader" not in gitenv.git_environment("/srv/env.git").values()
    assert asked == []  # a local remote needs no token
    env = gitenv.git_environment("https://github.com/acme/gitops-env.git")
    assert asked == [link]
    assert f"Authorization: Basic {gitenv.basic_auth(fake_token(link))}" in env.values()

    def broken(repository: str) -> str:
        raise RuntimeError("403 Permission 'cloudbuild.repositories.accessReadWriteToken' "
                           "denied\non resource")

    monkeypatch.delenv(gitenv.TOKEN_ENV)
    monkeypatch.setattr(gitenv, "connection_token", broken)
    with pytest.raises(gitenv.OperationFailed, match=r"cannot get a token for projects/.*"
                                                     r"accessReadWriteToken' denied on resource"):
        gitenv.git_environment("https://github.com/acme/gitops-env.git")


def test_scripts_run_from_any_directory(env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
    folder = write_manifests(tmp_path / "rel" / "m", "hello", image_ref("hello", DIGEST_A))
    proc = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "scripts" /
                                               "publish.py"),
                           "--repo", env_repo.url, "--app", "hello", "--manifests", "m"],
                          cwd=folder.parent, capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == env_repo.tip("candidate")


class TestPrefetch:
    """publish.py starts its first fetch before GitPython loads; nothing is left behind."""

    @pytest.mark.parametrize("case", ["success", "bad-input", "unreachable"])
    def test_no_scratch_repository_left_behind(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                               case: str) -> None:
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        folder = write_manifests(tmp_path / "m", "hello", image_ref("hello", DIGEST_A))
        repo = str(tmp_path / "missing.git") if case == "unreachable" else env_repo.url
        app = "Bad_App" if case == "bad-input" else "hello"
        result = run_script("publish", "--repo", repo, "--app", app, "--manifests", str(folder),
                            env={"TMPDIR": str(scratch)})
        assert result.code == {"success": 0, "bad-input": 2, "unreachable": 1}[case]
        assert list(scratch.iterdir()) == []

    def test_only_plain_arguments_start_a_fetch(self) -> None:
        from prefetch import Prefetch

        assert Prefetch.start(["--app", "hello"], "candidate") is None
        assert Prefetch.start(["--repo", "--app"], "candidate") is None
        assert Prefetch.start(["--repo=x", "--branch", "bad branch"], "candidate") is None

    def test_prefetched_result_is_the_first_fetch(self, env_repo: EnvRepoOnDisk,
                                                  tmp_path: Path) -> None:
        import envrepo
        from prefetch import Prefetch

        first = publish(env_repo, tmp_path, "hello", DIGEST_A).last_line
        early = Prefetch.start(["--repo", env_repo.url], "candidate")
        assert early is not None
        with envrepo.scratch_repo(env_repo.url, early) as env:
            assert env.repo.git_dir == early.workdir
            assert env.fetch_branch("candidate") == first
            assert early.process is None  # consumed, not fetched again
        assert not Path(early.workdir).exists()
