"""Manifest files as text: decoded, parsed with the position of every value, edited in place.

Design decisions:
- A file is bytes. It is decoded as UTF-8 without newline translation, so CRLF stays CRLF, and
  a byte-order mark is set aside and put back; the output is the input with only the edited
  spans replaced.
- YAML is read by libyaml (PyYAML's C parser) as events, which carry the character offsets of
  every scalar and alias. The nodes are composed here from those events, iteratively, so the
  offsets of aliases (`*name`) are kept too: an image value reached through an alias can be
  pinned at the anchor, or at the alias when the anchored value is also used elsewhere.
- Values are resolved as kubectl's YAML library (YAML 1.1) resolves them, with its
  exceptions: timestamps and sexagesimal numbers stay strings. Documents become JSON-like data
  (string keys, aliases expanded) that the validators read.
- JSON files are read by the standard library's JSON scanner with a hook that records where
  each string value sits; duplicate keys and NaN/Infinity are refused as the API server would.
- Every limit is explicit: nesting deeper than MAX_DEPTH and alias expansion beyond MAX_NODES
  are refused, never a stack overflow.
"""

from __future__ import annotations

import base64
import json
import json.decoder
import json.scanner
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from gitops.errors import BadInput, one_line

BOM = "\ufeff"
MAX_DEPTH = 100
MAX_NODES = 1_000_000  # after expanding aliases: kubectl refuses "excessive aliasing" too
CONTAINER_LISTS = frozenset({"initContainers", "containers", "ephemeralContainers"})
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Site:
    """Where a value's text is: the scalar itself, or an alias (`*name`) standing for it."""

    start: int
    end: int
    style: str  # "" plain, "'" or '"' quoted, "|" or ">" block, "*" an alias


@dataclass(frozen=True)
class Use:
    """One place a document uses a scalar: under an `image` key, or an anchored scalar."""

    node: int  # identity of the scalar: the same for the anchor and each alias of it
    value: str | None  # the string, or None for another type
    path: Path_
    image_key: bool  # the value of a key named `image`
    in_container: bool  # ... of an entry of containers, initContainers or ephemeralContainers
    site: Site


@dataclass
class Document:
    number: int  # 1-based, as the file shows them (empty documents count)
    data: Any  # JSON-like: dict, list, str, int, float, bool, None
    uses: list[Use] = field(default_factory=list)
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Decoded:
    text: str  # without the byte-order mark
    bom: str  # "" or BOM


def decode(data: bytes, source: str) -> Decoded:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source}: not UTF-8 text (byte {exc.start})") from None
    if text.startswith(BOM):
        return Decoded(text[1:], BOM)
    return Decoded(text, "")


def encode(text: str, decoded: Decoded) -> bytes:
    return (decoded.bom + text).encode("utf-8")


def apply_edits(text: str, edits: Iterable[tuple[Site, str]]) -> str:
    """text with each site replaced; sites never overlap (each is one scalar or alias)."""
    out, position = [], 0
    for site, replacement in sorted(edits, key=lambda e: e[0].start):
        if site.start < position:
            raise BadInput(f"overlapping edits at offset {site.start}")  # pragma: no cover
        out += [text[position:site.start], replacement]
        position = site.end
    out.append(text[position:])
    return "".join(out)


def scalar_text(value: str, site: Site, text: str) -> str:
    """value written in the style of the scalar it replaces (an alias becomes plain).

    A block scalar (`|`, `>`) becomes a double-quoted one followed by the line breaks that
    ended the block. `value` is an image reference: no quote, space or escape in it.
    """
    if site.style == "'":
        return f"'{value}'"
    if site.style == '"':
        return f'"{value}"'
    if site.style in ("|", ">"):
        original = text[site.start:site.end]
        return json.dumps(value) + original[len(original.rstrip()):]
    return value


def literal(value: str) -> str:
    """Any string as a YAML scalar that reads back as exactly that string."""
    return json.dumps(value, ensure_ascii=False)


# --- YAML ---------------------------------------------------------------------------------------


