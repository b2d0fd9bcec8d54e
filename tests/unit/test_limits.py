"""Rate limits, pure: a burst, then one request per refill interval; keys forgotten LRU."""

from __future__ import annotations

import pytest

from hotline_bridge.web.limits import RateLimiter, retry_after_header


def test_a_burst_then_the_refill_rate() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [None, None, None]
    wait = limiter.take("a", 0.0)
    assert wait == pytest.approx(0.5) and retry_after_header(wait) == "1"
    assert limiter.take("b", 0.0) is None  # another principal has its own bucket
    assert limiter.take("a", 0.5) is None  # refilled one token
    assert limiter.take("a", 0.5) is not None


def test_keys_are_bounded() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.take(key, 0.0)
    assert limiter.take("a", 0.0) is None  # "a" was forgotten: a fresh bucket


def test_a_limit_must_be_a_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate_per_s=0, burst=1)
