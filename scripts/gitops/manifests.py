"""What a manifests folder may hold, and what a manifest file may say, before publish commits it.

Design decisions:
- The folder is walked without following anything out of it: a regular file is taken; a symlink
  is taken only when it resolves inside the folder (to a regular file, or to a folder that is
  not one of its own ancestors: no loops); a dangling symlink, a FIFO, a socket or a device is
  refused, never skipped. The files are read from their resolved paths, so what is committed
  is exactly what was checked.
- Names must be UTF-8 without control characters (they become git tree entries), and no part
  may be `.git` (git refuses such trees: `git fsck` reports `hasDotgit`).
- Each file is decoded and parsed by render's own reader (`gitops.manifest_text`), so publish
  refuses what render refuses: invalid UTF-8 or YAML, duplicate keys (kubectl would silently
  keep one), nesting deeper than its limit, and alias bombs (aliases expanding a document
  beyond its node limit, which every later reader would expand).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gitops.checks import unsafe_char
from gitops.errors import BadInput

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 10_000


def check_name(folder: Path, relative: str) -> None:
    """A tree entry name: UTF-8, printable, no `.git` part."""
    shown = relative.encode(errors="surrogateescape").decode(errors="replace")
    try:
        relative.encode()
    except UnicodeEncodeError:
        raise BadInput(f"{folder}: file name {shown!r} is not UTF-8") from None
    if unsafe_char(relative) is not None:
        raise BadInput(f"{folder}: file name {shown!r} holds a control character")
    if any(part.lower() == ".git" for part in relative.split("/")):
        raise BadInput(f"{folder}: {shown!r}: a .git folder or file cannot be published")


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def collect_files(folder: Path) -> dict[str, Path]:
    """Tree path -> regular file to read, for every manifest under folder (see the docstring).

    BadInput for anything that is not a regular .yaml/.yml file inside the folder.
    """
    if not folder.is_dir():
        raise BadInput(f"manifests folder {str(folder)!r} does not exist")
    root = os.path.realpath(folder)
    files: dict[str, Path] = {}
    # (real folder to list, its tree path, real folders on the way to it)
    pending: list[tuple[str, str, tuple[str, ...]]] = [(root, "", (root,))]
    while pending:
        real_dir, prefix, chain = pending.pop()
        for entry in sorted(os.scandir(real_dir), key=lambda e: e.name):
            relative = f"{prefix}{entry.name}"
            shown = f"{folder}/{relative}".encode(errors="surrogateescape").decode(
                errors="replace")
            mode = entry.stat(follow_symlinks=False).st_mode
            check_name(folder, relative)
            target = entry.path
            if stat.S_ISLNK(mode):
                target = os.path.realpath(entry.path)
                if not inside(target, root):
                    raise BadInput(f"{shown}: symlink to {target!r}, outside the manifests "
                                   "folder: not followed")
                try:
                    mode = os.stat(target).st_mode
                except OSError:
                    raise BadInput(f"{shown}: dangling symlink") from None
                if stat.S_ISDIR(mode) and any(inside(c, target) for c in chain):
                    raise BadInput(f"{shown}: symlink loop (points to {target!r}, which "
                                   "holds it): not followed")
            if stat.S_ISDIR(mode):
                pending.append((target, f"{relative}/", (*chain, target)))
            elif stat.S_ISREG(mode):
                if not relative.endswith(MANIFEST_SUFFIXES):
                    raise BadInput(f"{shown}: not a .yaml/.yml manifest")
                files[relative] = Path(target)
                if len(files) > MAX_FILES:
                    raise BadInput(f"{folder}: more than {MAX_FILES} files")
            else:
                raise BadInput(f"{shown}: not a regular file (a FIFO, socket or device): "
                               "refused")
    if not files:
        raise BadInput(f"manifests folder {str(folder)!r} holds no files")
    return files


def check_folder_yaml(files: dict[str, Path], folder: Path) -> None:
    """Every file must read as render reads a manifest (see the module docstring)."""
    from gitops.manifest_text import decode, parse  # loads YAML: while the first fetch runs

    for name, path in files.items():
        source = f"{folder}/{name}"
        parse(decode(path.read_bytes(), source).text, source)
