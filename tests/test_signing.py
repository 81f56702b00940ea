"""Signed env-repo commits, with real `ssh-keygen` keys and `git verify-commit`.

Keys are ed25519, made once per session. Every commit the scripts make is checked by git
itself against an allowed_signers file; history, status and deploy are checked on signed,
tampered, unsigned and wrong-key commits.
"""

from __future__ import annotations

import json
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import (
    DIGEST_A,
    DIGEST_B,
    EnvRepoOnDisk,
    EventsTopic,
    Keys,
    ScriptedCluster,
    assert_bad_input,
    cli,
    git,
    promoted,
    publish,
    signing_as,
)
from gitops.branches import init_branches
from gitops.credentials import git_environment, process_environment, redact
from gitops.deploy import DeliveryRequest, Outcome, deliver
from gitops.errors import BadInput
from gitops.freeze import set_freeze
from gitops.signing import (
    KEY_ENV,
    Signing,
    git_settings,
    parse_allowed_signers,
    public_key_entry,
)

CLUSTER = {"project": "acme-delivery", "cluster": "gitops", "location": "europe-west1"}


def verify_commit(env: EnvRepoOnDisk, keys: Keys, commit: str) -> subprocess.CompletedProcess[str]:
    """`git verify-commit` in the bare repo, against the allowed signers file."""
    return subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={keys.allowed_file}",
                           "verify-commit", commit], cwd=env.path, capture_output=True,
                          text=True)


def tamper(env: EnvRepoOnDisk, commit: str, branch: str) -> str:
    """Rewrite the signed commit's message, keep its signature, and make it the branch tip
    (what someone with push access and no key could do)."""
    raw = git("cat-file", "commit", commit, cwd=env.path) + "\n"
    forged = raw.replace("Deploy hello:", "Deploy hello (forged):", 1)
    assert forged != raw
    sha = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], input=forged,
                         cwd=env.path, capture_output=True, text=True, check=True).stdout.strip()
    git("update-ref", f"refs/heads/{branch}", sha, cwd=env.path)
    return sha


class TestEveryCommitIsSigned:
    """With a key in the environment, every commit the scripts make verifies with git."""

    def test_publish_promote_freeze_and_branch_creation(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, "ci")
        fresh = EnvRepoOnDisk(tmp_path / "fresh.git", initialized=False)  # no branches yet
        created = init_branches(fresh.url)
        fresh.fsck()
        candidate = publish(env_repo, tmp_path, "hello", DIGEST_A)
        frozen = set_freeze(env_repo.url, "hello", True, "incident").commit
        signing_as(monkeypatch, keys, "delivery")
        production = promoted(env_repo, "hello", candidate, "cd-1")
        for repo, commit, signer in [(fresh, created[0].created, "ci"),
                                     (env_repo, candidate, "ci"), (env_repo, frozen, "ci"),
                                     (env_repo, production, "delivery")]:
            assert commit is not None
            result = verify_commit(repo, keys, commit)
            assert result.returncode == 0, result.stderr
            assert f'Good "git" signature for {signer}' in result.stderr

    def test_committer_email_comes_from_the_keys_comment(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """GitHub verifies an SSH signature only for a committer email of the key's account."""
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "gitops-ci@acme.example", "-f", str(tmp_path / "bot")], check=True)
        monkeypatch.setenv(KEY_ENV, (tmp_path / "bot").read_text())
        with_email = publish(env_repo, tmp_path, "hello", DIGEST_A)
        signing_as(monkeypatch, keys, "ci")  # comment "ci": not an email, default identity
        without = publish(env_repo, tmp_path, "hello", DIGEST_B)
        emails = [git("log", "-1", "--format=%ae %ce", c, cwd=env_repo.path)
                  for c in (with_email, without)]
        assert emails == ["gitops-ci@acme.example gitops-ci@acme.example",
                          "gitops-bot@noreply.invalid gitops-bot@noreply.invalid"]

    def test_without_a_key_commits_are_unsigned(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                                keys: Keys,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, None)
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        assert "gpgsig" not in git("cat-file", "commit", commit, cwd=env_repo.path)
        assert verify_commit(env_repo, keys, commit).returncode != 0


