"""What a manifests folder may hold, and what a manifest file may say, before it goes anywhere.

Checked by publish (the whole folder) and render (each file's YAML), so publish refuses at
least what render refuses.

Design decisions:
- The folder is walked without following anything out of it: a regular file is taken; a symlink
  is taken only when it resolves inside the folder (to a regular file, or to a folder that is
  not one of its own ancestors: no loops); a dangling symlink, a FIFO, a socket or a device is
  refused, never skipped. The files are read from their resolved paths, so what is committed
  is exactly what was checked.
- Names must be UTF-8 without control characters (they become git tree entries), and no part
  may be `.git` (git refuses such trees: `git fsck` reports `hasDotgit`).
- YAML is composed, not constructed, with libyaml (fast, nesting limited to 1000 levels), and
  refused when it has duplicate keys (render's YAML parser refuses them; kubectl would keep one
  silently), nests deeper than 128 levels (render's parser recurses), or when its aliases
  expand it beyond ten times its written size (an alias bomb, which every later reader would
  expand).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from gitops.checks import unsafe_char
from gitops.errors import BadInput

if TYPE_CHECKING:
    import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_DEPTH = 128
MAX_EXPANSION = 10  # expanded nodes per written node, beyond the first MIN_NODES
MIN_NODES = 10_000
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


def collect_files(folder: Path, skip_others: bool = False, what: str = "manifests folder"
                  ) -> dict[str, Path]:
    """Tree path -> regular file to read, for every manifest under folder (see the docstring).

    BadInput for anything that is not a regular .yaml/.yml file inside the folder; with
    skip_others (render's templates, which may sit beside other files), other names and `.git`
    folders are skipped, but a .yaml/.yml name that is not a regular file inside the folder,
    and a symlinked folder that leaves it, are still refused.
    """
    if not folder.is_dir():
        raise BadInput(f"{what} {str(folder)!r} does not exist")
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
            if skip_others and (entry.name.lower() == ".git" or not (
                    entry.name.endswith(MANIFEST_SUFFIXES) or stat.S_ISDIR(mode)
                    or (stat.S_ISLNK(mode) and os.path.isdir(entry.path)))):
                continue
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
        raise BadInput(f"{what} {str(folder)!r} holds no "
                       f"{'.yaml/.yml ' if skip_others else ''}files")
    return files


def check_manifest_text(text: str, source: str) -> None:
    """Valid YAML with no duplicate keys, no excessive nesting and no alias bomb."""
    import yaml  # here, not at the top: publish runs this while its first fetch is under way

    try:
        documents = yaml.compose_all(text, Loader=yaml.CSafeLoader)
        for index, node in enumerate(documents, start=1):
            if node is not None:
                check_node(node, f"{source}: document {index}")
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None


def check_node(top: yaml.Node, where: str) -> None:
    """Duplicate keys, depth and alias expansion of one composed document (iteratively)."""
    import yaml

    written = 0
    expanded: dict[int, int] = {}  # node id -> nodes it expands to
    stack: list[tuple[yaml.Node, int, bool]] = [(top, 1, False)]
    seen: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if done:
            parts = children(node)
            if any(id(child) not in expanded for child in parts):
                raise BadInput(f"{where}: an alias refers to a node that holds it "
                               f"(line {node.start_mark.line + 1}): refused")
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in parts)
            continue
        if id(node) in seen:
            continue  # an alias: counted once here, expanded through `expanded`
        seen.add(id(node))
        written += 1
        if depth > MAX_DEPTH:
            raise BadInput(f"{where}: nested deeper than {MAX_DEPTH} levels "
                           f"(line {node.start_mark.line + 1})")
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise BadInput(f"{where}: duplicate key {key.value!r} "
                                       f"(line {key.start_mark.line + 1})")
                    keys.add(key.value)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children(node))
    total = expanded[id(top)]
    if total > MIN_NODES and total > MAX_EXPANSION * written:
        raise BadInput(f"{where}: aliases expand {written} written YAML nodes to {total}: "
                       "refused as an alias bomb")


def children(node: yaml.Node) -> list[yaml.Node]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_folder_yaml(files: dict[str, Path], folder: Path) -> None:
    """Every file must be UTF-8 and pass check_manifest_text."""
    for name, path in files.items():
        source = f"{folder}/{name}"
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{source}: not UTF-8 text") from None
        check_manifest_text(text, source)
