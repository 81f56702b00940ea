"""Publish under contention: 16, 64 and 128 writers pushing to one env repo branch at once.

Each writer is its own process (as each app build is). All of them import what they need, wait
at a start line, then call the library's `publish` with a distinct change at the same moment,
with the retry policy the builds use (a deadline, GITOPS_PUSH_DEADLINE, and jittered
exponential back-off). Printed per writer count:

- landed / failed: publishes that returned a commit / that ran out of time;
- pushes per landed commit: every push tried by any writer (lost races included) over the
  commits landed; most pushes by one writer;
- p50 / p95 latency: from the start line to the publish returning, landed writers only;
- the branch afterwards holds exactly one new commit per landed writer (checked, not assumed).

Usage: python benchmarks/contention.py [--writers 16,64,128] [--deadline 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"

DRIVER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {scripts!r})
import git, yaml  # loaded before the start line: the race is what is measured
from gitops import envrepo
from gitops.errors import OperationFailed
from gitops.publish import PublishRequest, publish
pushes = []
real_push = envrepo.EnvRepo.push
def counted_push(self, *args):
    pushes.append(1)
    return real_push(self, *args)
envrepo.EnvRepo.push = counted_push
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
start = time.monotonic()
try:
    result = publish(PublishRequest(repo=sys.argv[3], app=sys.argv[4],
                                    manifests=Path(sys.argv[5]), build_id=sys.argv[6]))
    print(json.dumps({{"landed": True, "pushes": len(pushes),
                       "seconds": time.monotonic() - start}}))
except OperationFailed as exc:
    print(json.dumps({{"landed": False, "pushes": len(pushes), "error": str(exc),
                       "seconds": time.monotonic() - start}}))
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def manifests(folder: Path, app: str, n: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "configmap.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\ndata:\n  writer: '{n}'\n")
    return folder


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(writers: int, scratch: Path, env: dict[str, str]) -> dict[str, float]:
    work = scratch / f"w{writers}"
    repo = work / "env.git"
    git("init", "--quiet", "--bare", str(repo), cwd=scratch)
    subprocess.run([sys.executable, str(SCRIPTS / "init_branches.py"), "--repo", repo.as_uri()],
                   check=True, capture_output=True, env=env)
    root = git("rev-parse", "refs/heads/candidate", cwd=repo)
    go = work / "go"
    driver = DRIVER.format(scripts=str(SCRIPTS))
    procs = []
    for n in range(writers):
        app = f"app{n % 8}"
        folder = manifests(work / f"m{n}", app, n)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", driver, str(work / f"ready{n}"), str(go), repo.as_uri(), app,
             str(folder), f"bench-{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env))
    while len(list(work.glob("ready*"))) < writers:
        time.sleep(0.05)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a writer crashed: {err}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    landed = [r for r in results if r["landed"]]
    commits = git("rev-list", "--count", f"{root}..refs/heads/candidate", cwd=repo)
    if int(commits) != len(landed):
        raise SystemExit(f"{writers} writers: {len(landed)} landed but candidate gained "
                         f"{commits} commits")
    latencies = [r["seconds"] for r in landed]
    return {"writers": writers, "landed": len(landed), "failed": len(results) - len(landed),
            "pushes_per_landed": sum(r["pushes"] for r in results) / max(1, len(landed)),
            "max_pushes": max(r["pushes"] for r in results),
            "p50": statistics.median(latencies) if latencies else 0.0,
            "p95": percentile(latencies, 95) if latencies else 0.0,
            "wall": max(r["seconds"] for r in results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="16,64,128")
    parser.add_argument("--deadline", default="300", help="GITOPS_PUSH_DEADLINE, seconds")
    args = parser.parse_args()
    env = {**os.environ, "GITOPS_PUSH_DEADLINE": args.deadline}
    env.pop("GITOPS_PUSH_BACKOFF", None)  # the default back-off, as the builds run
    rows = []
    with tempfile.TemporaryDirectory(prefix="gitops-bench-") as tmp:
        for count in (int(w) for w in args.writers.split(",")):
            rows.append(run(count, Path(tmp), env))
            print(f"measured {count} writers", file=sys.stderr)
    print(f"concurrent publishes to one branch over file://, {os.cpu_count()} cores, "
          f"GITOPS_PUSH_DEADLINE={args.deadline}s; a failed writer ran out of time")
    print("| writers | landed | failed | pushes per landed commit | most pushes by one writer "
          "| p50 latency | p95 latency | all done after |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['writers']} | {row['landed']} | {row['failed']} | "
              f"{row['pushes_per_landed']:.2f} | {row['max_pushes']} | {row['p50']:.1f} s | "
              f"{row['p95']:.1f} s | {row['wall']:.1f} s |")
    return 1 if any(row["failed"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