class TestHistoryShowsSignatures:
    """history and status say, per entry, whether its signature verifies, and by whom."""

    def test_signed_tampered_unsigned_and_wrong_key(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, None)
        unsigned = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-0")
        signing_as(monkeypatch, keys, "stranger")
        wrong_key = publish(env_repo, tmp_path, "hello", DIGEST_B, build="ci-1")
        signing_as(monkeypatch, keys, "ci")
        signed = publish(env_repo, tmp_path, "hello", DIGEST_A, build="ci-2")
        signing_as(monkeypatch, keys, "ci")
        tampered = tamper(env_repo, publish(env_repo, tmp_path, "hello", DIGEST_B,
                                            build="ci-3"), "candidate")
        signing_as(monkeypatch, keys, "delivery")
        production = promoted(env_repo, "hello", signed, "cd-1")
        signing_as(monkeypatch, keys, None)

        result = cli("history", "--repo", env_repo.url, "--app", "hello", "--json",
                     "--allowed-signers", str(keys.allowed_file))
        assert result.code == 0, result.stderr
        story = json.loads(result.stdout)
        checks = {a["commit"]: a["signature"] for a in story["attempts"]}
        assert checks == {
            tampered: {"status": "bad", "signer": None},
            signed: {"status": "good", "signer": "ci"},
            wrong_key: {"status": "untrusted", "signer": None},
            unsigned: {"status": "unsigned", "signer": None},
        }
        assert story["production"][0]["signature"] == {"status": "good", "signer": "delivery"}
        # git agrees on each.
        assert [verify_commit(env_repo, keys, c).returncode == 0
                for c in (tampered, signed, wrong_key, unsigned)] == [False, True, False, False]

        table = cli("history", "--repo", env_repo.url, "--app", "hello", "--allowed-signers",
                    str(keys.allowed_file)).stdout
        rows = {line.split()[1]: line for line in table.splitlines() if line[:2] == "20"}
        assert "good (ci)" in rows[signed[:12]]
        assert "BAD signature" in rows[tampered[:12]]
        assert "UNSIGNED" in rows[unsigned[:12]]
        assert "signed by a key not allowed" in rows[wrong_key[:12]]
        assert "good (delivery)" in rows[production[:12]]

        status = json.loads(cli("status", "--repo", env_repo.url, "--json",
                                "--allowed-signers", str(keys.allowed_file)).stdout)[0]
        assert status["production"]["signature"] == {"status": "good", "signer": "delivery"}
        assert status["newest_attempt"]["signature"] == {"status": "bad", "signer": None}

    def test_without_allowed_signers_nothing_is_checked(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, "ci")
        publish(env_repo, tmp_path, "hello", DIGEST_A)
        signing_as(monkeypatch, keys, None)
        result = cli("history", "--repo", env_repo.url, "--app", "hello", "--json")
        assert json.loads(result.stdout)["attempts"][0]["signature"] is None
        table = cli("history", "--repo", env_repo.url, "--app", "hello").stdout
        assert "SIGNATURE" not in table


