"""What the replica tests share (test_replicas.py: two replicas of one PBX; test_cluster.py:
three replicas of three PBXes): replicas started and always stopped, the carry key pressed
through any replica, kill -9 of a replica and the wait for another to take over, and the proof
that a citizen was carried to 110 with their own number."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.sipp import SippProcess

from tests.pbx.test_carry_transfer import channels

T = TypeVar("T")


@contextmanager
def running(
    start: Callable[[str], RunningBridge], names: Iterable[str]
) -> Iterator[dict[str, RunningBridge]]:
    """Replicas ``start(name)``-ed in this order (the first claims first), all stopped after."""
    started: dict[str, RunningBridge] = {}
    try:
        for name in names:
            started[name] = start(name)
        yield started
    finally:
        for rb in started.values():
            rb.stop()


async def press_carry(via: RunningBridge, agent: str, token: str) -> str:
    """``agent``'s carry key to 110, pressed through replica ``via``: accepted (202); the
    transfer's path."""
    status, body = await via.request(
        "POST", f"/v1/agents/{agent}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    return f"/v1/transfers/{body['transfer_id']}"


async def kill_until(
    victim: RunningBridge, taken_over: Callable[[], Awaitable[T | None]], within: float = 20.0
) -> tuple[T, float]:
    """``kill -9`` the replica ``victim``, then poll ``taken_over`` until it names who took its
    place; that, and the seconds since the kill."""
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert victim.proc.wait(10) == -signal.SIGKILL
    while (found := await taken_over()) is None:
        assert time.monotonic() - killed < within, "nobody took over from the killed replica"
        await asyncio.sleep(0.05)
    return found, time.monotonic() - killed


def assert_number_at_desk(desk: SippProcess, number: str) -> None:
    """110 got one INVITE, with the citizen's own number in P-Asserted-Identity."""
    (invite,) = desk.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")


async def assert_talking_to_110(ami: AmiSession, desk: SippProcess, number: str) -> None:
    """The citizen (``number``) and 110 share one Asterisk bridge, after one INVITE at 110."""
    chans = await channels(ami)
    assert chans["PJSIP/carrier"]["CallerIDNum"] == number
    assert chans["PJSIP/carrier"]["BridgeId"] == chans["PJSIP/partner-110"]["BridgeId"]
    assert_number_at_desk(desk, number)
