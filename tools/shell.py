"""Run the operator's CLIs (pulumi, gcloud, git) from the setup tools, standard library only.

Design decisions:
- The setup tools run before `.venv` exists (`make up` checks prerequisites before installing
  anything), so nothing here imports a third-party package.
- A missing executable is a result (code 127), not an exception: the caller turns it into the
  sentence that says what to install.
- Output is captured, never echoed: some commands print credentials
  (`gcloud auth application-default print-access-token`), and the callers decide what is safe
  to show.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MISSING = 127
TIMEOUT = 124


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def first_error_line(self) -> str:
        """The most telling line of stderr (or stdout), for a one-line explanation."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines()
                 if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or ["no output"])[0]


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120,
        cwd: str | None = None) -> Result:
    """Run argv; capture its output. Never raises for a missing program or a timeout."""
    merged = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=merged,
                              timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return Result(MISSING, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Result(TIMEOUT, "", f"{' '.join(argv[:3])} did not answer within {timeout:.0f}s")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_visible(argv: Sequence[str], *, cwd: str | None = None) -> int:
    """Run an interactive step (pulumi up/destroy) with the terminal attached; its exit code."""
    try:
        return subprocess.run(list(argv), cwd=cwd, check=False).returncode
    except FileNotFoundError:
        return MISSING
