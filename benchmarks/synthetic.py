"""Long env-repo histories made quickly with `git fast-import` (for tests and benchmarks)."""

from __future__ import annotations

import subprocess
from pathlib import Path

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def add_commits(repo: Path, branch: str, count: int, app: str = "filler") -> str:
    """Append count commits to branch of the bare repo at repo; each changes apps/<app>/."""
    parent = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                            cwd=repo, capture_output=True, text=True).stdout.strip()
    chunks: list[bytes] = []
    for n in range(count):
        message = f"Deploy {app}: synthetic {n}\n\nApp: {app}\nBuild-Id: synthetic-{n}\n".encode()
        content = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\n"
                   f"data:\n  n: '{n}'\n").encode()
        chunks.append(f"commit refs/heads/{branch}\n"
                      f"committer gitops-bot <gitops-bot@noreply.invalid> {EPOCH + n} +0000\n"
                      f"data {len(message)}\n".encode() + message)
        if n == 0 and parent:
            chunks.append(f"from {parent}\n".encode())
        chunks.append(f"M 100644 inline apps/{app}/configmap.yaml\ndata {len(content)}\n"
                      .encode() + content + b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(chunks),
                   check=True)
    return subprocess.run(["git", "rev-parse", f"refs/heads/{branch}"], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()
