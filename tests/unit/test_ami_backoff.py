"""The AMI reconnect policy, pure: exponential with jitter, reset only by a stable session,
capped near a second while Asterisk restarts."""

from __future__ import annotations

import pytest

from hotline_bridge.ami.backoff import Backoff


def delays(b: Backoff, n: int) -> list[float]:
    return [b.next_delay() for _ in range(n)]


def test_exponential_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    assert delays(Backoff(0.2, 5.0, jitter=lambda: 1.0), 7) == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    )
    assert delays(Backoff(0.2, 5.0, jitter=lambda: 0.0), 3) == pytest.approx([0.1, 0.2, 0.4])


def test_only_a_session_that_held_resets_it() -> None:
    b = Backoff(0.2, 5.0, stable_s=10.0, jitter=lambda: 1.0)
    delays(b, 4)
    b.session_ended(held_s=0.5)  # flapping: keeps growing
    assert b.next_delay() == pytest.approx(3.2)
    b.session_ended(held_s=10.0)
    assert b.next_delay() == pytest.approx(0.2)


def test_a_restarting_asterisk_is_retried_within_a_second() -> None:
    b = Backoff(0.05, 5.0, jitter=lambda: 1.0)
    delays(b, 10)
    b.peer_restarting()
    assert b.next_delay() <= 1.0


def test_bad_delays_are_refused_and_max_is_at_least_initial() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(0.0, 1.0)
    assert Backoff(2.0, 1.0).maximum == 2.0
