"""Publish and promote latency against env repos with 100, 10,000 and 100,000 commits.

Measured side by side in one run, interleaved, median of several runs each:
- publish.py and promote.py as the builds run them (a fresh process each time);
- the seed tutorial's sequence: full clone, checkout, write, commit, push;
- the bare shallow git commands: init, fetch --depth 1, checkout, write, commit, push.

Targets (printed with the figures): at 100,000 commits publish is at least 10x faster than the
tutorial's sequence; from 100 to 100,000 commits its latency grows by less than 1.5x; it stays
within 4x of the bare shallow git commands.

Usage: python benchmarks/env_repo_latency.py [--runs 5] [--sizes 100,10000,100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from synthetic import add_commits

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
ENV = {**os.environ, **IDENTITY}


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def manifests(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deployment.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n"
        f"data:\n  build: '{tag}'\n")
    return folder


def measure(size: int, runs: int, scratch: Path) -> dict[str, float]:
    repo = scratch / f"env-{size}.git"
    sh("git", "init", "--quiet", "--bare", str(repo))
    add_commits(repo, "candidate", size)
    sh("git", "branch", "production", "candidate", cwd=repo)
    sh("git", "gc", "--quiet", cwd=repo)  # a served repo is packed
    url = repo.as_uri()
    python = sys.executable
    tag = f"{size}"

    def publish(run: int) -> None:
        folder = manifests(scratch / f"pub-{tag}-{run}", f"pub-{run}")
        sh(python, str(SCRIPTS / "publish.py"), "--repo", url, "--app", "hello",
           "--manifests", str(folder), "--build-id", f"bench-{run}")

    def promote(run: int) -> None:
        tip = sh("git", "rev-parse", "refs/heads/candidate", cwd=repo)
        sh(python, str(SCRIPTS / "promote.py"), "--repo", url, "--app", "hello",
           "--commit", tip, "--build-id", f"bench-{run}")

    def tutorial(run: int) -> None:
        work = scratch / f"tut-{tag}-{run}"
        sh("git", "clone", "--quiet", url, str(work))
        sh("git", "checkout", "--quiet", "candidate", cwd=work)
        manifests(work / "apps" / "hello", f"tut-{run}")
        sh("git", "add", "-A", cwd=work)
        sh("git", "commit", "--quiet", "-m", f"tutorial {run}", cwd=work)
        sh("git", "push", "--quiet", "origin", "candidate", cwd=work)
        shutil.rmtree(work)

    def shallow(run: int) -> None:
        work = scratch / f"sh-{tag}-{run}"
        sh("git", "init", "--quiet", str(work))
        sh("git", "fetch", "--quiet", "--depth", "1", url, "candidate", cwd=work)
        sh("git", "checkout", "--quiet", "-b", "candidate", "FETCH_HEAD", cwd=work)
        manifests(work / "apps" / "hello", f"sh-{run}")
        sh("git", "add", "-A", cwd=work)
        sh("git", "commit", "--quiet", "-m", f"shallow {run}", cwd=work)
        sh("git", "push", "--quiet", url, "candidate", cwd=work)
        shutil.rmtree(work)

    # Interleaved: each run times every sequence once, so a busy machine slows them alike.
    sequences: dict[str, Callable[[int], None]] = {
        "publish": publish, "tutorial": tutorial, "shallow git": shallow, "promote": promote}
    for action in sequences.values():
        action(runs + 100)  # one untimed warm-up run each
    samples: dict[str, list[float]] = {name: [] for name in sequences}
    for run in range(runs):
        for name, action in sequences.items():  # promote takes the tip the others moved
            start = time.perf_counter()
            action(run)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="100,10000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as tmp:
        for size in sizes:
            table[size] = measure(size, args.runs, Path(tmp))
            print(f"measured {size} commits", file=sys.stderr)

    columns = ["publish", "promote", "shallow git", "tutorial"]
    print(f"median of {args.runs} runs, milliseconds, env repo over file://")
    print("| commits | " + " | ".join(columns) + " | publish vs tutorial | publish / shallow |")
    print("|---:|" + "---:|" * (len(columns) + 2))
    for size, row in table.items():
        cells = " | ".join(f"{row[c] * 1000:.0f}" for c in columns)
        print(f"| {size:,} | {cells} | {versus(row['publish'], row['tutorial'])} | "
              f"{row['publish'] / row['shallow git']:.2f}x |")

    small, large = table[min(sizes)], table[max(sizes)]
    checks = [
        (f"publish >= 10x faster than the tutorial at {max(sizes):,} commits "
         f"({versus(large['publish'], large['tutorial'])})",
         large["tutorial"] / large["publish"] >= 10),
        (f"publish grows < 1.5x from {min(sizes):,} to {max(sizes):,} commits "
         f"({large['publish'] / small['publish']:.2f}x)",
         large["publish"] / small["publish"] < 1.5),
        ("publish within 4x of the bare shallow git commands (worst size: "
         f"{max(r['publish'] / r['shallow git'] for r in table.values()):.2f}x)",
         all(r["publish"] / r["shallow git"] <= 4 for r in table.values())),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    failed = [text for text, ok in checks if not ok]
    if failed:
        print(f"TARGETS MISSED: {len(failed)} of {len(checks)} failed (see FAIL above)")
        return 1
    print(f"all {len(checks)} targets met")
    return 0


def versus(ours: float, theirs: float) -> str:
    """`4.2x faster` or `1.7x slower`: never a ratio below 1 called faster."""
    if ours <= theirs:
        return f"{theirs / ours:.1f}x faster"
    return f"{ours / theirs:.1f}x slower"


if __name__ == "__main__":
    sys.exit(main())
