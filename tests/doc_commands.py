"""The shell commands of README.md and docs/*.md, as a reader would type them.

Every fenced block tagged `sh` (or `bash`) is read line by line: a trailing backslash joins
lines, `#` starts a comment, and each line is split into simple commands at `|`, `&&`, `||` and
`;`. Redirections and leading `NAME=value` assignments are set aside; a `$(...)` inside a word
is a command of its own. Other fences must name their language (`mermaid`, `yaml`, `text`,
`json`), so no command hides in an untagged block.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
SHELL = ("sh", "bash")
OTHER_LANGUAGES = ("mermaid", "yaml", "text", "json", "python")
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"|", "||", "&&", ";", "&"}
REDIRECTS = {">", ">>", "<", "2>", "2>&1", ">&", "&>"}
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
REFERENCE = json.loads((ROOT / "tests" / "data" / "cli-reference.json").read_text())
RERUN = "re-run tests/data/extract_cli_reference.py where gcloud and kubectl are installed"


@dataclass(frozen=True)
class Command:
    """One simple command: where it is, the line it is on, and its words."""

    where: str  # "docs/quickstart.md:42"
    line: str  # the whole logical line, as written
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.words)}"


@dataclass
class Block:
    document: str
    language: str
    first_line: int
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, logical line)


def blocks(document: str) -> Iterator[Block]:
    text = (ROOT / document).read_text()
    for match in FENCE.finditer(text):
        first = text.count("\n", 0, match.start()) + 2  # the line after the fence
        block = Block(document, match.group(1), first)
        pending, start = "", first
        for offset, raw in enumerate(match.group(2).splitlines()):
            if not pending:
                start = first + offset
            if raw.endswith("\\"):
                pending += raw[:-1] + " "
                continue
            logical = (pending + raw).strip()
            pending = ""
            if logical and not logical.startswith("#"):
                block.lines.append((start, logical))
        yield block


def split_line(line: str) -> list[list[str]]:
    """The simple commands of one logical line (words without redirections)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token in SEPARATORS:
            commands.append([])
        elif token in REDIRECTS or token.endswith(">"):
            skip_next = not token.endswith("&1")
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def commands_of(line: str, where: str) -> list[Command]:
    found = []
    for words in split_line(line):
        for word in words:
            for inner in SUBSTITUTION.findall(word):
                found.extend(commands_of(inner, where))
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if words:
            found.append(Command(where, line, tuple(words)))
    return found


def all_commands() -> list[Command]:
    found = []
    for document in DOCUMENTS:
        for block in blocks(document):
            if block.language not in SHELL:
                continue
            for number, line in block.lines:
                found.extend(commands_of(line, f"{document}:{number}"))
    return found


def flags_of(words: tuple[str, ...]) -> list[str]:
    return [word.split("=", 1)[0] for word in words if word.startswith("-") and word != "-"
            and not re.fullmatch(r"-\d+", word)]


def against_reference(tool: str, words: tuple[str, ...]) -> list[str]:
    """Problems of a cloud CLI command against the vendored reference."""
    reference = REFERENCE[tool]
    commands: dict[str, list[str]] = reference["commands"]
    positional = [w for i, w in enumerate(words[1:], 1) if not w.startswith("-")
                  and words[i - 1] not in ("-n", "--namespace", "--kubeconfig", "-m")]
    path = next((" ".join(positional[:n]) for n in range(len(positional), -1, -1)
                 if " ".join(positional[:n]) in commands), None)
    if path is None:
        return [f"{tool} command not in the reference ({RERUN})"]
    known = set(commands[path]) | set(reference["global_flags"])
    return [f"{tool} {path}: unknown flag {flag} ({RERUN})" for flag in flags_of(words)
            if flag not in known]
