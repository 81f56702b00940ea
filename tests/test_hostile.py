"""Hostile input and faults: no command injection, no file leaks, no forged history, no
tracebacks. Each class holds one invariant; refusals run against one shared repository that
must stay exactly as it was."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    DIGEST_A,
    DIGEST_B,
    SCRIPTS,
    EnvRepoOnDisk,
    FakeClock,
    Result,
    ScriptedCluster,
    assert_bad_input,
    cli,
    git,
    image_ref,
    promoted,
    publish,
    run_script,
    write_manifests,
)
from gitops import cluster, credentials, processes, scratch
from gitops.checks import check_remote, check_trailer_value, unsafe_char
from gitops.deploy import Cluster, DeliveryRequest, deliver
from gitops.envrepo import scratch_repo
from gitops.errors import BadInput, OperationFailed
from gitops.trailers import commit_message, parse_trailer_lines

CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}
CLUSTER_ARGS = ["--project=acme-delivery", "--cluster=gitops", "--location=europe-west1"]
TOKEN = "ghp_H0st1leT0kenValue0123456789abcdef"
# Every character Python's str.splitlines breaks at, and other controls and format characters.
LINE_BREAKS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
CONTROLS = ["\x00", "\t", "\x1b", "\u202e", "\u200b", "\ufeff"]

# 38 nodes as written, 9**7 (4.8 million) once its aliases are expanded.
BOMB = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n" \
    '  a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n' + "".join(
        f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdef", "bcdefg", strict=True))
DUPLICATE_KEYS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: twice}
data: {mode: safe}
data: {mode: unsafe}
"""
DEEP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: " + "[" * 200 + \
    "]" * 200 + "\n"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[EnvRepoOnDisk, str, Path]]:
    """hello published and promoted: (repo, candidate commit, a folder for inputs)."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    env = EnvRepoOnDisk(tmp_path / "env.git")
    commit = publish(env, tmp_path, "hello", DIGEST_A)
    promoted(env, "hello", commit, "cd-1")
    yield env, commit, tmp_path
    env.fsck()


@pytest.fixture(autouse=True)
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """kubectl and gcloud on PATH that only record that they were called: no refusal may
    reach them (tests that run tools put their own first on PATH)."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir()
    calls = tmp_path / "tool-calls"
    for tool in ("kubectl", "gcloud"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} >> {calls}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield calls
    assert not calls.exists(), calls.read_text()


def refused(env: EnvRepoOnDisk, run: Callable[[], Result], *fragments: str) -> Result:
    """run() must be bad input (exit 2, one error line naming the fragments), nothing changed."""
    before = env.snapshot()
    result = run()
    assert_bad_input(result, *fragments)
    assert env.snapshot() == before
    return result


def good_manifests(folder: Path) -> Path:
    return write_manifests(folder, "hello", image_ref("hello", DIGEST_B))


INJECTIONS = [
    "--upload-pack=touch {marker};",
    "--receive-pack=touch {marker};",
    "-u touch {marker}",
    "ext::sh -c touch% {marker}",
    "ssh://-oProxyCommand=touch%20{marker}/env.git",
    "-oProxyCommand=touch {marker}:env.git",
]