class _Constructor(SafeConstructor):
    """SafeConstructor resolving values as kubectl's YAML library does."""

    def keep_string(self, node: ScalarNode) -> Any:
        return self.construct_scalar(node)

    def int_unless_sexagesimal(self, node: ScalarNode) -> Any:
        value = self.construct_scalar(node)
        return value if ":" in value else self.construct_yaml_int(node)

    def float_unless_sexagesimal(self, node: ScalarNode) -> Any:
        value = self.construct_scalar(node)
        return value if ":" in value else self.construct_yaml_float(node)


# Dispatch is by tag through this table (methods overridden by name would not be called).
_Constructor.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:timestamp": _Constructor.keep_string,
    "tag:yaml.org,2002:int": _Constructor.int_unless_sexagesimal,
    "tag:yaml.org,2002:float": _Constructor.float_unless_sexagesimal,
    # `=` resolves to the YAML 1.1 value tag, which SafeConstructor does not know: a string.
    "tag:yaml.org,2002:value": _Constructor.keep_string,
}

_resolve = cast(Callable[[type[Node], "str | None", Any], str], Resolver().resolve)


def _span(node: ScalarNode, text: str) -> Site:
    """The scalar's own text, after any anchor (`&a`), tag (`!t`) and comment before it."""
    start, end = node.start_mark.index, node.end_mark.index
    if text[start:start + 1] in ("&", "!"):
        while start < end:
            char = text[start]
            if char in "&!":
                while start < end and not text[start].isspace():
                    start += 1
            elif char == "#":
                while start < end and text[start] not in "\r\n":
                    start += 1
            elif char.isspace():
                start += 1
            else:
                break
    return Site(start, end, node.style or "")


def _compose(text: str, source: str) -> Iterator[tuple[Node | None, dict[tuple[int, int], Site],
                                                       set[int], int, int]]:
    """(root, alias sites by (parent id, index), anchored scalar ids, start, end) per document.

    Composed from libyaml's events without recursion, keeping where each alias is.
    """
    root: Node | None = None
    anchors: dict[str, Node] = {}
    aliases: dict[tuple[int, int], Site] = {}
    anchored: set[int] = set()
    stack: list[Node] = []
    open_ids: set[int] = set()
    keys: list[Node | None] = []
    start = 0

    def add(node: Node, alias: Site | None) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if isinstance(parent, SequenceNode):
            if alias:
                aliases[(id(parent), len(parent.value))] = alias
            parent.value.append(node)
        elif keys[-1] is None:
            keys[-1] = node
        else:
            if alias:
                aliases[(id(parent), len(parent.value))] = alias
            parent.value.append((keys[-1], node))
            keys[-1] = None

    events: Iterator[Any] = yaml.parse(text, Loader=yaml.CSafeLoader)
    for event in events:
        # Dispatch on the exact class: libyaml's events are these classes, and an `Any` event
        # keeps its marks (always set by the parser) usable without narrowing.
        cls = event.__class__
        if cls is DocumentStartEvent:
            root, anchors, aliases, anchored = None, {}, {}, set()
            start = event.start_mark.index
        elif cls is DocumentEndEvent:
            yield root, aliases, anchored, start, event.end_mark.index
        elif cls is AliasEvent:
            target = anchors.get(str(event.anchor))
            if target is None:
                raise BadInput(f"{source}: line {event.start_mark.line + 1}: alias "
                               f"*{event.anchor} has no anchor before it")
            if id(target) in open_ids:
                raise BadInput(f"{source}: line {event.start_mark.line + 1}: alias "
                               f"*{event.anchor} refers to a collection that contains it")
            add(target, Site(event.start_mark.index, event.end_mark.index, "*"))
        elif cls is ScalarEvent:
            tag = event.tag if event.tag not in (None, "!") else \
                _resolve(ScalarNode, event.value, event.implicit)
            node: Node = ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                    style=event.style)
            if event.anchor is not None:
                anchors[event.anchor] = node
                anchored.add(id(node))
            add(node, None)
        elif cls in (SequenceStartEvent, MappingStartEvent):
            kind = SequenceNode if cls is SequenceStartEvent else MappingNode
            tag = event.tag if event.tag not in (None, "!") else \
                _resolve(kind, None, event.implicit)
            node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if event.anchor is not None:
                anchors[event.anchor] = node
            add(node, None)
            stack.append(node)
            open_ids.add(id(node))
            if cls is MappingStartEvent:
                keys.append(None)
        elif cls in (SequenceEndEvent, MappingEndEvent) and stack:
            node = stack.pop()
            open_ids.discard(id(node))
            node.end_mark = event.end_mark
            if isinstance(node, MappingNode):
                keys.pop()
            if len(stack) >= MAX_DEPTH:
                raise BadInput(f"{source}: nested deeper than {MAX_DEPTH} levels")


