"""Shared fixtures: real git repositories on local disk and the step scripts run as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(ROOT))

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
REGISTRY = "europe-west1-docker.pkg.dev/acme-delivery/apps"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]


def run_script(name: str, *args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> Result:
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args],
                          capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_bad_input(result: Result, *fragments: str) -> None:
    """Exit 2, exactly one `error:` line on stderr naming what was wrong, nothing on stdout."""
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


class EnvRepoOnDisk:
    """A bare env repo whose every ref update is logged, so forced moves can be detected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        git("init", "--quiet", "--bare", str(path))
        git("config", "core.logAllRefUpdates", "always", cwd=path)

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def tip(self, branch: str) -> str | None:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                             cwd=self.path, capture_output=True, text=True)
        return out.stdout.strip() or None

    def log(self, branch: str, *paths: str) -> list[str]:
        out = git("rev-list", f"refs/heads/{branch}", "--", *paths, cwd=self.path)
        return out.split() if out else []

    def message(self, commit: str) -> str:
        return git("log", "-1", "--format=%B", commit, cwd=self.path)

    def subject(self, commit: str) -> str:
        return git("log", "-1", "--format=%s", commit, cwd=self.path)

    def files(self, ref: str, prefix: str = "") -> dict[str, str]:
        names = git("ls-tree", "-r", "--name-only", ref, *(["--", prefix] if prefix else []),
                    cwd=self.path).split()
        return {name: git("show", f"{ref}:{name}", cwd=self.path) for name in names}

    def snapshot(self) -> tuple[str, str]:
        """Every ref and every reachable object: equal snapshots mean nothing changed."""
        refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=self.path)
        objects = git("rev-list", "--objects", "--all", cwd=self.path)
        return refs, "\n".join(sorted(objects.splitlines()))

    def ref_updates(self, branch: str) -> list[tuple[str, str]]:
        """(old, new) of every update of the branch, from its reflog."""
        log = self.path / "logs" / "refs" / "heads" / branch
        if not log.exists():
            return []
        return [tuple(line.split()[:2]) for line in log.read_text().splitlines()]

    def assert_history_clean(self, branch: str) -> None:
        """Invariant 3: every update fast-forwards, no commit is empty, history is linear."""
        for old, new in self.ref_updates(branch):
            if set(old) != {"0"}:
                subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                               cwd=self.path, check=True)
        for commit in self.log(branch):
            parents = git("rev-list", "--parents", "-n1", commit, cwd=self.path).split()[1:]
            assert len(parents) <= 1, f"merge commit {commit}"
            tree = git("rev-parse", f"{commit}^{{tree}}", cwd=self.path)
            parent_tree = (git("rev-parse", f"{parents[0]}^{{tree}}", cwd=self.path)
                           if parents else "")
            assert tree != parent_tree, f"empty commit {commit} on {branch}"


@pytest.fixture
def env_repo(tmp_path: Path) -> EnvRepoOnDisk:
    return EnvRepoOnDisk(tmp_path / "env.git")


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
spec:
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels:
        app: {app}
    spec:
      containers:
        - name: {app}
          image: {image}
"""


def write_manifests(folder: Path, app: str, image: str, extra: dict[str, str] | None = None
                    ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deployment.yaml").write_text(DEPLOYMENT.format(app=app, image=image))
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def image_ref(app: str, digest: str) -> str:
    return f"{REGISTRY}/{app}@{digest}"


def publish(env: EnvRepoOnDisk, tmp_path: Path, app: str, digest: str, build: str = "b-1",
            source_commit: str = "1" * 40, **env_vars: str) -> Result:
    image = image_ref(app, digest)
    folder = write_manifests(tmp_path / f"m-{app}-{digest[7:15]}-{build}", app, image)
    return run_script("publish", "--repo", env.url, "--app", app, "--manifests", str(folder),
                      "--image", image, "--source-repo", f"https://github.com/acme/{app}",
                      "--source-commit", source_commit, "--build-id", build, env=env_vars)


def promoted(env: EnvRepoOnDisk, app: str, commit: str, build: str) -> str:
    """Promote commit of app with promote.py; the new production tip (must succeed)."""
    result = run_script("promote", "--repo", env.url, "--app", app, "--commit", commit,
                        "--build-id", build)
    assert result.code == 0, result.stderr
    return result.last_line