class TestRemotes:
    """No remote is read as an option or as another transport: refused before git runs."""

    @pytest.fixture
    def marker(self, tmp_path: Path) -> Iterator[Path]:
        path = tmp_path / "pwned"
        yield path
        assert not path.exists(), "a command smuggled in --repo ran"

    @pytest.mark.parametrize("script,template", [
        *[(script, template) for script in ("publish", "promote") for template in INJECTIONS],
        *[(script, INJECTIONS[0]) for script in ("freeze", "history", "status",
                                                 "init_branches", "deploy")],
    ])
    def test_refused_by_every_command(self, shared: tuple[EnvRepoOnDisk, str, Path],
                                      marker: Path, template: str, script: str) -> None:
        env, commit, tmp_path = shared
        repo = template.format(marker=marker)
        extra = {
            "publish": ["--app", "hello", "--manifests", str(good_manifests(tmp_path / "m"))],
            "promote": ["--app", "hello", "--commit", commit],
            "freeze": ["--app", "hello"], "history": ["--app", "hello"], "status": [],
            "init_branches": [], "deploy": ["--app", "hello", "--commit", commit, *CLUSTER_ARGS],
        }[script]
        refused(env, lambda: cli(script, f"--repo={repo}", *extra), "--repo")

    def test_git_reads_no_remote_as_an_option(self, shared: tuple[EnvRepoOnDisk, str, Path],
                                              marker: Path) -> None:
        """Even past the check, `--` keeps a remote from being read as an option."""
        env, _, _ = shared
        with scratch_repo(env.url) as scratch_env:
            tip = scratch_env.fetch("candidate")
            assert tip is not None
            scratch_env.url = f"--upload-pack=touch {marker};"
            with pytest.raises(OperationFailed):
                scratch_env.fetch("production")
            with pytest.raises(OperationFailed):
                scratch_env.push(tip, "candidate", tip)

    @pytest.mark.parametrize("url", [
        "https://github.com/acme/env.git", "http://127.0.0.1:8080/env.git",
        "ssh://git@github.com/acme/env.git", "git://127.0.0.1/env.git",
        "git@github.com:acme/env.git", "github.com:acme/env.git", "file:///srv/env.git",
        "https://x-access-token@github.com/acme/env.git", "ssh://git@[::1]:2222/env.git",
    ])
    def test_accepted(self, url: str) -> None:
        assert check_remote(url) == url

    def test_a_local_path_is_made_absolute(self, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "env:1.git").mkdir()
        monkeypatch.chdir(tmp_path)
        assert check_remote("env:1.git") == str(tmp_path / "env:1.git")

    @pytest.mark.parametrize("url", [
        "", "-", "--upload-pack=x", "ext::sh -c x", "fd::3", "ftp://host/env.git",
        "https://-oProxyCommand=x/env.git", "file://remote-host/env.git",
        "git@host:-oProxyCommand=x", "git@host::x", "/no/such/env.git", "relative/missing",
        "https://github.com/acme/env.git\n", "https://github.com/acme env.git",
        "https://github.com:8o/acme/env.git", "https://-u@github.com/acme/env.git",
    ])
    def test_refused(self, url: str) -> None:
        with pytest.raises(BadInput, match="--repo must be"):
            check_remote(url)


def symlink_out_file(folder: Path, tmp_path: Path) -> None:
    (folder / "passwd.yaml").symlink_to("/etc/passwd")


def symlink_out_dir(folder: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "key.yaml").write_text("apiVersion: v1\nkind: Secret\n")
    (folder / "more").symlink_to(secrets)


def symlink_loop(folder: Path, tmp_path: Path) -> None:
    (folder / "loop").symlink_to(".")


def symlink_cycle(folder: Path, tmp_path: Path) -> None:
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "a" / "to-b").symlink_to("../b")
    (folder / "b" / "to-a").symlink_to("../a")


def dangling(folder: Path, tmp_path: Path) -> None:
    (folder / "gone.yaml").symlink_to("missing.yaml")


def fifo(folder: Path, tmp_path: Path) -> None:
    os.mkfifo(folder / "pipe.yaml")


