"""Publish one app's rendered manifests to a branch of the env repo (default `candidate`).

`apps/APP/` on the branch becomes exactly the given folder: files removed from the folder are
removed from the branch. One commit per call, with provenance trailers; identical content makes
no commit and prints the current tip. A rejected push is rebuilt on the new tip and retried.
"""

from __future__ import annotations

import sys

from prefetch import Prefetch

# Importing GitPython takes about as long as the shallow fetch: start the fetch first, so the
# two overlap (prefetch.py). Only when run as a script; importing this module starts nothing.
EARLY = Prefetch.start(sys.argv[1:], "candidate") if __name__ == "__main__" else None

import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from envrepo import (  # noqa: E402
    APPS_DIR,
    TREE_MODE,
    ArgumentParser,
    BadInput,
    OperationFailed,
    check_app,
    check_branch,
    check_image_ref,
    check_sha,
    check_trailer_value,
    commit_message,
    retry_push,
    run_main,
    scratch_repo,
    short_ref,
)

MANIFEST_SUFFIXES = (".yaml", ".yml")


def parse_args(argv: list[str]) -> ArgumentParser:
    parser = ArgumentParser(prog="publish.py", description=__doc__)
    parser.add_repo_and_app()
    parser.add_argument("--manifests", required=True, type=Path, help="folder of manifests")
    parser.add_argument("--branch", default="candidate")
    parser.add_argument("--source-repo", help="app repository the manifests came from")
    parser.add_argument("--source-commit", help="app commit the manifests came from")
    parser.add_argument("--image", help="image reference with @sha256: digest")
    parser.add_argument("--build-id", help="id of the build that publishes")
    return parser


def check_folder(folder: Path) -> list[Path]:
    """The folder must exist and hold only .yaml/.yml files."""
    if not folder.is_dir():
        raise BadInput(f"manifests folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise BadInput(f"manifests folder {str(folder)!r} holds no files")
    for path in files:
        if path.suffix not in MANIFEST_SUFFIXES:
            raise BadInput(f"{path}: not a .yaml/.yml manifest")
    return files


def check_yaml(files: list[Path]) -> None:
    """Every file must parse as YAML."""
    import yaml  # imported here: this check runs beside the fetch, off the critical path

    for path in files:
        try:
            list(yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None


class Background(threading.Thread):
    """Run a check in a thread while git talks to the remote; join() re-raises its error."""

    def __init__(self, check: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.check, self.error = check, None

    def run(self) -> None:
        try:
            self.check()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def main(argv: list[str], early: Prefetch | None = None) -> str:
    args = parse_args(argv).parse_args(argv)
    app = check_app(args.app)
    branch = check_branch(args.branch)
    if args.image:
        check_image_ref(args.image)
    if args.source_commit:
        check_sha(args.source_commit, "--source-commit")
    for key in ("source_repo", "build_id"):
        if getattr(args, key) is not None:
            check_trailer_value(f"--{key.replace('_', '-')}", getattr(args, key))
    files = check_folder(args.manifests)
    yaml_check = Background(lambda: check_yaml(files))
    yaml_check.start()

    short_image = short_ref(args.image) if args.image else "manifests"
    message = commit_message(
        f"Deploy {app}: {short_image}",
        [
            ("App", app),
            ("Image", args.image),
            ("Source-Repo", args.source_repo),
            ("Source-Commit", args.source_commit),
            ("Build-Id", args.build_id),
        ],
    )

    with scratch_repo(args.repo, early) as env:
        prefix = f"{APPS_DIR}/{app}"
        app_tree = env.folder_tree(args.manifests.resolve())

        def attempt_once() -> str | None:
            tip = env.fetch_branch(branch)
            base = env.root_tree(tip)
            tree = env.edit_tree(base, prefix, (app_tree, TREE_MODE))
            yaml_check.join()  # bad input must stop us before anything is pushed
            if tip is not None and tree == base:
                return tip  # identical content: no commit
            commit = env.commit(tree, tip, message)
            return commit if env.push(commit, branch) else None

        try:
            return retry_push(attempt_once)
        except OperationFailed:
            yaml_check.join()  # a bad manifest is the error worth reporting
            raise

if __name__ == "__main__":
    sys.exit(run_main(lambda: main(sys.argv[1:], EARLY)))
