"""The listener's connection table: total and per-peer caps, releases never go negative."""

from __future__ import annotations

import pytest

from hotline_bridge.web import guard
from hotline_bridge.web.guard import REFUSAL, ConnectionLimits, ConnectionTable, fit_descriptors


def test_per_peer_cap_refuses_that_peer_only() -> None:
    table = ConnectionTable(ConnectionLimits(max_total=10, max_per_peer=2))
    assert table.admit("10.0.0.9") and table.admit("10.0.0.9")
    assert not table.admit("10.0.0.9")
    assert table.admit("10.0.0.1")
    assert (table.total, table.refused, table.open_from("10.0.0.9")) == (3, 1, 2)


def test_total_cap_refuses_everyone_until_a_release() -> None:
    table = ConnectionTable(ConnectionLimits(max_total=3, max_per_peer=3))
    for peer in ("a", "b", "c"):
        assert table.admit(peer)
    assert not table.admit("d")
    table.release("b")
    assert table.admit("d")
    assert table.total == 3


def test_release_twice_or_unknown_never_goes_negative() -> None:
    table = ConnectionTable(ConnectionLimits(max_total=2, max_per_peer=2))
    assert table.admit("a")
    table.release("a")
    table.release("a")
    table.release("never-seen")
    assert (table.total, table.open_from("a")) == (0, 0)
    assert table.admit("a") and table.admit("a") and not table.admit("a")


def test_refusal_is_a_complete_503_with_an_error_body() -> None:
    head, _, body = REFUSAL.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"Connection: close" in head and b"Retry-After: 1" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b'"status": 503' in body


def test_caps_fit_under_the_open_files_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"soft": 256, "hard": 512}

    def get(_: int) -> tuple[int, int]:
        return limits["soft"], limits["hard"]

    def set_(_: int, value: tuple[int, int]) -> None:
        limits["soft"] = value[0]

    monkeypatch.setattr(guard.resource, "getrlimit", get)
    monkeypatch.setattr(guard.resource, "setrlimit", set_)
    # The soft limit is raised to what the caps need when the hard limit allows it...
    assert fit_descriptors(ConnectionLimits(300, 100)) == ConnectionLimits(300, 100)
    assert limits["soft"] == 300 + guard.FD_RESERVE
    # ...and the caps come down when it does not.
    assert fit_descriptors(ConnectionLimits(1024, 256)) == ConnectionLimits(
        512 - guard.FD_RESERVE, 256
    )
    assert limits["soft"] == 512