def socket_file(folder: Path, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.yaml"))
    sock.close()


def dot_git(folder: Path, tmp_path: Path) -> None:
    (folder / ".git").mkdir()
    (folder / ".git" / "config.yaml").write_text("a: 1\n")


def dot_git_upper(folder: Path, tmp_path: Path) -> None:
    (folder / "sub" / ".GIT").mkdir(parents=True)
    (folder / "sub" / ".GIT" / "x.yaml").write_text("a: 1\n")


def non_utf8_name(folder: Path, tmp_path: Path) -> None:
    with open(os.fsencode(folder) + b"/caf\xe9.yaml", "w") as handle:
        handle.write("a: 1\n")


def newline_name(folder: Path, tmp_path: Path) -> None:
    (folder / "a\nb.yaml").write_text("a: 1\n")


def non_utf8_text(folder: Path, tmp_path: Path) -> None:
    (folder / "latin1.yaml").write_bytes(b"data: caf\xe9\n")


def file_named(name: str, text: str) -> Callable[[Path, Path], None]:
    def make(folder: Path, tmp_path: Path) -> None:
        (folder / name).write_text(text)
    return make


class TestManifestsFolder:
    """Publish commits regular .yaml files from inside the folder only, and YAML that every
    later reader can read safely; anything else is refused, never skipped."""

    @pytest.mark.parametrize("make,fragment", [
        (symlink_out_file, "outside the manifests folder"),
        (symlink_out_dir, "outside the manifests folder"),
        (symlink_loop, "symlink loop"),
        (symlink_cycle, "symlink loop"),
        (dangling, "dangling symlink"),
        (fifo, "not a regular file"),
        (socket_file, "not a regular file"),
        (dot_git, ".git"),
        (dot_git_upper, ".git"),
        (non_utf8_name, "not UTF-8"),
        (newline_name, "control character"),
        (non_utf8_text, "not UTF-8"),
        (file_named("bomb.yaml", BOMB), "excessive aliasing"),
        (file_named("twice.yaml", DUPLICATE_KEYS), "duplicate key 'data'"),
        (file_named("deep.yaml", DEEP), "nested deeper than"),
        (file_named("self.yaml", "a: &a [*a]\n"), "refers to a collection that contains it"),
    ], ids=lambda v: getattr(v, "__name__", None) or str(v)[:12])
    def test_refused(self, shared: tuple[EnvRepoOnDisk, str, Path], tmp_path: Path,
                     make: Callable[[Path, Path], None], fragment: str) -> None:
        env, _, _ = shared
        folder = good_manifests(tmp_path / "m")
        make(folder, tmp_path)
        refused(env, lambda: cli("publish", "--repo", env.url, "--app", "hello",
                                 "--manifests", str(folder)), fragment)

    def test_symlinks_inside_the_folder_are_taken_as_files(self, env_repo: EnvRepoOnDisk,
                                                           tmp_path: Path) -> None:
        folder = good_manifests(tmp_path / "m")
        (folder / "base").mkdir()
        (folder / "base" / "svc.yaml").write_text("apiVersion: v1\nkind: Service\n")
        (folder / "svc.yaml").symlink_to("base/svc.yaml")
        (folder / "copy").symlink_to("base")
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(folder))
        assert result.code == 0, result.stderr
        files = env_repo.files(result.last_line, "apps/hello")
        assert sorted(files) == ["apps/hello/base/svc.yaml", "apps/hello/copy/svc.yaml",
                                 "apps/hello/deployment.yaml", "apps/hello/svc.yaml"]
        assert files["apps/hello/svc.yaml"] == "apiVersion: v1\nkind: Service"
        modes = git("ls-tree", "-r", result.last_line, "--", "apps/hello", cwd=env_repo.path)
        assert {line.split()[0] for line in modes.splitlines()} == {"100644"}  # no symlinks

    @pytest.mark.parametrize("make,fragment", [
        (symlink_out_file, "symlink leading out of the templates folder"),
        (symlink_out_dir, "symlink leading out of the templates folder"),
        (symlink_loop, "symlink to a folder"), (dangling, "not a regular file"),
        (fifo, "not a regular file"),
    ], ids=lambda v: getattr(v, "__name__", None) or str(v)[:12])
    def test_render_reads_nothing_from_outside(self, tmp_path: Path,
                                               make: Callable[[Path, Path], None],
                                               fragment: str) -> None:
        templates = good_manifests(tmp_path / "t")
        (templates / "README.md").write_text("notes beside the templates are skipped\n")
        (templates / ".git").mkdir()
        make(templates, tmp_path)
        image = image_ref("hello", DIGEST_B)
        result = cli("render", "--templates", str(templates), "--app", "hello", "--image",
                     f"{image.split('@')[0]}={image}", "--out", str(tmp_path / "out"))
        assert_bad_input(result, fragment)
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("text,fragment", [
        (BOMB, "excessive aliasing"), (DUPLICATE_KEYS, "duplicate key 'data'"),
        (DEEP, "nested deeper than"),
    ])
    def test_render_refuses_the_same_yaml(self, tmp_path: Path, text: str,
                                          fragment: str) -> None:
        templates = good_manifests(tmp_path / "t")
        (templates / "extra.yaml").write_text(text)
        result = cli("render", "--templates", str(templates), "--app", "hello", "--image",
                     f"{image_ref('hello', DIGEST_B).split('@')[0]}={image_ref('hello', DIGEST_B)}",
                     "--out", str(tmp_path / "out"))
        assert_bad_input(result, fragment)
        assert len(result.stderr) < 400  # one short line, not an expanded document
        assert not (tmp_path / "out").exists()


