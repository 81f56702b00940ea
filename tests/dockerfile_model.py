"""What a Dockerfile builds, read the way Docker reads it: stages, their inheritance, the final
command, and the commands each RUN executes (parsed as shell, never searched as text).

`dockerfile-parse` splits the file into instructions (comments and line continuations handled);
`bashlex` parses each RUN's shell into simple commands, so `a && b || c; d` is four commands and
a word in a comment or in a quoted echo installs nothing.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import bashlex
from dockerfile_parse import DockerfileParser


@dataclass
class Stage:
    name: str
    base: str  # an image reference, or the name of an earlier stage
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Image:
    """The configuration a stage ends with, inherited through `FROM <stage>`."""

    base_image: str  # the external image the chain of stages starts from
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    runs: list[list[str]] = field(default_factory=list)  # simple commands, in order
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)

    @property
    def command(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def stages(path: Path) -> list[Stage]:
    parsed: list[Stage] = []
    for item in DockerfileParser(path=str(path)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(parsed))
            parsed.append(Stage(name=name, base=words[0]))
        elif instruction != "COMMENT" and parsed:
            parsed[-1].instructions.append((instruction, value))
    return parsed


def exec_form(value: str) -> list[str]:
    """CMD/ENTRYPOINT: the JSON (exec) form as is, the shell form through /bin/sh -c."""
    try:
        words = json.loads(value)
    except json.JSONDecodeError:
        return ["/bin/sh", "-c", value]
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), value
    return words


def expand(value: str, env: dict[str, str]) -> str:
    for key, val in sorted(env.items(), key=lambda kv: -len(kv[0])):
        value = value.replace(f"${{{key}}}", val).replace(f"${key}", val)
    return value


def parse_env(value: str) -> dict[str, str]:
    words = shlex.split(value)
    if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def simple_commands(script: str) -> list[list[str]]:
    """Every simple command a shell script runs, as its words (redirections left out)."""
    found: list[list[str]] = []

    class Visitor(bashlex.ast.nodevisitor):  # type: ignore[misc]
        def visitcommand(self, node: bashlex.ast.node, parts: list) -> None:
            words = [p.word for p in parts if p.kind == "word"]
            if words:
                found.append(words)

    for tree in bashlex.parse(script):
        Visitor().visit(tree)
    return found


def image(path: Path, target: str | None = None) -> Image:
    """The image `docker build --target=TARGET` makes (the last stage without a target)."""
    all_stages = stages(path)
    by_name = {s.name: s for s in all_stages}
    chain: list[Stage] = []
    stage: Stage | None = by_name[target] if target else all_stages[-1]
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    result = Image(base_image=chain[0].base)
    for stage in chain:
        for instruction, value in stage.instructions:
            if instruction == "ENV":
                result.env.update({k: expand(v, result.env)
                                   for k, v in parse_env(value).items()})
            elif instruction == "WORKDIR":
                result.workdir = str(Path(result.workdir) / expand(value, result.env))
            elif instruction == "USER":
                result.user = value.strip()
            elif instruction == "ENTRYPOINT":
                result.entrypoint, result.cmd = exec_form(value), []
            elif instruction == "CMD":
                result.cmd = exec_form(value)
            elif instruction == "RUN":
                result.runs += simple_commands(value)
            elif instruction == "COPY":
                words = [w for w in shlex.split(value) if not w.startswith("--")]
                result.copies.append((words[:-1], words[-1]))
    return result


def copy_sources(img: Image) -> dict[str, str]:
    """Destination file or folder in the image -> the build-context path it was copied from."""
    copied: dict[str, str] = {}
    for sources, destination in img.copies:
        for source in sources:
            copied[destination] = source
    return copied
