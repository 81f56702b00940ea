"""The steps and preview images install every command and library their build steps call.

What is needed is derived from the sources: the steps each pipeline runs in an image (their
entrypoints and the commands of their shell scripts), the step scripts those steps start and
every local module they import (the commands they pass to subprocess, GitPython's git, the
auth plugin a GKE kubeconfig runs), the libraries they import, and for the preview the Pulumi
runtime and policy analyzer its project files name. What is installed is read from
scripts/Dockerfile: the base image, the packages of `apt-get install`, the venv and its
`pip install -r`, the files copied from other stages, and PATH.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conftest import ROOT
from dockerfile_model import Image, copy_sources, image, simple_commands

DOCKERFILE = ROOT / "scripts" / "Dockerfile"
SCRIPTS = ROOT / "scripts"
PIPELINE_FILES = [*sorted((ROOT / "pipelines").glob("*.yaml")),
                  *sorted(ROOT.glob("examples/*/cloudbuild.yaml"))]
IMAGE_DIR_IN_BUILD = "/gitops/scripts"

# What the base images ship, from their own Dockerfiles: google-cloud-cli's `-slim` variant
# (GoogleCloudPlatform/cloud-sdk-docker, debian_slim/Dockerfile) is Debian bookworm-slim with
# git, python3, python3-pip, curl and openssh-client (ssh-keygen, which signs and verifies
# commits) from apt, and gcloud (with gcloud.sh) from the google-cloud-cli package. The Pulumi
# CLI image's /pulumi/bin holds the files of the CLI release archive
# (pulumi/pulumi-docker-containers, docker/base).
DEBIAN_ESSENTIAL = {"sh", "bash", "cat", "echo", "test", "[", "printf", "mkdir", "rm", "cp",
                    "mv", "ls", "env", "sleep", "true", "false", "apt-get", "set"}
BASE_IMAGE_COMMANDS = {
    "gcr.io/google.com/cloudsdktool/google-cloud-cli": DEBIAN_ESSENTIAL | {
        "gcloud", "gcloud.sh", "git", "python3", "curl", "ssh-keygen"},
}
BASE_IMAGE_FILES = {
    "pulumi/pulumi-base": {
        "/pulumi/bin/pulumi", "/pulumi/bin/pulumi-language-python",
        "/pulumi/bin/pulumi-language-python-exec", "/pulumi/bin/pulumi-analyzer-policy",
        "/pulumi/bin/pulumi-analyzer-policy-python", "/pulumi/bin/pulumi-language-nodejs",
        "/pulumi/bin/pulumi-language-go", "/pulumi/bin/pulumi-language-dotnet",
        "/pulumi/bin/pulumi-resource-pulumi-nodejs", "/pulumi/bin/pulumi-resource-pulumi-python"},
}
# The executables each apt package installs (`dpkg -L` of the packages).
APT_PACKAGE_COMMANDS = {
    "kubectl": {"kubectl"},
    "google-cloud-cli-gke-gcloud-auth-plugin": {"gke-gcloud-auth-plugin"},
    "git": {"git"},
    "python3": {"python3"},
    "curl": {"curl"},
}
# Python modules that run a command themselves.
MODULE_COMMANDS = {"git": "git"}  # GitPython runs the git executable
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call", "execute"}
# GKE kubeconfigs authenticate through the auth plugin, which asks gcloud for a token.
IMPLIED = {"get-credentials": {"gke-gcloud-auth-plugin"}, "gke-gcloud-auth-plugin": {"gcloud"}}


def base_repository(reference: str) -> str:
    return reference.rsplit("@", 1)[0].rsplit(":", 1)[0] if "/" in reference else reference


# --- what the steps need ------------------------------------------------------------------


@dataclass
class Needs:
    commands: set[str] = field(default_factory=set)
    scripts: set[str] = field(default_factory=set)  # script paths inside the image


def pipeline_steps(substitution: str) -> Iterator[dict[str, Any]]:
    for path in PIPELINE_FILES:
        for step in yaml.safe_load(path.read_text())["steps"]:
            if step["name"] == f"${{{substitution}}}":
                yield step


def step_needs(step: dict[str, Any]) -> Needs:
    """Commands a step runs and step scripts it starts (the images set no ENTRYPOINT)."""
    args = [str(a) for a in step.get("args", [])]
    entrypoint = step.get("entrypoint") or args.pop(0)
    needs = Needs(commands={entrypoint})
    command_lines: list[list[str]] = [[entrypoint, *args]]
    if entrypoint in ("bash", "sh") and args[:1] == ["-c"]:
        # Cloud Build turns `$$` into `$` before the shell sees the script.
        command_lines = simple_commands(args[1].replace("$$", "$"))
    for words in command_lines:
        if "/" not in words[0]:  # ./.venv/bin/python and the like are made by the step itself
            needs.commands.add(words[0])
        if words[0].startswith("python"):
            needs.scripts |= {w for w in words[1:] if w.startswith(IMAGE_DIR_IN_BUILD)}
    return needs


def local_module(name: str) -> Path | None:
    top = SCRIPTS / name.replace(".", "/")
    for candidate in (top.with_suffix(".py"), top / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def script_closure(entries: set[Path]) -> set[Path]:
    """The entry scripts and every local module they import, anywhere in their code."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            module = local_module(name)
            if module is not None:
                todo.append(module)
    return seen


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def script_commands(path: Path) -> set[str]:
    """Executables a script starts: `subprocess.run(["kubectl", ...])` and the like."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in SUBPROCESS_CALLS and isinstance(first, ast.List | ast.Tuple) and first.elts:
            words = [e.value for e in first.elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if isinstance(first.elts[0], ast.Constant) and words:
                found.add(words[0])
                for word in words:
                    found |= IMPLIED.get(word, set())
    for module in imported_modules(path):
        if module in MODULE_COMMANDS:
            found.add(MODULE_COMMANDS[module])
    return found


def with_implied(commands: set[str]) -> set[str]:
    result = set(commands)
    while True:
        more = {i for c in result for i in IMPLIED.get(c, set())} - result
        if not more:
            return result
        result |= more


@cache
def steps_image_needs() -> tuple[frozenset[str], frozenset[Path]]:
    """(commands, script files) of every step that runs in the steps image."""
    commands: set[str] = set()
    entries: set[Path] = set()
    for step in pipeline_steps("_STEPS_IMAGE"):
        needs = step_needs(step)
        commands |= needs.commands
        for script in needs.scripts:
            local = SCRIPTS / PurePosixPath(script).relative_to(IMAGE_DIR_IN_BUILD)
            assert local.is_file(), f"a step runs {script}, which scripts/ does not hold"
            entries.add(local)
    modules = script_closure(entries)
    for module in modules:
        commands |= script_commands(module)
    return frozenset(with_implied(commands)), frozenset(modules)


def kubeconfig_commands() -> set[str]:
    """The exec plugins of the kubeconfig the program builds (components/cluster.py)."""
    from components.cluster import KUBECONFIG

    config = yaml.safe_load(KUBECONFIG.format(context="c", endpoint="e", ca="a"))
    return {u["user"]["exec"]["command"] for u in config["users"] if "exec" in u["user"]}


def preview_image_needs() -> set[str]:
    commands: set[str] = set()
    for step in pipeline_steps("_PREVIEW_IMAGE"):
        commands |= step_needs(step).commands
    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]["name"]
    policy = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    commands |= {f"pulumi-language-{runtime}",
                 f"pulumi-analyzer-policy-{policy['runtime']['name']}"}
    return with_implied(commands | kubeconfig_commands())


@cache
def distribution_of(module: str) -> str | None:
    """The installed distribution that provides an imported module (None: stdlib or local)."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or local_module(top) is not None:
        return None
    candidates = installed_distributions().get(top, [])
    if len(candidates) == 1:
        return candidates[0]
    try:
        spec = importlib.util.find_spec(module) if module != top else None
    except ModuleNotFoundError:  # `from package.module import Name`: Name is no module
        return distribution_of(module.rsplit(".", 1)[0])
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    for name in candidates:
        files = distribution(name).files or []
        if origin and any(Path(str(f.locate())).resolve() == origin for f in files):
            return name
    return None


