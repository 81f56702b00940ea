"""Start publish's first fetch before GitPython is imported, so the two overlap.

Importing GitPython takes about as long as a shallow fetch of the env repo, and publish is on
every app build's critical path. So publish.py, before its heavy imports, creates the scratch
repository and starts the same `git fetch` that `EnvRepo.fetch_branch` would run (arguments
from gitenv.fetch_args); `scratch_repo(url, early=...)` then adopts the repository and the
fetch's result. Nothing here changes the remote; bad input is still reported by the script's
own argument checks, and an unused prefetch is stopped and removed at exit.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile

from gitenv import fetch_args, git_environment, local_path_url

# Lean on purpose: every module imported here delays the fetch it starts.
BRANCH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-")


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    """The value of --name in argv (`--name V` or `--name=V`), else default."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


class Prefetch:
    """A scratch bare repository with a shallow fetch of one branch running in it."""

    def __init__(self, url: str, branch: str) -> None:
        self.url, self.branch = url, branch
        self.workdir = tempfile.mkdtemp(prefix="gitops-")
        env = {**os.environ, **git_environment(url)}
        subprocess.run(["git", "init", "--quiet", "--bare", "--template=", self.workdir],
                       env=env, check=True, capture_output=True)
        self.process: subprocess.Popen[str] | None = subprocess.Popen(
            ["git", *fetch_args(url, branch, depth=1, shallow=False)], cwd=self.workdir,
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        atexit.register(self.stop)
        atexit.register(remove, self.workdir)

    @classmethod
    def start(cls, argv: list[str], default_branch: str) -> Prefetch | None:
        """Start the fetch publish will need, when its arguments are plain enough to tell."""
        url = option(argv, "--repo")
        branch = option(argv, "--branch", default_branch)
        if not url or url.startswith("-") or not branch or not set(branch) <= BRANCH_CHARS:
            return None
        try:
            return cls(local_path_url(url), branch)
        except (OSError, subprocess.CalledProcessError):
            return None  # the normal path will report the problem

    def matches(self, url: str) -> bool:
        return url == self.url

    def wait(self) -> tuple[int, str]:
        """The fetch's exit code and stderr."""
        assert self.process is not None
        _, stderr = self.process.communicate()
        code = self.process.returncode
        self.process = None
        return code, stderr

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def remove(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