def expanded_size(root: Node) -> int:
    """How many nodes the document has once aliases are expanded, counted without expanding
    them (each node's size is computed once): a billion laughs is refused at once."""
    sizes: dict[int, int] = {}
    todo: list[tuple[Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        if id(node) in sizes:
            continue
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done or not children:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
        else:
            todo.append((node, True))
            todo += [(c, False) for c in children if id(c) not in sizes]
    return sizes[id(root)]


def _uses(root: Node, aliases: dict[tuple[int, int], Site], anchored: set[int], text: str,
          source: str, number: int) -> list[Use]:
    """Every use of a scalar under an `image` key or of an anchored scalar, aliases expanded."""
    if (anchored or aliases) and expanded_size(root) > MAX_NODES:
        raise BadInput(f"{source}: document {number}: more than {MAX_NODES:,} values "
                       "once aliases are expanded (excessive aliasing)")
    uses: list[Use] = []
    visits = 0
    checked: set[int] = set()
    # (node, path, under an image key, ... of a container entry, alias site, a container list,
    #  a container entry)
    todo: list[tuple[Node, Path_, bool, bool, Site | None, bool, bool]] = [
        (root, (), False, False, None, False, False)]
    while todo:
        node, path, image_key, in_container, alias, container_list, container = todo.pop()
        visits += 1
        if visits > MAX_NODES:
            raise BadInput(f"{source}: document {number}: more than {MAX_NODES:,} values "
                           "once aliases are expanded (excessive aliasing)")
        if isinstance(node, ScalarNode):
            if image_key or id(node) in anchored:
                value = node.value if node.tag == STR_TAG else None
                uses.append(Use(id(node), value, path, image_key, in_container,
                                alias or _span(node, text)))
        elif isinstance(node, SequenceNode):
            for index, child in enumerate(node.value):
                todo.append((child, (*path, index), False, False,
                             aliases.get((id(node), index)), False, container_list))
        elif isinstance(node, MappingNode):
            if id(node) not in checked:
                checked.add(id(node))
                _check_keys(node, source, number)
            own = {k.value for k, _ in node.value if k.tag != MERGE_TAG}
            for parent, index, key, child in _pairs(node, own, source, number):
                todo.append((child, (*path, key), key == "image", container,
                             aliases.get((id(parent), index)), key in CONTAINER_LISTS, False))
    return uses


def _pairs(node: MappingNode, own: set[str], source: str,
           number: int) -> Iterator[tuple[MappingNode, int, str, Node]]:
    """(mapping, index, key, value) of a mapping's own keys and of those merged in (`<<`)."""
    merged_seen = set(own)
    for index, (key, value) in enumerate(node.value):
        if key.tag != MERGE_TAG:
            yield node, index, str(key.value), value
            continue
        sources = value.value if isinstance(value, SequenceNode) else [value]
        for merged in sources:
            if not isinstance(merged, MappingNode):
                raise BadInput(f"{source}: document {number}: `<<` must merge mappings")
            for inner, (inner_key, inner_value) in enumerate(merged.value):
                if isinstance(inner_key, ScalarNode) and inner_key.value not in merged_seen:
                    merged_seen.add(inner_key.value)
                    yield merged, inner, str(inner_key.value), inner_value


def _check_keys(node: MappingNode, source: str, number: int) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, ScalarNode):
            hint = " (a template placeholder such as {{ ... }}? render takes plain manifests " \
                   "or a kustomization)" if isinstance(key, MappingNode) else ""
            raise BadInput(f"{source}: line {key.start_mark.line + 1}: a mapping key that is "
                           f"not a string{hint}")
        if key.tag == MERGE_TAG:
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            raise BadInput(f"{source}: line {key.start_mark.line + 1}: duplicate key "
                           f"{key.value!r}")
        seen.add(ident)


def parse_yaml(text: str, source: str) -> list[Document]:
    """The documents of a YAML stream, with their data and image uses."""
    documents: list[Document] = []
    constructor = _Constructor()
    try:
        for root, aliases, anchored, start, end in _compose(text, source):
            number = len(documents) + 1
            if root is None:
                documents.append(Document(number, None, [], start, end))
                continue
            uses = _uses(root, aliases, anchored, text, source, number)
            data = jsonlike(constructor.construct_document(root), source, number)
            documents.append(Document(number, data, uses, start, end))
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: invalid YAML: {_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply") from None
    return documents


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    hint = "; it looks like a template ({{ ... }}): render takes plain manifests or a " \
           "kustomization" if "{{" in text else ""
    return one_line(f"{problem}{where}{hint}")


def jsonlike(value: Any, source: str, number: int) -> Any:
    """value as JSON would hold it, aliases expanded: what kubectl sends to the API server."""
    if isinstance(value, dict):
        return {_key(k): jsonlike(v, source, number) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        items = sorted(value, key=str) if isinstance(value, set) else value
        return [jsonlike(v, source, number) for v in items]
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput(f"{source}: document {number}: {value} is not a JSON number")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


# --- JSON ---------------------------------------------------------------------------------------


class _Positioned(str):
    """A JSON string value that knows where its quoted text sits."""

    start: int
    end: int


def _json_decoder(source: str) -> json.JSONDecoder:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    decoder = json.JSONDecoder(object_pairs_hook=pairs, parse_constant=constant)

    def parse_string(text: str, end: int, strict: bool) -> tuple[str, int]:
        value, after = json.decoder.scanstring(text, end, strict)  # type: ignore[attr-defined]
        positioned = _Positioned(value)
        positioned.start, positioned.end = end - 1, after
        return positioned, after

    decoder.parse_string = parse_string  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


def parse_json(text: str, source: str) -> list[Document]:
    """The objects of a JSON file (one, or several in a row as kubectl accepts)."""
    decoder = _json_decoder(source)
    documents: list[Document] = []
    position = 0
    whitespace = " \t\r\n"
    try:
        while True:
            while position < len(text) and text[position] in whitespace:
                position += 1
            if position == len(text):
                break
            data, end = decoder.raw_decode(text, position)
            number = len(documents) + 1
            documents.append(Document(number, data, _json_uses(data, source, number),
                                      position, end))
            position = end
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BadInput(f"{source}: invalid JSON: {one_line(reason)}") from None
    if not documents:
        raise BadInput(f"{source}: empty JSON file")
    return documents


def _json_uses(data: Any, source: str, number: int) -> list[Use]:
    uses = []
    todo: list[tuple[Any, Path_, bool, bool]] = [(data, (), False, False)]
    while todo:
        value, path, container_list, container = todo.pop()
        if len(path) > MAX_DEPTH:
            raise BadInput(f"{source}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, child in value.items():
                if key == "image" and isinstance(child, _Positioned):
                    uses.append(Use(id(child), str(child), (*path, key), True, container,
                                    Site(child.start, child.end, '"')))
                else:
                    todo.append((child, (*path, key), key in CONTAINER_LISTS, False))
        elif isinstance(value, list):
            todo += [(child, (*path, i), False, container_list)
                     for i, child in enumerate(value)]
    return uses


def parse(text: str, source: str) -> list[Document]:
    return parse_json(text, source) if source.endswith(".json") else parse_yaml(text, source)
