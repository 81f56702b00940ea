"""Run one command the way a Kubernetes container with a read-only root filesystem runs it.

Started as root inside fresh mount and network namespaces (`unshare --mount --net --fork`), with
a JSON spec as its only argument. It builds a small root filesystem on a tmpfs: the host's system
folders, the Python installation and the venv bound read-only at their own paths (so scripts'
shebangs resolve), the app folder bound read-only at the image's working directory, and one
fresh tmpfs for each writable mount the manifest declares. Nothing else is writable: the root
itself is remounted read-only. The command then runs chrooted there, as the manifest's user and
group with no supplementary groups and `no_new_privs`, and this process (still root, in the same
network namespace) calls the probes. It prints one JSON report on stdout.

Why a private root instead of a read-only bind of `/`: the checkout, the venv and the Python
installation may live under a folder the app's user cannot traverse (`/root`); binding them at
their own paths under a root of our own keeps the test independent of where it is checked out.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
PR_SET_NO_NEW_PRIVS = 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def loopback_up() -> None:
    """A new network namespace starts with `lo` down; the probes need it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def bind_read_only(root: Path, source: str, target: str) -> None:
    where = root / target.lstrip("/")
    if os.path.islink(source):
        where.parent.mkdir(parents=True, exist_ok=True)
        if not where.exists() and not where.is_symlink():
            where.symlink_to(os.readlink(source))
        return
    where.mkdir(parents=True, exist_ok=True)
    mount("--bind", source, str(where))
    mount("-o", "remount,bind,ro", str(where))


def mount_empty_dir(root: Path, path: str) -> None:
    """A declared writable mount (emptyDir): fresh, empty, world-writable as kubelet makes it."""
    where = root / path.lstrip("/")
    where.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "mode=777", "emptydir", str(where))


def build_root(spec: dict[str, Any]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="container-root-", dir=spec["scratch"]))
    mount("-t", "tmpfs", "-o", "mode=755", "rootfs", str(root))
    # Parents before children, as the runtime mounts them: an emptyDir at /tmp must not hide a
    # bind below it (the checkout and its venv may live under /tmp).
    mounts: list[tuple[str, Callable[[], None]]] = []
    for folder in SYSTEM_DIRS:
        if os.path.lexists(folder):
            mounts.append((folder, partial(bind_read_only, root, folder, folder)))
    for source, target in spec["binds"]:
        mounts.append((target, partial(bind_read_only, root, source, target)))
    for path in spec["writable"]:
        mounts.append((path, partial(mount_empty_dir, root, path)))
    for _, action in sorted(mounts, key=lambda m: len(Path(m[0]).parts)):
        action()
    (root / "dev").mkdir()
    mount("--bind", "/dev", str(root / "dev"))  # device nodes work on a read-only mount
    mount("-o", "remount,bind,ro", str(root / "dev"))
    (root / "proc").mkdir()
    mount("-t", "proc", "proc", str(root / "proc"))
    (root / spec["workdir"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    mount("-o", "remount,ro", str(root))
    return root


def become(spec: dict[str, Any], root: Path) -> None:
    """In a child: enter the root and drop to the container's user."""
    os.chroot(root)
    os.chdir(spec["workdir"])
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def writable_paths(spec: dict[str, Any], root: Path) -> dict[str, bool]:
    """Which folders the container's user can create a file in (proves the sandbox is real)."""
    probes = ["/", spec["workdir"], *spec["writable"]]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        result = {}
        try:
            become(spec, root)
            for folder in probes:
                try:
                    fd, name = tempfile.mkstemp(dir=folder)
                    os.close(fd)
                    os.unlink(name)
                    result[folder] = True
                except OSError:
                    result[folder] = False
        finally:
            os.write(write, json.dumps(result).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as stream:
        data = stream.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else {}


def start(spec: dict[str, Any], root: Path, log_path: Path) -> int:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            become(spec, root)
            os.execvpe(spec["command"][0], spec["command"], spec["env"])
        except BaseException as error:  # report why the container could not start
            os.write(log_fd, f"container start failed: {error!r}\n".encode())
        os._exit(127)
    os.close(log_fd)
    return pid


def get(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def call_probes(spec: dict[str, Any], pid: int) -> tuple[dict[str, int | None], int | None]:
    """Each probe in order, retried until it answers 2xx/3xx, the app exits, or time is up."""
    results: dict[str, int | None] = {}
    deadline = time.monotonic() + spec["timeout"]
    exit_code = None
    for probe in spec["probes"]:
        status = None
        while time.monotonic() < deadline:
            status = get(probe["port"], probe["path"])
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                exit_code = os.waitstatus_to_exitcode(code)
                break
            if status is not None and 200 <= status < 400:
                break
            time.sleep(0.1)
        results[probe["name"]] = status
        if exit_code is not None:
            break
    return results, exit_code


def stop(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGINT)  # gunicorn and most servers: quick shutdown
        for _ in range(30):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def main() -> None:
    spec = json.loads(sys.argv[1])
    loopback_up()
    root = build_root(spec)
    report: dict[str, Any] = {"writable": writable_paths(spec, root)}
    log_path = Path(spec["scratch"]) / "container.log"
    pid = start(spec, root, log_path)
    try:
        report["probes"], report["exit_code"] = call_probes(spec, pid)
        if report["exit_code"] is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            report["exit_code"] = os.waitstatus_to_exitcode(code) if done else None
    finally:
        if report.get("exit_code") is None:
            stop(pid)
    report["log"] = log_path.read_text(errors="replace")[-4000:]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
