"""Per-principal rate limits on the requests that change something (pure, clock injected).

A buggy softphone retry loop must not be able to ring the 110 duty line a hundred times, nor
bury the PBX in hotkeys: every mutating request takes a token from its principal's bucket
(``rate_per_s`` refilled continuously, ``burst`` at most), and an empty bucket answers 429 with
``Retry-After``. Named quotas bound particular actions over a longer window (work orders per
hour). Keys are bounded too: the least recently used principals are forgotten first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per key. ``take`` returns None (go ahead) or the seconds to wait."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_keys = max_keys

    def take(self, key: str, now: float) -> float | None:
        b = self._buckets.pop(key, None) or _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)
        b.at = now
        self._buckets[key] = b
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        return (1.0 - b.tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