class TestDeployRefusesUnverifiedCommits:
    """With signing on, nothing is applied unless the commit, and the commit that wrote the
    app's manifests, verify against the allowed signers."""

    def deliver(self, env: EnvRepoOnDisk, commit: str) -> tuple[Outcome, ScriptedCluster]:
        cluster = ScriptedCluster("kc")
        result = deliver(DeliveryRequest(repo=env.url, app="hello", commit=commit,
                                         build_id="cd-1", **CLUSTER),
                         cluster_factory=lambda kubeconfig: cluster)
        return result.outcome, cluster

    def test_signed_commit_is_applied_and_promotion_signed(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, "ci")
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        signing_as(monkeypatch, keys, "delivery", verify=True)
        outcome, cluster = self.deliver(env_repo, commit)
        assert outcome is Outcome.PROMOTED and cluster.applied
        tip = env_repo.tip("production")
        assert tip is not None and verify_commit(env_repo, keys, tip).returncode == 0

    def test_unsigned_wrong_key_and_tampered_commits_are_refused(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch, events_topic: EventsTopic) -> None:
        """Each refusal is also a `refused` event (valid against the schema on the emulator's
        topic) naming the commit and the reason."""
        commits = {}
        for how, signer in (("unsigned", None), ("stranger", "stranger"), ("tampered", "ci")):
            signing_as(monkeypatch, keys, signer)
            commits[how] = publish(env_repo, tmp_path, "hello", DIGEST_A if how != "stranger"
                                   else DIGEST_B, build=how)
        commits["tampered"] = tamper(env_repo, commits["tampered"], "candidate")
        signing_as(monkeypatch, keys, "delivery", verify=True)
        before = env_repo.snapshot()
        for how, says in (("unsigned", "is UNSIGNED"),
                          ("stranger", "is signed by a key not allowed"),
                          ("tampered", "is BAD signature")):
            commit = commits[how]
            with pytest.raises(BadInput, match=f"refusing to deploy hello at {commit[:12]}: "
                                               f"commit {commit[:12]} {says}"):
                self.deliver(env_repo, commit)
        assert env_repo.snapshot() == before
        received = events_topic.received()
        assert [(e["kind"], e["candidate_commit"]) for e in received] == [
            ("refused", commits[how]) for how in ("unsigned", "stranger", "tampered")]
        for event, says in zip(received, ("is UNSIGNED", "is signed by a key not allowed",
                                          "is BAD signature"), strict=True):
            commit = event["candidate_commit"]
            assert event["summary"] == \
                f"hello: {commit[:12]} refused on production: signatures do not verify"
            assert f"commit {commit[:12]} {says}" in event["detail"]
            assert event["env_repo_commit"] == env_repo.tip("production")

    def test_unsigned_change_beneath_a_signed_commit_is_refused(
            self, env_repo: EnvRepoOnDisk, tmp_path: Path, keys: Keys,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Someone pushes unsigned manifests for hello; signed publishes of another app land
        on top. The tip is signed, but what it would apply for hello is not."""
        signing_as(monkeypatch, keys, None)
        planted = publish(env_repo, tmp_path, "hello", DIGEST_B, build="planted")
        signing_as(monkeypatch, keys, "ci")
        for index in range(3):  # deeper than the first shallow fetch: found by deepening
            tip = publish(env_repo, tmp_path, "other", DIGEST_A, build=f"ci-{index}")
        signing_as(monkeypatch, keys, "delivery", verify=True)
        cluster = ScriptedCluster("kc")
        with pytest.raises(BadInput, match=f"the commit that wrote apps/hello/, "
                                           f"{planted[:12]} is UNSIGNED"):
            deliver(DeliveryRequest(repo=env_repo.url, app="hello", commit=tip,
                                    build_id="cd-1", **CLUSTER),
                    cluster_factory=lambda kubeconfig: cluster)
        assert cluster.applied == []

    def test_cli_refusal_is_one_line(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                     keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
        signing_as(monkeypatch, keys, None)
        commit = publish(env_repo, tmp_path, "hello", DIGEST_A)
        monkeypatch.setenv("GITOPS_NO_CLUSTER", "1")
        monkeypatch.delenv("GITOPS_EVENTS_TOPIC", raising=False)
        before = env_repo.snapshot()
        result = cli("deploy", "--repo", env_repo.url, "--app", "hello", "--commit", commit,
                     "--allowed-signers", str(keys.allowed_file))
        # One error line; the build log says what a subscriber is told (a `refused` event).
        assert_bad_input(replace(result, stdout=""), "is UNSIGNED")
        assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
            "event refused for hello", "  would publish"]
        assert env_repo.snapshot() == before


class TestKeyHandling:
    """The private key lives only in a 0600 file for the command's duration and never appears
    in output; a value that is not a usable key is refused before anything changes."""

    def test_key_file_is_private_and_removed(self, keys: Keys) -> None:
        signing = Signing(key=keys.private["ci"], allowed_signers=tuple(
            parse_allowed_signers(keys.allowed)))
        with git_settings(signing) as git_signing:
            values = dict(git_signing.settings)
            key_file = Path(values["user.signingKey"])
            assert values["gpg.format"] == "ssh"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
            assert key_file.read_text() == keys.private["ci"]
        assert not key_file.parent.exists()

    def test_git_and_its_children_never_get_the_key(self, keys: Keys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(KEY_ENV, keys.private["ci"])
        environment = git_environment("file:///tmp/env.git")
        assert environment[KEY_ENV] == ""  # GitPython's git processes: emptied
        assert KEY_ENV not in process_environment(environment)  # started processes: absent
        assert redact(f"oops {keys.private['ci'].strip()} end") == "oops *** end"

    @pytest.mark.parametrize("value, says", [
        ("not a key at all", "does not hold an OpenSSH private key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
         "is not a usable unencrypted OpenSSH private key"),
    ])
    def test_bad_key_is_refused_and_not_echoed(self, env_repo: EnvRepoOnDisk, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, value: str,
                                               says: str) -> None:
        folder = tmp_path / "m"
        folder.mkdir()
        (folder / "d.yaml").write_text("kind: ConfigMap\n")
        before = env_repo.snapshot()
        monkeypatch.setenv(KEY_ENV, value)
        result = cli("publish", "--repo", env_repo.url, "--app", "hello", "--manifests",
                     str(folder))
        assert_bad_input(result, says)
        assert "AAAA" not in result.stderr and "at all" not in result.stderr
        assert env_repo.snapshot() == before

    def test_passphrase_protected_key_is_refused(self, tmp_path: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-phrase", "-f",
                        str(tmp_path / "k")], check=True)
        with pytest.raises(BadInput, match="not a usable unencrypted"), \
                git_settings(Signing(key=(tmp_path / "k").read_text())):
            pass


class TestAllowedSigners:
    """Allowed signers are validated and written the same way from every source."""

    def test_semicolons_and_lines_are_the_same_list(self, keys: Keys) -> None:
        lines = parse_allowed_signers(keys.allowed)
        assert parse_allowed_signers(";".join(lines)) == lines and len(lines) == 2

    @pytest.mark.parametrize("text", ["ci ssh-ed25519 AAAA", 'ci namespaces="git" nope',
                                      "  ;  "])
    def test_bad_entries(self, text: str) -> None:
        with pytest.raises(BadInput):
            parse_allowed_signers(text)

    def test_a_private_key_is_not_a_public_key(self, keys: Keys) -> None:
        with pytest.raises(BadInput, match="is a private key"):
            public_key_entry("ci", keys.private["ci"])

    def test_missing_file(self, env_repo: EnvRepoOnDisk) -> None:
        assert_bad_input(cli("status", "--repo", env_repo.url, "--allowed-signers",
                             "/nonexistent/allowed"), "--allowed-signers", "No such file")