@cache
def installed_distributions() -> dict[str, list[str]]:
    return packages_distributions()


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def libraries_needed(modules: frozenset[Path]) -> set[str]:
    needed = set()
    for path in modules:
        for module in imported_modules(path):
            dist = distribution_of(module)
            if dist:
                needed.add(normalized(dist))
    return needed


# --- what an image installs ----------------------------------------------------------------


def apt_packages(img: Image) -> dict[str, str | None]:
    """`apt-get install` arguments: package -> pinned version (None: unpinned)."""
    packages: dict[str, str | None] = {}
    for words in img.runs:
        if words[:2] != ["apt-get", "install"]:
            continue
        skip = False
        for word in words[2:]:
            if skip:
                skip = False
            elif word in ("-o", "-t", "--target-release"):
                skip = True
            elif not word.startswith("-"):
                name, _, version = word.partition("=")
                packages[name] = version or None
    return packages


def venvs(img: Image) -> set[str]:
    """Folders made by `python -m venv`."""
    found = set()
    for words in img.runs:
        if len(words) >= 3 and words[0].startswith("python") and words[1:3] == ["-m", "venv"]:
            found.add(next(w for w in words[3:] if not w.startswith("-")))
    return found


def pip_requirement_files(img: Image) -> dict[str, str]:
    """Requirement files installed with `pip install -r`: image path -> installing python."""
    files = {}
    for words in img.runs:
        if len(words) >= 4 and words[1:4] == ["-m", "pip", "install"]:
            rest = words[4:]
        elif len(words) >= 2 and PurePosixPath(words[0]).name == "pip" \
                and words[1] == "install":
            rest = words[2:]
        else:
            continue
        for index, word in enumerate(rest):
            if word in ("-r", "--requirement") and index + 1 < len(rest):
                files[rest[index + 1]] = words[0]
            elif word.startswith("--requirement="):
                files[word.split("=", 1)[1]] = words[0]
    return files


