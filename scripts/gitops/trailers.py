"""Commit messages: a one-line subject and git trailers that machines read.

Trailer keys: `App`, `Image`, `Provenance` (the Cloud Build build whose verified provenance
describes the image), `Source-Repo`, `Source-Commit`, `Build-Id`, and on production
`Promoted-From` and `Rollback`. Git itself parses them back (`%(trailers)` in `gitops.envrepo`).

Design decisions:
- A message is refused when its subject or a value holds a control or line-break character,
  whoever checked the value before (values copied from an older commit included): one forged
  line break would add a trailer.
- Trailers are read back line by line at `\\n` only, as git writes them; Python's
  `str.splitlines` would also split at `\\v`, `\\x85` or U+2028 inside a value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gitops.checks import unsafe_char
from gitops.errors import BadInput

TRAILER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def commit_message(subject: str, trailers: Sequence[tuple[str, str | None]]) -> str:
    """Subject, blank line, one `Key: value` line per trailer whose value is set."""
    for what, text in [("subject", subject), *trailers]:
        bad = unsafe_char(text or "")
        if bad is not None:
            raise BadInput(f"commit message {what} holds the control or line-break character "
                           f"U+{ord(bad):04X}: {text!r}")
    lines = [f"{key}: {value}" for key, value in trailers if value]
    return f"{subject}\n\n" + "\n".join(lines) + "\n" if lines else f"{subject}\n"


def parse_trailer_lines(text: str) -> dict[str, str]:
    """`Key: value` lines, as git prints them for `%(trailers:only,unfold)`, as a dict."""
    trailers: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(": ")
        if sep and TRAILER_KEY.fullmatch(key):
            trailers[key] = value.strip()
    return trailers
