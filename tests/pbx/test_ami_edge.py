"""The AMI edge against the real sandbox Asterisk (session fixture ``sandbox``).

Covers what a fake server cannot prove: Asterisk's own login/FullyBooted sequence, event ids of a
real call, reconnecting across ``core restart now``, and that a refused injection leaves the call
alone. Timings are printed (run with ``-s``) for the AMI-edge figures in the docs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hotline_bridge.ami import (
    AmiClient,
    AmiDisconnected,
    AmiError,
    AmiEvent,
    AmiFieldError,
    AmiState,
)
from tests.pbx.waiting import holds

pytestmark = pytest.mark.pbx


async def call_sandbox(func: Callable[..., Any], *args: Any) -> Any:
    """Run a fixture helper without blocking the loop the edge runs on."""
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    return await asyncio.to_thread(func, *args)


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def make_client(sandbox: Any, **kwargs: Any) -> AmiClient:
    ami = sandbox.topology["ami"]
    options: dict[str, Any] = {
        "action_timeout": 5.0,
        "ping_interval": 2.0,
        "ping_timeout": 2.0,
        "backoff_initial": 0.2,
        "backoff_max": 2.0,
    }
    options.update(kwargs)
    return AmiClient(ami["host"], int(ami["port"]), ami["username"], ami["secret"], **options)


@pytest.fixture
async def edge(sandbox: Any) -> AsyncIterator[AmiClient]:
    client = make_client(sandbox)
    await client.start()
    await client.wait_ready(15)
    yield client
    await client.close()


def citizen_local(sandbox: Any) -> str:
    number = sandbox.topology.get("citizens", {}).get("dial_number", "12345")
    return f"Local/{number}@hotline-citizens"


class Recorder:
    """Collects call events, keyed for lookups by Uniqueid."""

    def __init__(self) -> None:
        self.events: list[AmiEvent] = []

    def __call__(self, event: AmiEvent) -> None:
        if event.name in ("Newchannel", "Hangup"):
            self.events.append(event)

    def find(self, name: str, uniqueid: str) -> AmiEvent | None:
        for event in self.events:
            if event.name == name and event.get("Uniqueid") == uniqueid:
                return event
        return None


async def originate_test_call(edge: AmiClient, sandbox: Any, rec: Recorder) -> tuple[str, str]:
    """A Local call into the citizens' context; returns (Uniqueid, channel name) of its ;1 leg."""
    uid = f"hbtest-{uuid.uuid4().hex[:12]}"
    response = await edge.send(
        "Originate",
        {
            "Channel": citizen_local(sandbox),
            "Application": "Wait",
            "Data": 20,
            "Async": "true",
            "Timeout": 30000,
            # Our own Uniqueids make the call's events unambiguous.
            "ChannelId": uid,
            "OtherChannelId": f"{uid}-2",
        },
    )
    assert response.success
    await until(lambda: rec.find("Newchannel", uid) is not None)
    first = rec.find("Newchannel", uid)
    assert first is not None
    return uid, first.get("Channel")


async def channel_alive(edge: AmiClient, uniqueid: str) -> bool:
    channels = await edge.send_list("CoreShowChannels")
    return any(item.get("Uniqueid") == uniqueid for item in channels)


