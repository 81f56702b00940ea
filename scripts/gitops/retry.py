"""Bounded retries of a push that lost a race, with full-jitter exponential back-off.

A rejection means another writer moved the branch first: back off, then rebuild on the new tip.
The number of attempts (GITOPS_PUSH_ATTEMPTS, default 40) and the back-off base
(GITOPS_PUSH_BACKOFF seconds, default 0.05; capped at 40 times the base) come from the
environment, so tests and busy repositories can tune them.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gitops.errors import BadInput, OperationFailed

ATTEMPTS_ENV = "GITOPS_PUSH_ATTEMPTS"
BACKOFF_ENV = "GITOPS_PUSH_BACKOFF"
DEFAULT_ATTEMPTS = 40
DEFAULT_BACKOFF = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = DEFAULT_ATTEMPTS
    backoff: float = DEFAULT_BACKOFF  # seconds; the n-th pause is at most backoff * 2**n

    @classmethod
    def from_env(cls) -> RetryPolicy:
        attempts = os.environ.get(ATTEMPTS_ENV, str(DEFAULT_ATTEMPTS))
        if not re.fullmatch(r"[0-9]+", attempts) or int(attempts) < 1:
            raise BadInput(f"{ATTEMPTS_ENV} must be a positive integer, not {attempts!r}")
        backoff = os.environ.get(BACKOFF_ENV, str(DEFAULT_BACKOFF))
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", backoff):
            raise BadInput(f"{BACKOFF_ENV} must be a number of seconds, not {backoff!r}")
        return cls(attempts=int(attempts), backoff=float(backoff))

    def pause(self, attempt: int) -> None:
        """Full jitter spreads writers that collided on the same tip."""
        time.sleep(random.uniform(0, min(40 * self.backoff, self.backoff * 2**attempt)))


@dataclass(frozen=True)
class Landed(Generic[T]):
    """What an attempt produced, and how many attempts it took."""

    value: T
    attempts: int


def retry_push(attempt_once: Callable[[], T | None], policy: RetryPolicy | None = None
               ) -> Landed[T]:
    """Run attempt_once until it returns a value (None: lost the race), at most policy.attempts.

    attempt_once fetches the branch tip, builds its commit on that tip and pushes it without
    force; any failure other than a lost race raises and is not retried.
    """
    policy = policy or RetryPolicy.from_env()
    for attempt in range(policy.attempts):
        result = attempt_once()
        if result is not None:
            return Landed(result, attempt + 1)
        if attempt + 1 < policy.attempts:
            policy.pause(attempt)
    raise OperationFailed(f"push rejected {policy.attempts} times: "
                          "other writers kept moving the branch")