class TestNoForgedHistory:
    """No value reaches a commit message with a control or line-break character; trailers are
    read back at git's line breaks only."""

    @pytest.mark.parametrize("script,flag,char", [
        *[("publish", "--build-id", char) for char in LINE_BREAKS + CONTROLS],
        *[(script, flag, char) for script, flag in [
            ("publish", "--source-repo"), ("promote", "--build-id"), ("freeze", "--reason"),
            ("deploy", "--build-id")] for char in ("\n", "\x85", "\u2028")],
    ], ids=str)
    def test_free_text_refused(self, shared: tuple[EnvRepoOnDisk, str, Path], script: str,
                               flag: str, char: str) -> None:
        env, commit, tmp_path = shared
        extra = {
            "publish": ["--manifests", str(good_manifests(tmp_path / "m"))],
            "promote": ["--commit", commit], "freeze": [],
            "deploy": ["--commit", commit, *CLUSTER_ARGS],
        }[script]
        value = f"https://github.com/acme/x{char}Rollback: true"
        refused(env, lambda: cli(script, "--repo", env.url, "--app", "hello", *extra,
                                 f"{flag}={value}"), flag)

    @pytest.mark.parametrize("script,flag,value", [
        ("publish", "--app", "hello\n"),
        ("publish", "--image", image_ref("hello", DIGEST_B) + "\n"),
        ("publish", "--source-commit", "1" * 40 + "\n"),
        ("publish", "--branch", "candidate\n"),
        ("freeze", "--branch", "candidate\nx"),
        ("promote", "--to", "production\n"),
        ("promote", "--from", "candidate\n"),
        ("deploy", "--to", "production\n"),
        ("history", "--from", "candidate\n"),
    ])
    def test_patterns_match_the_whole_value(self, shared: tuple[EnvRepoOnDisk, str, Path],
                                            script: str, flag: str, value: str) -> None:
        env, commit, tmp_path = shared
        args = {"--repo": env.url, "--app": "hello"}
        if script == "publish":
            args["--manifests"] = str(good_manifests(tmp_path / "m"))
        if script in ("promote", "deploy"):
            args["--commit"] = commit
        args[flag] = value
        extra = CLUSTER_ARGS if script == "deploy" else []
        refused(env, lambda: cli(script, *[f"{k}={v}" for k, v in args.items()], *extra))

    def test_a_forged_line_break_in_history_stays_in_its_value(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path) -> None:
        """A production commit written by hand (not by these scripts) with U+0085 in a
        trailer value: history reads one Build-Id, not a Rollback trailer. The tables of
        history and status print that value escaped: a terminal escape sequence or a bidi
        override from Git never reaches the operator's terminal raw."""
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        second = publish(env_repo, tmp_path, "hello", DIGEST_B)
        promoted(env_repo, "hello", first, "cd-1")
        forged = "cd-2\x85Rollback: true\x1b[2J\u202e"
        hand_commit(env_repo, "production", second,
                    f"Promote hello\n\nApp: hello\nBuild-Id: {forged}\n"
                    f"Promoted-From: {second}\n")
        result = cli("history", "--repo", env_repo.url, "--app", "hello", "--json")
        assert result.code == 0, result.stderr
        production = json.loads(result.stdout)["production"]
        assert [(p["kind"], p["build_id"]) for p in production] == [
            ("promote", forged), ("promote", "cd-1")]
        for command in ("history", "status"):
            text = cli(command, "--repo", env_repo.url, "--app", "hello")
            assert text.code == 0, text.stderr
            assert unsafe_char(text.stdout.replace("\n", " ")) is None, command
            assert "cd-2\\x85Rollback: true\\x1b[2J\\u202e" in text.stdout, command

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
        LINE_BREAKS + CONTROLS), max_size=40))
    def test_accepted_values_stay_one_trailer(self, value: str) -> None:
        """Whatever the text: refused, or exactly one trailer line for every line splitter."""
        try:
            check_trailer_value("--build-id", value)
        except BadInput:
            return
        message = commit_message("Deploy hello: manifests", [("App", "hello"),
                                                             ("Build-Id", value)])
        assert len(message.split("\n")) == len(message.splitlines()) + 1 == 5
        assert parse_trailer_lines(message.split("\n\n", 1)[1]) == \
            {"App": "hello", "Build-Id": value}


