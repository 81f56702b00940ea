"""Commit messages: a one-line subject and git trailers that machines read.

Trailer keys: `App`, `Image` (one line per image: an app may build several), `Provenance` (the
Cloud Build build whose verified provenance describes the images), `Source-Repo`,
`Source-Commit`, `Build-Id`, and on production `Promoted-From` and `Rollback`. Git itself parses
them back (`%(trailers)` in `gitops.envrepo`).

Design decisions:
- A message is refused when its subject or a value holds a control or line-break character,
  whoever checked the value before (values copied from an older commit included): one forged
  line break would add a trailer.
- Trailers are read back line by line at `\\n` only, as git writes them; Python's
  `str.splitlines` would also split at `\\v`, `\\x85` or U+2028 inside a value.
- A key may repeat (`Image`): read as a dict a commit's trailers give each key's first value,
  and `Trailers.all` every value in message order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gitops.checks import unsafe_char
from gitops.errors import BadInput

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
    for what, text in [("subject", subject), *trailers]:
        bad = unsafe_char(text or "")
        if bad is not None:
            raise BadInput(f"commit message {what} holds the control or line-break character "
                           f"U+{ord(bad):04X}: {text!r}")
    lines = [f"{key}: {value}" for key, value in trailers if value]
    return f"{subject}\n\n" + "\n".join(lines) + "\n" if lines else f"{subject}\n"


def parse_trailer_lines(text: str) -> Trailers:
    """`Key: value` lines, as git prints them for `%(trailers:only,unfold)`."""
    pairs = []
    for line in text.split("\n"):
        key, sep, value = line.partition(": ")
        if sep and TRAILER_KEY.fullmatch(key):
            pairs.append((key, value.strip()))
    return Trailers(pairs)
