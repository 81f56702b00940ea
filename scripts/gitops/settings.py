"""Numeric settings from the environment and the command line, checked before anything runs.

A value is plain ASCII decimal (`float()` and `int()` also accept `٣`, `1e9`, `inf` and `nan`),
within bounds that keep every wait finite and below what a build may last (24 hours). A bad
value is `BadInput` naming the setting: exit 2, nothing changed.
"""

from __future__ import annotations

import os
import re

from gitops.errors import BadInput

DECIMAL_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
WHOLE_SECONDS_RE = re.compile(r"[0-9]{1,9}s")
DAY = 86_400
# Cloud Build's longest build is 24 h; a delivery's lock wait, rollout and revert fit in it.
MAX_ROLLOUT_TIMEOUT = 21_450
MAX_LOCK_TIMEOUT = DAY


def decimal(name: str, value: str, minimum: float, maximum: float) -> float:
    """value as a number in [minimum, maximum]; BadInput naming the setting otherwise."""
    if not DECIMAL_RE.fullmatch(value) or not minimum <= float(value) <= maximum:
        raise BadInput(f"{name} must be a number of seconds from {minimum:g} to {maximum:g} "
                       f"(ASCII digits), not {value!r}")
    return float(value)


def env_seconds(name: str, default: float, minimum: float, maximum: float) -> float:
    """The environment variable name as seconds, or default when unset."""
    value = os.environ.get(name)
    return default if value is None else decimal(name, value, minimum, maximum)


def whole_seconds(flag: str, value: str, maximum: int) -> int:
    """Whole seconds written like `300s`, from 1 to maximum."""
    if not WHOLE_SECONDS_RE.fullmatch(value) or not 1 <= int(value[:-1]) <= maximum:
        raise BadInput(f"{flag} {value!r} must be whole seconds like 300s (ASCII digits, "
                       f"1s to {maximum}s)")
    return int(value[:-1])
