"""Commit messages: a one-line subject and git trailers that machines read.

Trailer keys: `App`, `Image` (one line per image: an app may build several), `Source-Repo`,
`Source-Commit`, `Build-Id`, and on production `Promoted-From` and `Rollback`. Git itself parses
them back (`%(trailers)` in `gitops.envrepo`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

TRAILER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


class Trailers(dict[str, str]):
    """Trailer values by key. As a dict: the first value of each key; `all(key)`: every value,
    in commit-message order (a key such as `Image` repeats, one line per value)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self._values: dict[str, tuple[str, ...]] = {}
        for key, value in pairs:
            self.setdefault(key, value)
            self._values[key] = (*self._values.get(key, ()), value)

    def all(self, key: str) -> tuple[str, ...]:
        return self._values.get(key, ())


def commit_message(subject: str, trailers: Sequence[tuple[str, str | None]]) -> str:
    """Subject, blank line, one `Key: value` line per trailer whose value is set."""
    lines = [f"{key}: {value}" for key, value in trailers if value]
    return f"{subject}\n\n" + "\n".join(lines) + "\n" if lines else f"{subject}\n"


def parse_trailer_lines(text: str) -> Trailers:
    """`Key: value` lines, as git prints them for `%(trailers:only,unfold)`."""
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and TRAILER_KEY.fullmatch(key):
            pairs.append((key, value.strip()))
    return Trailers(pairs)
