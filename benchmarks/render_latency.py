"""render.py time per file, this checkout against a baseline revision of the scripts.

Both versions render the same folder of typical manifests (Deployments with comments and init
containers, Services, ConfigMaps, HPAs, CronJobs), measured two ways, interleaved so a busy
machine slows both alike:
- in-process: the entry script's `main` called repeatedly in one interpreter (what the tests
  call), median of the runs, divided by the number of files;
- fresh process: `python scripts/render.py ...` as a build step runs it, imports included.

Target (printed with the figures): the in-process time per file of this checkout stays within
2x of the baseline's. The same files built as one kustomization (`kubectl kustomize`, then the
same checks) are timed too, for information: the baseline cannot build them. The baseline
defaults to the last revision before render was rewritten for faithful pinning, kustomize and
custom resources; any revision the repository holds works.

Usage: python benchmarks/render_latency.py [--baseline REV] [--files 40] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "161401b12b457b13e79718b6481de44afc7243c8"
REF = "europe-west1-docker.pkg.dev/acme/apps/hello@sha256:" + "a" * 64

# Runs inside a fresh interpreter with one version's scripts folder first on sys.path.
HARNESS = """
import contextlib, io, json, shutil, statistics, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import importlib.util
spec = importlib.util.spec_from_file_location("render_entry", sys.argv[1] + "/render.py")
entry = importlib.util.module_from_spec(spec); spec.loader.exec_module(entry)
argv, out, runs = json.loads(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
samples = []
for run in range(runs + 1):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        entry.main([*argv, "--out", str(out)])
    if run:  # the first run warms caches (schemas, imports) and is not counted
        samples.append(time.perf_counter() - start)
print(json.dumps(statistics.median(samples)))
"""


def manifests(folder: Path, count: int) -> None:
    """count files of the kinds a typical app holds, each different, with comments."""
    folder.mkdir(parents=True)
    for n in range(count):
        kind = n % 5
        if kind == 0:
            text = (f"# Deployment {n}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
                    f"  name: web-{n}\n  labels:\n    app: web-{n}  # owner label\nspec:\n"
                    f"  replicas: 2\n  selector:\n    matchLabels:\n      app: web-{n}\n"
                    f"  template:\n    metadata:\n      labels:\n        app: web-{n}\n"
                    "    spec:\n      initContainers:\n        - name: migrate\n"
                    "          image: hello:1.0\n          command: [\"/migrate\"]\n"
                    "      containers:\n        - name: web\n          image: \"hello\"\n"
                    "          ports:\n            - containerPort: 8080\n"
                    "          resources:\n            requests: {cpu: 100m, memory: 128Mi}\n"
                    "          env:\n            - name: MODE\n              value: \"prod\"\n"
                    "        - name: proxy\n          image: envoyproxy/envoy:v1.31.0\n")
        elif kind == 1:
            text = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: web-{n}\nspec:\n"
                    f"  selector:\n    app: web-{n}\n  ports:\n    - port: 80\n"
                    "      targetPort: 8080\n")
        elif kind == 2:
            text = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{n}\n"
                    "data:\n  LOG_LEVEL: info\n  FEATURES: 'a,b,c'\n")
        elif kind == 3:
            text = (f"apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n"
                    f"  name: web-{n}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n"
                    f"    kind: Deployment\n    name: web-{n}\n  minReplicas: 2\n"
                    "  maxReplicas: 6\n  metrics:\n    - type: Resource\n      resource:\n"
                    "        name: cpu\n        target: {type: Utilization, "
                    "averageUtilization: 70}\n")
        else:
            text = (f"apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: report-{n}\n"
                    "spec:\n  schedule: '*/5 * * * *'\n  jobTemplate:\n    spec:\n"
                    "      template:\n        spec:\n          restartPolicy: OnFailure\n"
                    "          containers:\n            - name: report\n"
                    "              image: hello\n")
        (folder / f"m{n:03d}.yaml").write_text(text)


def baseline_scripts(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "scripts"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "scripts"


def arguments(scripts: Path, templates: Path) -> list[str]:
    """The render arguments that version accepts (`--app` arrived with namespace checks)."""
    argv = ["--templates", str(templates), "--image", f"hello={REF}"]
    usage = subprocess.run([sys.executable, str(scripts / "render.py"), "--help"],
                           capture_output=True, text=True).stdout
    return argv + (["--app", "hello"] if "--app" in usage else [])


def in_process(scripts: Path, argv: list[str], out: Path, runs: int) -> float:
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(scripts), json.dumps(argv),
                           str(out), str(runs)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: render failed in {scripts}:\n{proc.stderr}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1]))


def fresh_process(scripts: Path, argv: list[str], out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(scripts / "render.py"), *argv, "--out", str(out)],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitops-render-bench-") as tmp:
        scratch = Path(tmp)
        templates = scratch / "templates"
        manifests(templates, args.files)
        kustomized = scratch / "kustomized"
        shutil.copytree(templates, kustomized)
        (kustomized / "kustomization.yaml").write_text(
            "resources:\n" + "".join(f"  - {p.name}\n" for p in sorted(templates.iterdir())))
        versions = {"baseline": baseline_scripts(args.baseline, scratch / "baseline"),
                    "this checkout": ROOT / "scripts",
                    "this checkout, as a kustomization": ROOT / "scripts"}
        argvs = {name: arguments(path, kustomized if "kustomization" in name else templates)
                 for name, path in versions.items()}
        warm: dict[str, list[float]] = {name: [] for name in versions}
        cold: dict[str, list[float]] = {name: [] for name in versions}
        for run in range(3):  # interleaved
            for name, scripts in versions.items():
                out = scratch / f"out-{run}-{name.replace(' ', '-').replace(',', '')}"
                warm[name].append(in_process(scripts, argvs[name], out, args.runs))
                cold[name].append(fresh_process(scripts, argvs[name], out.with_suffix(".c")))
    per_file = {name: statistics.median(v) * 1000 / args.files for name, v in warm.items()}
    fresh = {name: statistics.median(v) * 1000 for name, v in cold.items()}
    print(f"{args.files} files; baseline {args.baseline[:12]}; milliseconds")
    print("| version | in-process ms per file | fresh process ms (whole folder) |")
    print("|---|---:|---:|")
    for name in versions:
        print(f"| {name} | {per_file[name]:.2f} | {fresh[name]:.0f} |")
    ratio = per_file["this checkout"] / per_file["baseline"]
    ok = ratio <= 2
    print(f"{'PASS' if ok else 'FAIL'}  in-process time per file within 2x of the baseline "
          f"({ratio:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