def path_dirs(img: Image) -> list[str]:
    default = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return img.env.get("PATH", default).replace("$PATH", default).split(":")


def stage_copies(dockerfile: Path, target: str) -> list[tuple[str, str, str]]:
    """`COPY --from=STAGE SRC... DEST` of the target's chain: (stage, source, destination)."""
    from dockerfile_model import stages

    by_name = {s.name: s for s in stages(dockerfile)}
    chain, stage = [], by_name.get(target)
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    copies = []
    for stage in chain:
        for instruction, value in stage.instructions:
            words = value.split()
            origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if instruction == "COPY" and origin:
                paths = [w for w in words if not w.startswith("--")]
                copies += [(by_name[origin].base if origin in by_name else origin, src,
                            paths[-1]) for src in paths[:-1]]
    return copies


def installed_commands(dockerfile: Path, target: str) -> set[str]:
    img = image(dockerfile, target)
    on_path = path_dirs(img)
    commands = set(BASE_IMAGE_COMMANDS.get(base_repository(img.base_image), set()))
    for package in apt_packages(img):
        commands |= APT_PACKAGE_COMMANDS.get(package, set())
    for venv in venvs(img):
        if f"{venv}/bin" in on_path:
            commands |= {"python", "python3", "pip"}
    for base, source, destination in stage_copies(dockerfile, target):
        files = BASE_IMAGE_FILES.get(base_repository(base), set())
        for file in files:
            if fnmatch.fnmatch(file, source) and destination.rstrip("/") in on_path:
                commands.add(PurePosixPath(file).name)
    return commands


def requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalized(name)] = version
    return pins


# --- the checks ----------------------------------------------------------------------------


def missing_commands(dockerfile: Path) -> dict[str, set[str]]:
    steps_needed, _ = steps_image_needs()
    return {
        "steps": steps_needed - installed_commands(dockerfile, "steps"),
        "preview": preview_image_needs() - installed_commands(dockerfile, "preview"),
    }


def mutated(tmp_path: Path, old: str, new: str) -> Path:
    text = DOCKERFILE.read_text()
    assert old in text, old
    path = tmp_path / "Dockerfile"
    path.write_text(text.replace(old, new))
    return path


class TestStepsNeeds:
    """The derivation finds what the steps really call (so the checks below mean something)."""

    def test_commands_of_the_steps(self) -> None:
        commands, modules = steps_image_needs()
        assert {"python", "bash", "kubectl", "gcloud", "git",
                "gke-gcloud-auth-plugin"} <= commands
        assert {"render.py", "publish.py", "deploy.py", "promote.py"} <= {
            m.name for m in modules}

    def test_preview_needs_pulumi_and_the_kubeconfig_plugin(self) -> None:
        assert {"pulumi", "pulumi-language-python", "pulumi-analyzer-policy-python",
                "gke-gcloud-auth-plugin", "gcloud", "python", "python3"} <= preview_image_needs()

    def test_libraries_of_the_steps(self) -> None:
        _, modules = steps_image_needs()
        assert {"gitpython", "pyyaml", "kubernetes-validate"} <= libraries_needed(modules)


