"""The sample app starts and answers its probes exactly as its Deployment runs it.

Everything comes from the app's own files: the command, working directory and environment from
the image stage its pipeline pushes (`examples/hello-app/Dockerfile`, target from
`cloudbuild.yaml`), the user, group, read-only root and writable mounts from the Deployment,
and the endpoints from its probes. The app runs as that user, in a root filesystem where only
the declared emptyDir mounts are writable, with the app's pinned dependencies from a venv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from dockerfile_model import Image, image

APP = ROOT / "examples" / "hello-app"
SANDBOX = Path(__file__).with_name("container_sandbox.py")
PUSHED_STAGE_FLAG = "--target="


def pushed_target() -> str:
    """The Dockerfile stage the app pipeline builds and pushes."""
    steps = yaml.safe_load((APP / "cloudbuild.yaml").read_text())["steps"]
    build = next(s for s in steps if s["id"] == "build")
    return next(a for a in build["args"] if a.startswith(PUSHED_STAGE_FLAG))[
        len(PUSHED_STAGE_FLAG):]


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted((APP / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def deployment() -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == "Deployment")


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def container_spec(img: Image) -> dict[str, Any]:
    """The sandbox spec: what the kubelet and the container runtime would do with the pod."""
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    writable = [m["mountPath"] for m in container.get("volumeMounts", [])
                if m["name"] in empty_dirs and not m.get("readOnly")]
    image_user, _, image_group = img.user.partition(":")
    venv = Path(sys.prefix)
    env = {**img.env, "HOME": "/",
           "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin"}
    probes = [{"name": name, "path": container[key]["httpGet"]["path"],
               "port": port_number(container, container[key]["httpGet"]["port"])}
              for name, key in (("readiness", "readinessProbe"), ("liveness", "livenessProbe"))]
    return {
        "command": img.command,
        "workdir": img.workdir,
        "env": env,
        "uid": int(security.get("runAsUser", image_user or 0)),
        "gid": int(security.get("runAsGroup", image_group or 0)),
        "read_only_root": bool(security.get("readOnlyRootFilesystem")),
        "writable": writable,
        # The image's Python with the app's dependencies: this venv (same pins, checked below).
        "binds": [[sys.base_prefix, sys.base_prefix], [str(venv), str(venv)],
                  [str(APP), img.workdir]],
        "probes": probes,
        "timeout": 8,
    }


def run_as_deployed(spec: dict[str, Any]) -> dict[str, Any]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is not installed: this test needs it to run the sample "
                    "app in a private mount namespace; install util-linux")
    proc = subprocess.run([unshare, "--mount", "--net", "--fork", sys.executable, str(SANDBOX),
                           json.dumps(spec)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"cannot build the container sandbox (needs root, or CAP_SYS_ADMIN, to "
                    f"create mount and network namespaces): {proc.stderr.strip()[-600:]}")
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def app_image() -> Image:
    return image(APP / "Dockerfile", pushed_target())


@pytest.fixture(scope="module")
def report(app_image: Image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scratch = tmp_path_factory.mktemp("container")
    return run_as_deployed({**container_spec(app_image), "scratch": str(scratch)})


class TestRunsAsDeployed:
    """Under its Deployment's security context the app starts, stays up and passes its probes."""

    def test_manifest_asks_for_a_locked_down_container(self, app_image: Image) -> None:
        spec = container_spec(app_image)
        assert spec["read_only_root"] and spec["uid"] != 0 and spec["gid"] != 0
        assert spec["command"] and spec["command"][0] == "gunicorn"

    @pytest.mark.mount_namespace
    def test_sandbox_is_read_only_except_the_declared_mounts(
            self, report: dict[str, Any], app_image: Image) -> None:
        spec = container_spec(app_image)
        assert report["writable"]["/"] is False
        assert report["writable"][spec["workdir"]] is False
        assert all(report["writable"][path] for path in spec["writable"]), report["writable"]

    @pytest.mark.mount_namespace
    def test_probes_pass_and_the_app_keeps_running(self, report: dict[str, Any]) -> None:
        assert report["exit_code"] is None, f"the app exited:\n{report['log']}"
        assert report["probes"] == {"readiness": 200, "liveness": 200}, report["log"]

    def test_venv_has_the_apps_pinned_dependencies(self) -> None:
        from importlib.metadata import version

        for line in (APP / "requirements.txt").read_text().splitlines():
            name, _, pinned = line.split("#")[0].strip().partition("==")
            if name:
                assert version(name) == pinned, f"{name}: venv {version(name)} != app {pinned}"

    def test_server_listens_where_the_probes_and_service_look(self, app_image: Image) -> None:
        container = deployment()["spec"]["template"]["spec"]["containers"][0]
        command = app_image.command
        bind = command[command.index("--bind") + 1]
        host, _, port = bind.rpartition(":")
        assert host in ("0.0.0.0", "[::]"), "kubelet probes the pod IP, not loopback"
        ports = {p["containerPort"] for p in container["ports"]}
        assert {int(port)} == ports
        service = next(d for d in documents() if d["kind"] == "Service")
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def replicas_an_hpa_owns(docs: list[dict[str, Any]]) -> list[str]:
    """Workloads that set `spec.replicas` while a HorizontalPodAutoscaler scales them."""
    targets = {(d["spec"]["scaleTargetRef"]["kind"], d["spec"]["scaleTargetRef"]["name"])
               for d in docs if d.get("kind") == "HorizontalPodAutoscaler"}
    return [f"{d['kind']}/{d['metadata']['name']}" for d in docs
            if (d.get("kind"), d.get("metadata", {}).get("name")) in targets
            and "replicas" in d.get("spec", {})]


class TestScaleOwnership:
    """Where an HPA owns a workload's scale, the manifests leave `replicas` out: otherwise every
    delivery (`kubectl apply`) resets the scale the HPA chose."""

    def test_sample_app_has_an_hpa_and_no_replicas(self) -> None:
        docs = documents()
        assert any(d["kind"] == "HorizontalPodAutoscaler" for d in docs)
        assert replicas_an_hpa_owns(docs) == []

    def test_the_check_finds_a_conflict(self) -> None:
        docs = documents()
        for doc in docs:
            if doc["kind"] == "Deployment":
                doc["spec"]["replicas"] = 2
        assert replicas_an_hpa_owns(docs) == ["Deployment/hello"]
