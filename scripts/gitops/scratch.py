"""Scratch folders that the next run sweeps when a run was killed before it could clean up.

A scratch folder is named `gitops-scratch.<host>.<pid>.<start>.<random>`: the host, the
process id and that process's start time (clock ticks since boot, from /proc; 0 where /proc is
not available). Before making one, a command removes the scratch folders in the same place
whose owner is gone: same host, same user, and no live process with that pid and start time.
Folders of live processes, of other hosts (a shared temporary folder) and of other users are
never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

PREFIX = "gitops-scratch"
NAME_RE = re.compile(rf"{PREFIX}\.(?P<host>[A-Za-z0-9_.-]+)\.(?P<pid>[0-9]+)\.(?P<start>[0-9]+)"
                     r"\.[A-Za-z0-9_]+")


@cache
def host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def process_start(pid: int) -> int | None:
    """The start time of process pid in clock ticks since boot; None when it does not exist.

    0 when the system has no /proc to ask (then only the pid is compared).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[19])  # field 22 of stat(5), counted after the command name


def owner_alive(pid: int, start: int) -> bool:
    now = process_start(pid)
    return now is not None and (now == start or 0 in (now, start))


def sweep(parent: Path) -> list[Path]:
    """Remove this host's and user's scratch folders in parent whose process is gone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = NAME_RE.fullmatch(entry.name)
        if match is None or match["host"] != host():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if not owner_alive(int(match["pid"]), int(match["start"])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def make(parent: Path | None = None) -> Path:
    """A new scratch folder in parent (default: the temporary folder), after a sweep."""
    where = Path(parent or tempfile.gettempdir())
    sweep(where)
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}.{host()}.{pid}.{process_start(pid) or 0}.",
                                 dir=where))


@contextmanager
def folder(parent: Path | None = None) -> Iterator[Path]:
    """A scratch folder for the duration of the block, removed afterwards."""
    path = make(parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