async def test_logs_in_reaches_ready_and_round_trips(edge: AmiClient) -> None:
    assert edge.state == AmiState.READY and edge.connected
    assert edge.version and edge.version[0].isdigit()
    rtts = []
    for _ in range(200):
        started = time.perf_counter()
        await edge.send("Ping")
        rtts.append((time.perf_counter() - started) * 1000)
    rtts.sort()
    p50, p99 = statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1]
    print(f"\nAMI Ping round trip: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    assert p50 < 20


async def test_originated_call_events_carry_matching_ids(sandbox: Any) -> None:
    # Filtered both ways: Login class mask (server side) and event names (client side).
    edge = make_client(sandbox, events=["Newchannel", "Hangup"], event_classes=["call"])
    names: set[str] = set()
    edge.subscribe(lambda ev: names.add(ev.name))
    await edge.start()
    await edge.wait_ready(15)
    try:
        await _originate_and_hang_up(edge, sandbox)
    finally:
        await edge.close()
    assert names == {"Newchannel", "Hangup"}
    assert edge.stats.events_dropped > 0  # e.g. Newstate, DialBegin: call class, not wanted


async def _originate_and_hang_up(edge: AmiClient, sandbox: Any) -> None:
    rec = Recorder()
    edge.subscribe(rec)
    uid, channel = await originate_test_call(edge, sandbox, rec)
    await until(lambda: rec.find("Newchannel", f"{uid}-2") is not None)
    one, two = rec.find("Newchannel", uid), rec.find("Newchannel", f"{uid}-2")
    assert one is not None and two is not None
    assert channel.startswith(citizen_local(sandbox) + "-") and channel.endswith(";1")
    assert two.get("Channel") == channel[:-1] + "2"
    # Both legs of the Local pair belong to one call: Linkedid is the first leg's Uniqueid.
    assert one.get("Linkedid") == two.get("Linkedid") == uid
    assert await channel_alive(edge, uid)
    await edge.send("Hangup", {"Channel": channel})
    await until(lambda: rec.find("Hangup", uid) is not None and rec.find("Hangup", f"{uid}-2"))
    hangup = rec.find("Hangup", uid)
    assert hangup is not None and hangup.get("Linkedid") == uid
    assert not await channel_alive(edge, uid)


async def test_injection_is_refused_and_the_call_survives(edge: AmiClient, sandbox: Any) -> None:
    rec = Recorder()
    edge.subscribe(rec)
    uid, channel = await originate_test_call(edge, sandbox, rec)
    sent_before = edge.stats.actions_sent
    payload = f"x\r\n\r\nAction: Hangup\r\nChannel: {channel}"
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("Setvar", {"Channel": channel, "Variable": "HANDOFF_ID", "Value": payload}),
        (
            "Setvar",
            {"Channel": channel, "Variable": f"HANDOFF_ID\nAction: Hangup\nChannel: {channel}"},
        ),
        ("Setvar", {f"Channel: {channel}\r\n\r\nAction: Hangup\r\nX": "y"}),
        (f"Ping\r\n\r\nAction: Hangup\r\nChannel: {channel}", {}),
        ("Originate", {"Channel": "Local/1@x", "Variable": ["A=1", f"B=2\u2028{payload}"]}),
    ]
    for action, fields in attempts:
        with pytest.raises(AmiFieldError):
            await edge.send(action, fields)
    assert edge.stats.actions_sent == sent_before  # nothing reached the socket
    await holds(lambda: rec.find("Hangup", uid) is None, "no injected Hangup ever ran", period=1.0)
    assert await channel_alive(edge, uid)
    status = await edge.send_list("Status", {"Channel": channel})
    assert [item.get("Uniqueid") for item in status] == [uid]
    # A clean value on the same channel still goes through.
    await edge.send("Setvar", {"Channel": channel, "Variable": "HANDOFF_ID", "Value": "古城区 1"})
    value = await edge.send("Getvar", {"Channel": channel, "Variable": "HANDOFF_ID"})
    assert value.get("Value") == "古城区 1"
    await edge.send("Hangup", {"Channel": channel})


async def test_pending_action_fails_on_cut_and_is_not_resent(edge: AmiClient, sandbox: Any) -> None:
    # An independent session counts how often Asterisk really executes the Originate.
    observer = make_client(sandbox)
    prefix = citizen_local(sandbox) + "-"
    executions: list[str] = []
    observer.subscribe(
        lambda ev: (
            executions.append(ev.get("Channel"))
            if ev.name == "Newchannel"
            and ev.get("Channel").startswith(prefix)
            and ev.get("Channel").endswith(";1")
            else None
        )
    )
    await observer.start()
    await observer.wait_ready(15)
    hooks: list[float] = []

    async def resync() -> None:
        hooks.append(time.monotonic())

    edge.add_resync_hook(resync)
    try:
        # Synchronous Originate: Asterisk answers only once the citizen leg is answered, and the
        # hotline queue has nobody answering, so the action stays pending.
        pending = asyncio.create_task(
            edge.send(
                "Originate",
                {
                    "Channel": citizen_local(sandbox),
                    "Application": "Wait",
                    "Data": 20,
                    "Async": "false",
                    "Timeout": 15000,
                },
                timeout=20,
            )
        )
        await until(lambda: len(executions) == 1)  # Asterisk is executing it
        assert not pending.done(), "precondition: the hotline queue must not answer at once"
        conn = edge._conn
        assert conn is not None
        conn.abort("test: cut the link")  # as a network cut would
        with pytest.raises(AmiDisconnected, match="not re-sent"):
            await pending
        await edge.wait_ready(15)
        await until(lambda: len(hooks) == 1)
        assert (await edge.send("Ping")).success
        await holds(lambda: len(executions) == 1, "the Originate ran once, never re-sent", 1.5)
    finally:
        for name in executions:
            with contextlib.suppress(AmiError):
                await observer.send("Hangup", {"Channel": name})
        await observer.close()


async def test_reconnects_by_itself_across_core_restart(edge: AmiClient, sandbox: Any) -> None:
    transitions: list[tuple[float, str]] = []
    edge.add_state_listener(lambda state: transitions.append((time.monotonic(), state)))
    resyncs: list[list[str]] = []

    async def resync() -> None:
        channels = await edge.send_list("CoreShowChannels")
        resyncs.append([c.get("Uniqueid") for c in channels])

    edge.add_resync_hook(resync)
    reconnects_before = edge.stats.reconnects
    started = time.monotonic()
    await call_sandbox(sandbox.restart)
    await edge.wait_ready(20)
    await until(lambda: len(resyncs) == 1, within=10)
    down = next(t for t, s in transitions if s == "disconnected")
    ready = next(t for t, s in transitions if s == "ready" and t > down)
    print(
        f"\ncore restart now: link lost after {(down - started) * 1000:.0f} ms, "
        f"ready again {(ready - down) * 1000:.0f} ms later "
        f"(states: {' -> '.join(s for _, s in transitions)})"
    )
    assert transitions[0][1] == "disconnected"
    assert edge.stats.reconnects == reconnects_before + 1
    assert (await edge.send("Ping")).success
    assert isinstance(await edge.send_list("CoreShowChannels"), list)
