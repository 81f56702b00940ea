"""How long a delivery build may wait for the app's Lease, roll out, and run in all: one setting.

Everything derives from `gitops:rolloutTimeout` (R), so the three can never drift apart:
- `deploy.py` holds the Lease while it applies and waits (at most R) and, when that fails, while
  it re-applies what `production` holds and waits again (at most R); a Lease left by a build that
  was killed expires after `2 R + 300 s` (the duration `deploy.py` writes into it).
- lock wait = that Lease duration: a waiting delivery outlasts a healthy holder and the Lease of
  a crashed one, so it only gives up (exit 1, Lease untouched) when something is really stuck.
- build timeout = lock wait + 2 R (its own apply and revert) + margin (pulling the steps image,
  the env repo fetch, cluster credentials, the promote push and its retries).

So lock wait + R + margin < build timeout, always: Cloud Build never kills a delivery that is
still waiting or rolling out, which would leave the Lease held and the cluster half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.config import ConfigError

LEASE_SLACK_SECONDS = 300  # deploy.py: Lease duration = 2 x rollout timeout + 300 s
MARGIN_SECONDS = 300
MAX_BUILD_TIMEOUT_SECONDS = 24 * 3600  # Cloud Build's longest build timeout
DURATION = re.compile(r"^([1-9][0-9]*)s$")


@dataclass(frozen=True)
class DeliveryTiming:
    """The delivery's three durations, in seconds, from its rollout timeout."""

    rollout: int

    @classmethod
    def from_setting(cls, rollout_timeout: str) -> DeliveryTiming:
        match = DURATION.match(rollout_timeout)
        if not match:
            raise ConfigError(f"config gitops:rolloutTimeout must be seconds like 300s, not "
                              f"{rollout_timeout!r}")
        timing = cls(int(match.group(1)))
        if timing.build_timeout > MAX_BUILD_TIMEOUT_SECONDS:
            longest = (MAX_BUILD_TIMEOUT_SECONDS - LEASE_SLACK_SECONDS - MARGIN_SECONDS) // 4
            raise ConfigError(f"config gitops:rolloutTimeout {rollout_timeout} makes the "
                              f"delivery build timeout {timing.build_timeout}s, over Cloud "
                              f"Build's {MAX_BUILD_TIMEOUT_SECONDS}s: set it to at most "
                              f"{longest}s")
        return timing

    @property
    def lease(self) -> int:
        return 2 * self.rollout + LEASE_SLACK_SECONDS

    @property
    def lock_wait(self) -> int:
        return self.lease

    @property
    def build_timeout(self) -> int:
        return self.lock_wait + 2 * self.rollout + MARGIN_SECONDS

    def substitutions(self) -> dict[str, str]:
        """What the delivery pipeline passes to deploy.py's --timeout and --lock-timeout."""
        return {"_ROLLOUT_TIMEOUT": f"{self.rollout}s", "_LOCK_TIMEOUT": f"{self.lock_wait}s"}
