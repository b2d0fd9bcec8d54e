"""The AMI session's reconnect policy (pure): how long to wait before the next attempt.

Exponential from ``initial`` to ``maximum`` with jitter in [delay/2, delay] (several bridges
reconnecting after one Asterisk restart spread out). A session that held for ``stable_s`` resets
it; one that keeps flapping (login, then dropped at once) keeps growing it instead of reconnecting
several times a second. While Asterisk refuses logins because it is shutting down (a restart:
refusals can last 15 s+), the delay is capped near one second so the bridge is back soon after it.
Randomness is an input, so the schedule is deterministic under test.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float
    maximum: float
    stable_s: float = 10.0
    jitter: Callable[[], float] = field(default=random.random)  # uniform in [0, 1)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.maximum > 0):
            raise ValueError("backoff delays must be positive")
        self.maximum = max(self.maximum, self.initial)

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more attempt."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 30))
        self.attempt += 1
        return ceiling * (0.5 + self.jitter() / 2)

    def session_ended(self, held_s: float) -> None:
        if held_s >= self.stable_s:
            self.attempt = 0

    def peer_restarting(self) -> None:
        """Asterisk refused the login while shutting down: keep retrying at <= ~1 s."""
        self.attempt = min(self.attempt, max(0, math.floor(math.log2(1.0 / self.initial))))