class TestInstalls:
    """scripts/Dockerfile installs each command and library, parsed from its instructions."""

    def test_every_command_is_installed(self) -> None:
        assert missing_commands(DOCKERFILE) == {"steps": set(), "preview": set()}

    def test_every_library_is_in_the_installed_requirements(self) -> None:
        img = image(DOCKERFILE, "steps")
        installed = pip_requirement_files(img)
        sources = copy_sources(img)
        assert installed, "no pip install -r"
        [(target, python)] = installed.items()
        assert sources[target] == "requirements.txt"
        assert PurePosixPath(python).parent.as_posix() in path_dirs(img), \
            "the pip that installs them belongs to the python on PATH"
        _, modules = steps_image_needs()
        missing = libraries_needed(modules) - set(requirements(SCRIPTS / "requirements.txt"))
        assert not missing

    def test_scripts_are_where_the_steps_run_them(self) -> None:
        assert copy_sources(image(DOCKERFILE, "steps"))[IMAGE_DIR_IN_BUILD] == "."

    def test_kubectl_removed_from_the_install_line_is_missing(self, tmp_path: Path) -> None:
        broken = mutated(tmp_path, "kubectl=1:502.0.0-0 ", "")
        assert missing_commands(broken)["steps"] == {"kubectl"}

    def test_a_comment_or_an_echo_installs_nothing(self, tmp_path: Path) -> None:
        broken = mutated(tmp_path, "RUN apt-get update \\\n",
                         "# kubectl is installed here\nRUN echo kubectl && apt-get update \\\n")
        text = broken.read_text().replace("kubectl=1:502.0.0-0 ", "")
        broken.write_text(text)
        assert "# kubectl is installed here" in text and "echo kubectl" in text
        assert missing_commands(broken)["steps"] == {"kubectl"}

    def test_plugin_missing_from_the_preview_is_found(self, tmp_path: Path) -> None:
        broken = mutated(tmp_path, "FROM steps AS preview",
                         "FROM gcr.io/google.com/cloudsdktool/google-cloud-cli:502.0.0-slim "
                         "AS preview")
        assert {"gke-gcloud-auth-plugin", "python"} <= missing_commands(broken)["preview"]

    def test_venv_off_path_is_missing_python(self, tmp_path: Path) -> None:
        broken = mutated(tmp_path, "ENV PATH=/opt/gitops/bin:$PATH ", "ENV ")
        assert "python" in missing_commands(broken)["steps"]


class TestPinned:
    """One tag always holds the same tools: every version the Dockerfile installs is fixed."""

    def test_apt_packages_pinned_to_the_base_release(self) -> None:
        img = image(DOCKERFILE, "steps")
        release = img.base_image.rsplit(":", 1)[1].split("-")[0]
        packages = apt_packages(img)
        assert packages, "no apt-get install found"
        for name, version in packages.items():
            assert version, f"{name} is not pinned"
            assert version.removeprefix("1:") == f"{release}-0", \
                f"{name}={version}: not the base image's gcloud release {release}"

    def test_base_images_pinned(self) -> None:
        for stage in ("steps", "preview"):
            base = image(DOCKERFILE, stage).base_image
            assert re.search(r":\d[\w.-]*$|@sha256:[0-9a-f]{64}$", base), base
        pulumi = [b for b, _, _ in stage_copies(DOCKERFILE, "preview")]
        pinned_sdk = requirements(ROOT / "requirements.txt")["pulumi"]
        assert pulumi and all(b.endswith(f":{pinned_sdk}") for b in pulumi), \
            "the Pulumi CLI matches the pinned Pulumi SDK"

    def test_unpinned_package_is_caught(self, tmp_path: Path) -> None:
        broken = mutated(tmp_path, "kubectl=1:502.0.0-0", "kubectl")
        assert apt_packages(image(broken, "steps"))["kubectl"] is None

    @pytest.mark.parametrize("path", [ROOT / "scripts" / "requirements.txt"],
                             ids=lambda p: p.name)
    def test_python_requirements_pinned(self, path: Path) -> None:
        assert all(requirements(path).values())
