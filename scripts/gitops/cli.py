"""Command-line conventions shared by every step script and operator command.

Every option that more than one command takes is defined once, in `SHARED`, and added to a
command's parser from there: the same option has the same meaning (and help) everywhere. In
particular `--from` and `--to` always name branches (the source and the target of a promotion).

A usage problem is one `error:` line and exit 2; `run` maps the library's errors to exit codes
and prints the result as the last line of stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from gitops.checks import printable
from gitops.credentials import redact
from gitops.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    BadInput,
    OperationFailed,
    one_line,
)
from gitops.signing import Signing

# name -> (flags, argparse keyword arguments)
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "repo": (("--repo",), {"required": True, "help": "env repo URL (anything git accepts)"}),
    "app": (("--app",), {"required": True, "help": "app name (a DNS label)"}),
    "app-filter": (("--app",), {"help": "only this app (a DNS label); default: every app"}),
    "commit": (("--commit",), {"required": True,
                               "help": "full SHA of the commit on the --from branch"}),
    "from": (("--from",), {"dest": "from_branch", "default": "candidate", "metavar": "BRANCH",
                           "help": "branch of attempts (default: candidate)"}),
    "to": (("--to",), {"dest": "to_branch", "default": "production", "metavar": "BRANCH",
                       "help": "branch of successes (default: production)"}),
    "branch": (("--branch",), {"default": "candidate",
                               "help": "branch this command writes (default: candidate)"}),
    "branches": (("--branch",), {"action": "append",
                                 "help": "branch this command writes (repeatable)"}),
    "build-id": (("--build-id",), {"help": "id of the build making the change (a trailer)"}),
    "json": (("--json",), {"action": "store_true", "help": "print JSON instead of a table"}),
    "allowed-signers": (("--allowed-signers",), {
        "metavar": "FILE",
        "help": "allowed_signers file to check commit signatures against (default: "
                "$GITOPS_ALLOWED_SIGNERS; neither: signatures are not checked)"}),
    "environment": (("--environment",), {
        "metavar": "NAME", "help": "delivery environment (default: the last one the env repo "
                                   "records, e.g. production), whose branches are used"}),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage problem as one `error:` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{self.prog}: {message}")


def command_parser(prog: str, description: str | None, *shared: str) -> ArgumentParser:
    """A parser with the named shared options; the command adds its own after them."""
    parser = ArgumentParser(prog=prog, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in shared:
        flags, options = SHARED[name]
        parser.add_argument(*flags, **options)
    return parser


def signing_from(allowed_signers_file: str | None) -> Signing:
    """Signing from the environment, with the allowed signers of the file when one is named."""
    signing = Signing.from_env()
    if allowed_signers_file is None:
        return signing
    try:
        text = Path(allowed_signers_file).read_text()
    except OSError as exc:
        raise BadInput(f"--allowed-signers {allowed_signers_file!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"--allowed-signers {allowed_signers_file!r}: not a text file") from None
    return signing.with_allowed_signers(text)


def run(main: Callable[[Sequence[str]], str], argv: Sequence[str]) -> int:
    """Run a command; print its result as the last stdout line, map errors to exit codes."""
    try:
        result = main(argv)
    except BadInput as exc:
        print(f"error: {printable(redact(str(exc)))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OperationFailed as exc:
        print(f"error: {printable(redact(one_line(str(exc))))}", file=sys.stderr)
        return EXIT_FAILED
    print(printable(result))
    return EXIT_OK


def log(message: str) -> None:
    """Progress for the build log (stdout, flushed: the last line stays the result)."""
    print(printable(message), flush=True)