def hand_commit(env: EnvRepoOnDisk, branch: str, app_from: str, message: str) -> str:
    """A commit on branch, made without these scripts' checks: apps/hello/ as at app_from."""
    with scratch_repo(env.url) as scratch_env:
        tip = scratch_env.fetch(branch)
        scratch_env.reach("candidate", [app_from])
        app = scratch_env.lookup(app_from, "apps/hello")
        tree = scratch_env.edit_tree(scratch_env.root_tree(tip), "apps/hello", app)
        commit = scratch_env.commit(tree, tip, message)
        assert scratch_env.push(commit, branch, tip)
    return commit


class TestSourceRepoCredentials:
    """A --source-repo with credentials is refused, and never repeated in the error line;
    credentials recorded before the check are not shown again."""

    @pytest.mark.parametrize("value", [
        f"https://user:{TOKEN}@github.com/acme/hello",
        f"https://{TOKEN}@github.com/acme/hello",
        f"http://x-access-token:{TOKEN}@git.example.com/acme/hello.git",
        f"ssh://git:{TOKEN}@github.com/acme/hello.git",
        f"git:{TOKEN}@github.com:acme/hello.git",
    ])
    def test_refused(self, shared: tuple[EnvRepoOnDisk, str, Path], value: str) -> None:
        env, _, tmp_path = shared
        result = refused(env, lambda: cli(
            "publish", "--repo", env.url, "--app", "hello", "--manifests",
            str(good_manifests(tmp_path / "m")), "--source-repo", value), "credentials")
        assert TOKEN not in result.stderr

    @pytest.mark.parametrize("value", ["git@github.com:acme/hello.git",
                                       "ssh://git@github.com/acme/hello.git",
                                       "https://github.com/acme/hello"])
    def test_plain_urls_are_recorded(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                     value: str) -> None:
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(good_manifests(tmp_path / "m")), "--source-repo", value)
        assert result.code == 0, result.stderr
        assert f"Source-Repo: {value}" in env_repo.message(result.last_line)

    def test_history_hides_credentials_recorded_before(self, env_repo: EnvRepoOnDisk,
                                                       tmp_path: Path) -> None:
        published = publish(env_repo, tmp_path, "hello", DIGEST_B)
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        commit = hand_commit(env_repo, "candidate", published,  # written without the check
                             "Deploy hello: manifests\n\nApp: hello\n"
                             f"Source-Repo: https://bot:{TOKEN}@github.com/acme/hello\n")
        result = cli("history", "--repo", env_repo.url, "--app", "hello", "--json")
        assert result.code == 0, result.stderr
        assert TOKEN not in result.stdout
        assert json.loads(result.stdout)["attempts"][0]["source_repo"] == \
            "https://github.com/acme/hello"
        promoted_tip = promoted(env_repo, "hello", commit, "cd-1")  # not copied to production
        assert TOKEN not in env_repo.message(promoted_tip)


