"""The two kinds of failure every command reports, and the exit codes they map to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Input the caller must fix; exit 2, nothing changed."""


class OperationFailed(Exception):
    """The input was fine but the operation could not complete; exit 1, nothing changed."""


def one_line(text: str) -> str:
    """Collapse any whitespace run (line breaks included) into one space."""
    return " ".join(text.split())
