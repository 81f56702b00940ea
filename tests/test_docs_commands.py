"""Every shell command in README.md and docs/*.md works as written.

How each command is checked, and why the rest is not run (a command no rule covers fails):

- RUN, line by line as on the page, in one bash session per document, against a local env
  repo: `python scripts/{status,history,freeze,unfreeze}.py ...`, `rollback.py ... --dry-run`,
  `. .venv/bin/activate`, and `NAME="$(pulumi stack output ...)"` (a stand-in `pulumi` answers
  the env repo's path, the project and the region).
- RUN WITH --help: other `python scripts/*.py` (rollback without --dry-run starts a Cloud Build
  build).
- DRY RUN (`make -n`: the target exists and its recipe expands): `make ...`. bootstrap,
  preview, up and destroy reach the cloud; `test` is this suite; `loop` runs in
  tests/test_pipelines.py.
- AGAINST A VENDORED REFERENCE (tests/data/cli-reference.json): the command path and every flag
  of `gcloud` (the installed SDK's own command tree), `kubectl` (its help) and `pulumi` (its CLI
  reference). They call Google, need a cluster, or need a state backend; the Pulumi CLI is not
  even installed here.
- `git SUB -h` lists every flag used: `git ...` would change this repository or a remote.
- `ssh-keygen`'s usage lists every flag used: running it would write key files.
- bash knows them (`type`): `printf`, `read`, `export`, `cat`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DIGEST_A, DIGEST_B, EnvRepoOnDisk, promoted, publish
from doc_commands import (
    DOCUMENTS,
    OTHER_LANGUAGES,
    RERUN,
    ROOT,
    SHELL,
    Command,
    against_reference,
    all_commands,
    blocks,
    flags_of,
)
from doc_commands import commands_of as parse

RUN_SCRIPTS = {"status", "history", "freeze", "unfreeze"}
SESSION_PULUMI = {"stack output env_repo_url", "config get gcp:project", "config get gcp:region"}


def script_of(command: Command) -> str | None:
    words = command.words
    if words[0] in ("python", "python3") and len(words) > 1:
        match = re.fullmatch(r"scripts/(\w+)\.py", words[1])
        return match.group(1) if match else None
    return None


def runs_in_session(command: Command) -> bool:
    """Commands the document session executes as written."""
    words = command.words
    if words[:2] == (".", ".venv/bin/activate"):
        return True
    if words[0] == "pulumi" and " ".join(words[1:]) in SESSION_PULUMI:
        return True
    script = script_of(command)
    return script in RUN_SCRIPTS or (script == "rollback" and "--dry-run" in words)


def unquoted_substitution(line: str) -> bool:
    """Whether a $( in line stands outside double quotes."""
    quote = ""
    for index, char in enumerate(line):
        if char in "\"'" and (not quote or quote == char):
            quote = "" if quote else char
        elif char == "$" and line[index + 1:index + 2] == "(" and not quote:
            return True
    return False


def check_make(command: Command) -> list[str]:
    dry = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT),
                          *command.words[1:], "VENV_READY=/dev/null"],
                         capture_output=True, text=True, check=False)
    return [] if dry.returncode == 0 else [f"make -n failed: {dry.stderr.strip()}"]


def check_git(command: Command) -> list[str]:
    sub = command.words[1]
    usage = subprocess.run(["git", sub, "-h"], capture_output=True, text=True, check=False)
    text = usage.stdout + usage.stderr
    if f"usage: git {sub}" not in text:
        return [f"git has no subcommand {sub}"]
    return [f"git {sub}: unknown flag {flag}" for flag in flags_of(command.words[2:])
            if flag not in text]


def check_builtin(command: Command) -> list[str]:
    known = subprocess.run(["bash", "-c", f"type {command.words[0]}"], capture_output=True,
                           check=False)
    return [] if known.returncode == 0 else [f"bash does not know {command.words[0]}"]


def check_ssh_keygen(command: Command) -> list[str]:
    usage = subprocess.run(["ssh-keygen", "-?"], capture_output=True, text=True, check=False)
    text = usage.stdout + usage.stderr
    if "usage: ssh-keygen" not in text:
        return ["ssh-keygen is not installed or printed no usage"]
    used = [w for w in command.words[1:] if re.fullmatch(r"-[A-Za-z]", w)]
    return [f"ssh-keygen: unknown flag {flag}" for flag in used
            if not re.search(rf"\[{flag}[ \]]", text)]


def check_help(command: Command) -> list[str]:
    script = ROOT / command.words[1]
    if not script.is_file():
        return [f"{command.words[1]} does not exist"]
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, check=False)
    if helped.returncode != 0 or "usage:" not in helped.stdout:
        return [f"{command.words[1]} --help failed: {helped.stderr.strip()[-200:]}"]
    return [f"{command.words[1]}: --help does not list {flag}"
            for flag in flags_of(command.words[2:]) if flag not in helped.stdout]


CHECKS: dict[str, Callable[[Command], list[str]]] = {
    "make": check_make,
    "gcloud": lambda c: against_reference("gcloud", c.words),
    "kubectl": lambda c: against_reference("kubectl", c.words),
    "pulumi": lambda c: against_reference("pulumi", c.words),
    "git": check_git,
    "printf": check_builtin,
    "read": check_builtin,
    "export": check_builtin,
    "cat": check_builtin,
    "ssh-keygen": check_ssh_keygen,
    "python": check_help,
}


class TestEveryCommandIsCovered:
    """No command escapes: each fence names its language, each shell command has a rule."""

    def test_fences_are_tagged(self) -> None:
        untagged = [f"{b.document}:{b.first_line - 1}" for d in DOCUMENTS for b in blocks(d)
                    if b.language not in (*SHELL, *OTHER_LANGUAGES)]
        assert not untagged, f"fences without a known language: {untagged}"

    def test_every_command_has_a_rule(self) -> None:
        commands = all_commands()
        assert len(commands) > 40  # the parser found the documents' commands
        orphans = [str(c) for c in commands if c.words[0] not in CHECKS
                   and not runs_in_session(c)]
        assert not orphans, f"commands with no rule in this test: {orphans}"

    def test_substitutions_are_quoted(self) -> None:
        """An unquoted $(...) splits on spaces; the docs quote every one."""
        bare = sorted({c.line for c in all_commands() if unquoted_substitution(c.line)})
        assert not bare, bare
        assert unquoted_substitution("git remote add x $(pulumi stack output y)")
        assert not unquoted_substitution('git remote add x "$(pulumi stack output y)"')


class TestCommandsNotRunHere:
    """Cloud, make and git commands are checked without running them (see the table)."""

    @pytest.mark.parametrize("tool", sorted(CHECKS))
    def test_commands(self, tool: str) -> None:
        commands = [c for c in all_commands() if c.words[0] == tool and not runs_in_session(c)]
        problems = [f"{c}: {problem}" for c in commands for problem in CHECKS[tool](c)]
        assert not problems, "\n".join(problems)

    def test_the_reference_catches_a_wrong_flag(self) -> None:
        made_up = parse("gcloud storage buckets create gs://x --versioned", "example")[0]
        assert against_reference("gcloud", made_up.words) == [
            f"gcloud storage buckets create: unknown flag --versioned ({RERUN})"]
        alias = parse("gcloud config get-value account", "example")[0]
        assert against_reference("gcloud", alias.words) == [
            "gcloud command not in the reference " f"({RERUN})"]


@pytest.fixture(scope="module")
def env_repo_with_history(tmp_path_factory: pytest.TempPathFactory) -> EnvRepoOnDisk:
    """hello delivered twice, so `--target -1` has somewhere to go."""
    tmp = tmp_path_factory.mktemp("docs-env")
    env = EnvRepoOnDisk(tmp / "env.git")
    for digest, build in ((DIGEST_A, "b-1"), (DIGEST_B, "b-2")):
        promoted(env, "hello", publish(env, tmp, "hello", digest, build=build), build)
    return env


def session_script(document: str) -> tuple[str, int]:
    """The document's runnable lines, in order, as one bash script; how many."""
    lines, count = ["set -euo pipefail", f"cd {ROOT}"], 0
    for block in blocks(document):
        if block.language not in SHELL:
            continue
        for number, line in block.lines:
            commands = parse(line, f"{document}:{number}")
            if commands and all(runs_in_session(c) for c in commands):
                lines += [f"echo '@@ {document}:{number}' >&2", line]
                count += 1
    return "\n".join(lines) + "\n", count


@pytest.fixture(scope="module")
def env_repo_with_environments(tmp_path_factory: pytest.TempPathFactory) -> EnvRepoOnDisk:
    """Staging then production recorded; hello delivered twice to staging (each success
    published to production's candidate) and once to production."""
    from conftest import image_ref, write_manifests
    from gitops.branches import init_branches
    from gitops.chain import ChainRequest, publish_to_next
    from gitops.environments import Environment
    from gitops.promote import PromoteRequest, promote
    from gitops.publish import PublishRequest
    from gitops.publish import publish as publish_manifests

    tmp = tmp_path_factory.mktemp("docs-environments")
    env = EnvRepoOnDisk(tmp / "env.git")
    staging = Environment("staging", "staging-candidate", "staging-production", "gitops",
                          "-staging")
    production = Environment("production", "production-candidate", "production-production",
                             "gitops-prod", approval=True)
    init_branches(env.url, environments=[staging, production])
    for digest, build in ((DIGEST_A, "b-1"), (DIGEST_B, "b-2")):
        folder = write_manifests(tmp / build, "hello", image_ref("hello", digest))
        commit = publish_manifests(PublishRequest(
            repo=env.url, app="hello", manifests=folder, branch=staging.candidate,
            images=(image_ref("hello", digest),), build_id=build)).commit
        staged = promote(PromoteRequest(repo=env.url, app="hello", commit=commit,
                                        source=staging.candidate, target=staging.production))
        chained = publish_to_next(ChainRequest(
            repo=env.url, app="hello", commit=commit, source=staging.candidate,
            environment="staging", production_commit=staged.commit,
            next_environment="production", next_branch=production.candidate))
        if build == "b-1":
            promote(PromoteRequest(repo=env.url, app="hello", commit=chained.commit,
                                   source=production.candidate, target=production.production))
    return env


class TestCommandsRunHere:
    """The operator commands run as written, in a shell that follows the page."""

    @pytest.mark.parametrize("document", ["docs/operations.md", "docs/quickstart.md",
                                          "docs/environments.md"])
    def test_document_session(self, document: str, request: pytest.FixtureRequest,
                              tmp_path: Path) -> None:
        env_repo_with_history: EnvRepoOnDisk = request.getfixturevalue(
            "env_repo_with_environments" if document == "docs/environments.md"
            else "env_repo_with_history")
        fake = tmp_path / "bin" / "pulumi"
        fake.parent.mkdir()
        fake.write_text('#!/bin/sh\ncase "$*" in\n'
                        f'  "stack output env_repo_url") echo "{env_repo_with_history.url}";;\n'
                        '  "config get gcp:project") echo acme-delivery-prod;;\n'
                        '  "config get gcp:region") echo europe-west1;;\n'
                        '  *) echo "pulumi $* is not faked" >&2; exit 99;;\nesac\n')
        fake.chmod(0o755)
        script, count = session_script(document)
        assert count >= 4, script
        env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path),
               "LANG": "C.UTF-8", "GIT_CONFIG_NOSYSTEM": "1"}
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              env=env, check=False, timeout=120)
        last = re.findall(r"@@ (\S+)", done.stderr)
        assert done.returncode == 0, (f"{last[-1] if last else document} failed:\n"
                                      f"{done.stderr[-1500:]}")
        assert len(last) == count
        assert "Traceback" not in done.stderr
        assert not re.search(r"\w+Warning\b", done.stderr), done.stderr  # no Python warnings
        if document == "docs/operations.md":
            assert "dry run, nothing started" in done.stdout
            assert "hello" in done.stdout
        if document == "docs/environments.md":
            assert "run trigger deliver-hello-staging" in done.stdout
            assert "awaiting approval" in done.stdout