class TestChildEnvironment:
    """kubectl and gcloud get only what they need; no git child sees the token's variable."""

    SECRETS: ClassVar[dict[str, str]] = {
        credentials.TOKEN_ENV: TOKEN, "STRIPE_API_KEY": "sk_live_0123456789",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI0123456789"}

    def test_kubectl_and_gcloud(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for tool in ("kubectl", "gcloud"):
            (bin_dir / tool).write_text(f"#!/bin/sh\nenv > {tmp_path}/{tool}.env\n")
            (bin_dir / tool).chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud-config"))
        for key, value in self.SECRETS.items():
            monkeypatch.setenv(key, value)
        cluster = Cluster(str(tmp_path / "kubeconfig"))
        assert cluster.kubectl("version")[0] == 0
        cluster.get_credentials("acme-delivery", "gitops", "europe-west1")
        for tool in ("kubectl", "gcloud"):
            seen = dict(line.split("=", 1) for line in
                        (tmp_path / f"{tool}.env").read_text().splitlines() if "=" in line)
            for secret in self.SECRETS.values():
                assert secret not in (tmp_path / f"{tool}.env").read_text()
            assert seen["KUBECONFIG"] == str(tmp_path / "kubeconfig")
            assert seen["CLOUDSDK_CONFIG"] == str(tmp_path / "gcloud-config")
            assert seen["PATH"].startswith(str(bin_dir))
            allowed = {"KUBECONFIG", "LC_ALL", *processes.TOOL_ENV_KEYS,
                       "PWD", "SHLVL", "_"}  # the last three: the shell's own
            assert {k for k in seen if not k.startswith(processes.TOOL_ENV_PREFIXES)} <= allowed

    def test_git(self, env_repo: EnvRepoOnDisk, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(credentials.TOKEN_ENV, TOKEN)
        with scratch_repo(env_repo.url) as env:
            # git's own children (an alias running `env`) see what git sees.
            _, out, _ = env.run("-c", "alias.show-env=!env", "show-env")
            assert TOKEN not in out and "LC_ALL=C" in out
            assert TOKEN not in json.dumps(env.process_env)
            assert credentials.TOKEN_ENV not in env.process_env


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


class TestTimeouts:
    """A remote or a cluster that hangs fails the command with a clear message."""

    def test_a_remote_that_never_answers(self, silent_server: int, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GITOPS_GIT_TIMEOUT", "0.3")
        result = cli("publish", "--repo", f"git://127.0.0.1:{silent_server}/env.git",
                     "--app", "hello", "--manifests", str(good_manifests(tmp_path / "m")))
        assert result.code == 1
        assert result.stderr == (f"error: git fetch of 'candidate' from git://127.0.0.1:"
                                 f"{silent_server}/env.git timed out after 0.3s\n")

    def test_git_aborts_stalled_http_transfers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("GITOPS_GIT_TIMEOUT", "600")
        monkeypatch.delenv("GIT_CONFIG_COUNT", raising=False)
        env = credentials.git_environment("https://github.com/acme/env.git")
        config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
                  for i in range(int(env["GIT_CONFIG_COUNT"]))}
        assert (config["http.lowSpeedLimit"], config["http.lowSpeedTime"]) == ("1000", "30")
        assert env["GIT_ALLOW_PROTOCOL"] == "https:http:ssh:git:file"

    def test_a_kubectl_call_that_hangs_is_killed(self, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "kubectl").write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {tmp_path}/child\n"
                                         "wait\n")
        (bin_dir / "kubectl").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        monkeypatch.setattr(cluster, "CALL_TIMEOUT", 0.5)
        code, _, err = Cluster("kc").kubectl("apply", "--filename=x")
        assert (code, err) == (124, "kubectl apply timed out after 0.5s")
        child = Path(f"/proc/{(tmp_path / 'child').read_text().strip()}/stat")
        for _ in range(100):  # the whole process group was killed: gone, or a zombie
            if not child.exists() or child.read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the kubectl call's child process survived its deadline")


class TestSettings:
    """Numeric settings are ASCII decimal within bounds, checked before anything runs."""

    @pytest.mark.parametrize("env,args,fragment", [
        ({"GITOPS_LEASE_POLL": "\u0663"}, [], "GITOPS_LEASE_POLL"),
        ({"GITOPS_LEASE_POLL": "nan"}, [], "GITOPS_LEASE_POLL"),
        ({"GITOPS_LEASE_POLL": "inf"}, [], "GITOPS_LEASE_POLL"),
        ({"GITOPS_LEASE_POLL": "1e3"}, [], "GITOPS_LEASE_POLL"),
        ({}, ["--timeout=\u0663\u0660\u0660s"], "--timeout"),
        ({}, ["--timeout=99999999999999999999s"], "--timeout"),
        ({}, ["--timeout=21451s"], "--timeout"),
        ({}, ["--timeout=0s"], "--timeout"),
        ({}, ["--lock-timeout=86401s"], "--lock-timeout"),
        ({"GITOPS_GIT_TIMEOUT": "\u0663"}, [], "GITOPS_GIT_TIMEOUT"),
        ({"GITOPS_PUSH_DEADLINE": "1e400"}, [], "GITOPS_PUSH_DEADLINE"),
    ])
    def test_deploy(self, shared: tuple[EnvRepoOnDisk, str, Path],
                    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str],
                    fragment: str) -> None:
        repo, commit, _ = shared
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        refused(repo, lambda: cli("deploy", "--repo", repo.url, "--app", "hello", "--commit",
                                  commit, *CLUSTER_ARGS, *args), fragment)

    @pytest.mark.parametrize("key,value", [("GITOPS_GIT_TIMEOUT", "\u0663"),
                                           ("GITOPS_GIT_TIMEOUT", "0.01"),
                                           ("GITOPS_PUSH_DEADLINE", "\u0663\u0660"),
                                           ("GITOPS_PUSH_BACKOFF", "nan")])
    def test_publish(self, shared: tuple[EnvRepoOnDisk, str, Path],
                     monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
        repo, _, tmp_path = shared
        monkeypatch.setenv(key, value)
        refused(repo, lambda: cli("publish", "--repo", repo.url, "--app", "hello",
                                  "--manifests", str(good_manifests(tmp_path / "m"))), key)

    @pytest.mark.parametrize("flag", ["--timeout=99999999999s", "--timeout=\u0663\u0660\u0660s",
                                      "--lock-timeout=86401s",
                                      "--environment=--upload-pack=touch x"])
    def test_reconcile(self, shared: tuple[EnvRepoOnDisk, str, Path], flag: str) -> None:
        repo, _, _ = shared
        refused(repo, lambda: cli("reconcile", "--repo", repo.url, flag), flag.split("=")[0])

    @pytest.mark.parametrize("flag", ["--project=-impersonate", "--cluster=--flags-file=x",
                                      "--location=europe-west1\n"])
    def test_cluster_coordinates(self, shared: tuple[EnvRepoOnDisk, str, Path],
                                 flag: str) -> None:
        repo, commit, _ = shared
        args = dict(arg.split("=", 1) for arg in CLUSTER_ARGS)
        key, value = flag.split("=", 1)
        args[key] = value
        refused(repo, lambda: cli("deploy", "--repo", repo.url, "--app", "hello", "--commit",
                                  commit, *[f"{k}={v}" for k, v in args.items()]), key)


class TestOnlyInitBranchesCreatesBranches:
    """A mistyped branch is bad input; no command but init_branches starts a root branch."""

    @pytest.mark.parametrize("script,flag", [("publish", "--branch"), ("freeze", "--branch"),
                                             ("promote", "--to")])
    def test_mistyped_branch(self, shared: tuple[EnvRepoOnDisk, str, Path], script: str,
                             flag: str) -> None:
        env, commit, tmp_path = shared
        extra = {"publish": ["--manifests", str(good_manifests(tmp_path / "m"))],
                 "freeze": [], "promote": ["--commit", commit]}[script]
        refused(env, lambda: cli(script, "--repo", env.url, "--app", "hello", *extra,
                                 flag, "candidtae"),
                "branch 'candidtae' does not exist", "init_branches.py")

    def test_deploy_refuses_before_the_cluster(self, shared: tuple[EnvRepoOnDisk, str, Path]
                                               ) -> None:
        env, commit, _ = shared
        cluster = ScriptedCluster("kc")
        before = env.snapshot()
        with pytest.raises(BadInput, match="branch 'productoin' does not exist"):
            deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit, build_id="cd",
                                    target="productoin", **CLUSTER),
                    cluster_factory=lambda kubeconfig: cluster, clock=FakeClock())
        assert cluster.calls == [] and env.snapshot() == before


