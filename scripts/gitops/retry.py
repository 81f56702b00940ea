"""Retries of a push that lost a race, until a deadline, with jittered exponential back-off.

A rejection means another writer moved the branch first: back off, then rebuild on the new tip.

Design decisions:
- The budget is time, not a count (GITOPS_PUSH_DEADLINE seconds, default 300): how many
  attempts fit depends on how busy the repository is, and a build step has a time limit, not
  an attempt limit. No attempt starts after the deadline.
- The back-off unit is the duration of the attempt that just lost (at least GITOPS_PUSH_BACKOFF
  seconds, default 0.05): a slow remote or a busy machine widens the spread by itself. After
  the n-th loss the pause is uniform in [0, unit * 2**n] (full jitter), the factor capped at
  256 and the pause at 30 s. Writers that collided spread over a window that doubles until it
  holds them all, so most pushes land instead of colliding again: `benchmarks/contention.py`
  prints pushes per landed commit at 16, 64 and 128 concurrent writers.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gitops.errors import BadInput, OperationFailed
from gitops.settings import env_seconds

DEADLINE_ENV = "GITOPS_PUSH_DEADLINE"
BACKOFF_ENV = "GITOPS_PUSH_BACKOFF"
RETIRED_ATTEMPTS_ENV = "GITOPS_PUSH_ATTEMPTS"
DEFAULT_DEADLINE = 300.0
MAX_DEADLINE = 3600.0
DEFAULT_BACKOFF = 0.05
MAX_BACKOFF = 10.0

T = TypeVar("T")
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = DEFAULT_DEADLINE  # seconds from the first attempt; none starts after it
    backoff: float = DEFAULT_BACKOFF  # seconds; the smallest back-off unit
    growth_cap: int = 256  # the window is at most this many units
    max_pause: float = 30.0  # seconds

    @classmethod
    def from_env(cls) -> RetryPolicy:
        if RETIRED_ATTEMPTS_ENV in os.environ:
            raise BadInput(f"{RETIRED_ATTEMPTS_ENV} is no longer read: the retry budget is "
                           f"time, set {DEADLINE_ENV} (seconds) instead")
        return cls(deadline=env_seconds(DEADLINE_ENV, DEFAULT_DEADLINE, 0.1, MAX_DEADLINE),
                   backoff=env_seconds(BACKOFF_ENV, DEFAULT_BACKOFF, 0, MAX_BACKOFF))

    def window(self, losses: int, unit: float) -> float:
        """The longest pause after `losses` lost races whose last attempt took unit seconds."""
        factor: int = min(2 ** min(losses, 30), self.growth_cap)
        return min(self.max_pause, max(self.backoff, unit) * factor)


@dataclass(frozen=True)
class Landed(Generic[T]):
    """What an attempt produced, and how many attempts it took."""

    value: T
    attempts: int


def retry_push(attempt_once: Callable[[], T | None], policy: RetryPolicy | None = None,
               clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep
               ) -> Landed[T]:
    """Run attempt_once until it returns a value (None: lost the race) or the deadline passes.

    attempt_once fetches the branch tip, builds its commit on that tip and pushes it without
    force; any failure other than a lost race raises and is not retried.
    """
    policy = policy or RetryPolicy.from_env()
    start = clock()
    losses = 0
    while True:
        began = clock()
        result = attempt_once()
        if result is not None:
            return Landed(result, losses + 1)
        losses += 1
        now = clock()
        remaining = start + policy.deadline - now
        if remaining <= 0:
            raise OperationFailed(
                f"push lost the race {losses} times in {now - start:.0f}s "
                f"({DEADLINE_ENV}={policy.deadline:g}): other writers kept moving the branch")
        sleep(min(remaining, random.uniform(0, policy.window(losses, now - began))))