class TestUnrecordedRollout:
    """A rollout that production cannot record is undone: production's tree is re-applied and
    the build fails saying so, so the cluster never runs what production does not hold."""

    @staticmethod
    def protect_production(env: EnvRepoOnDisk) -> None:
        hook = env.path / "hooks" / "update"
        hook.write_text('#!/bin/sh\n[ "$1" = refs/heads/production ] && '
                        '{ echo "production is protected" >&2; exit 1; }\nexit 0\n')
        hook.chmod(0o755)

    def deliver(self, env: EnvRepoOnDisk, commit: str, cluster: ScriptedCluster) -> str:
        return deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit,
                                       build_id="cd-2", **CLUSTER),
                       cluster_factory=lambda kubeconfig: cluster, clock=cluster.clock).commit

    def test_production_re_applied(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        good = publish(env_repo, tmp_path, "hello", DIGEST_A)
        self.deliver(env_repo, good, ScriptedCluster("kc"))
        production = env_repo.tip("production")
        new = publish(env_repo, tmp_path, "hello", DIGEST_B)
        self.protect_production(env_repo)
        cluster = ScriptedCluster("kc")
        with pytest.raises(OperationFailed) as failed:
            self.deliver(env_repo, new, cluster)
        assert str(failed.value).startswith(
            f"hello at {new[:12]} rolled out but could not be recorded on production (push "
            "to 'production' refused by the remote: [remote rejected] (hook declined)); "
            f"re-applied production {str(production)[:12]}: the cluster runs what production "
            "holds again")
        assert [DIGEST_B in a["deployment.yaml"] for a in cluster.applied] == [True, False]
        assert DIGEST_A in cluster.applied[1]["deployment.yaml"]
        assert env_repo.tip("production") == production
        assert cluster.lease is None
        assert "ERROR: hello at" in capsys.readouterr().out

    def test_nothing_to_re_apply_deletes_what_it_applied(self, env_repo: EnvRepoOnDisk,
                                                         tmp_path: Path) -> None:
        """Production holds nothing for the app: the revert deletes what the commit applied,
        so the namespace holds what production records (nothing), and says so."""
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        self.protect_production(env_repo)
        cluster = ScriptedCluster("kc")
        with pytest.raises(OperationFailed, match="production holds nothing for hello yet: "
                                                  "what this commit applied was deleted"):
            self.deliver(env_repo, first, cluster)
        assert env_repo.tip("production") == env_repo.root
        assert len(cluster.applied) == 1
        assert cluster.deleted == ["deployment.apps/hello"]

    def test_a_failed_delete_is_said_loudly(self, env_repo: EnvRepoOnDisk,
                                            tmp_path: Path) -> None:
        first = publish(env_repo, tmp_path, "hello", DIGEST_A)
        self.protect_production(env_repo)
        cluster = ScriptedCluster("kc", failing_deletes=frozenset({"deployment.apps/hello"}))
        with pytest.raises(OperationFailed, match="THE CLUSTER STILL RUNS THIS COMMIT"):
            self.deliver(env_repo, first, cluster)


class TestScratchSweep:
    """A run killed with SIGKILL leaves its scratch folder; the next run removes it, and only
    folders whose process is gone."""

    def test_killed_run_is_swept_by_the_next(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                             silent_server: int) -> None:
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(tmp), "GITOPS_GIT_TIMEOUT": "60"}
        folder = good_manifests(tmp_path / "m")
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "publish.py"), "--repo",
             f"git://127.0.0.1:{silent_server}/env.git", "--app", "hello", "--manifests",
             str(folder)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3000):  # until its scratch repository exists (the fetch then hangs)
            if list(tmp.glob("gitops-scratch.*")):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = list(tmp.glob("gitops-scratch.*"))
        assert len(left) == 1 and f".{proc.pid}." in left[0].name
        result = run_script("publish", "--repo", env_repo.url, "--app", "hello",
                            "--manifests", str(folder), env={"TMPDIR": str(tmp)})
        assert result.code == 0, result.stderr
        assert list(tmp.iterdir()) == []

    def test_only_folders_of_gone_processes(self, tmp_path: Path) -> None:
        tmp_path = tmp_path / "tmp"
        tmp_path.mkdir()
        live = subprocess.Popen(["sleep", "30"])
        gone = subprocess.Popen(["true"])
        gone.wait()
        try:
            host, live_start = scratch.host(), scratch.process_start(live.pid)
            names = {
                "live": f"gitops-scratch.{host}.{live.pid}.{live_start}.abc",
                "gone": f"gitops-scratch.{host}.{gone.pid}.123.abc",
                "reused": f"gitops-scratch.{host}.{live.pid}.{int(live_start or 0) - 1}.abc",
                "other-host": f"gitops-scratch.elsewhere.{gone.pid}.123.abc",
                "not-ours": f"gitops-{gone.pid}-abc",
            }
            for name in names.values():
                (tmp_path / name).mkdir()
            removed = scratch.sweep(tmp_path)
            assert sorted(p.name for p in removed) == sorted([names["gone"], names["reused"]])
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
                [names["live"], names["other-host"], names["not-ours"]])
        finally:
            live.kill()
            live.wait()
