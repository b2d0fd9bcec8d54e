"""Issue 12 §4: overflow to remote seats (远程话务座席), on two real PBXes.

The two-site 12345 PBX (asterisk/two-site/12345.toml: SIP 5260, one local agent) with its bridge,
overflow switched on with small thresholds, and the remote seat group's PBX
(asterisk/two-site/remote.toml: SIP 5360, two seats as SIPp phones that accept a call only if
From and P-Asserted-Identity carry the same citizen number).

- ``test_overflow_to_remote_seats_and_back``: citizen A takes the one local agent, B waits: the
  bridge switches overflow on (the PBX's global). C and D are answered by the remote seats with
  their own numbers in From and P-Asserted-Identity (and the entry hook's jurisdiction in
  X-Hotline-Jurisdiction at the remote PBX); E finds both seats busy, rings out there and falls
  back to the local queue. Then the local agent works through A, B, E: the queue recovers, the
  bridge switches overflow off after its calm hold, and F goes to the local queue and its agent.
  Every citizen was answered by someone: none dropped.
- ``test_a_dead_bridge_lets_overflow_lapse_back_to_the_local_queue``: overflow on, the bridge
  ``kill -9``ed: the switch still says "on", but once its lease has run out a new citizen waits
  in the local queue.
- ``test_a_remote_site_that_is_down_sends_the_citizen_to_the_local_queue``: overflow on and the
  remote PBX stopped: the overflowed citizen falls back to the local queue.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession, is_event
from lab.bridge import RunningBridge, start_bridge
from lab.calls import is_user_event, wait_bridged
from lab.sandbox import REPO, Sandbox
from lab.sipp import SippProcess, stop_all

from tests.pbx.waiting import eventually

pytestmark = pytest.mark.pbx

TWO_SITE = REPO / "asterisk" / "two-site"
LEASE_S = 6
RING_TIMEOUT_S = 3  # the remote site's ring time before the citizen falls back
# Thresholds for one local agent: overflow when one caller waits with nobody free; off once
# nobody waits, for 2 s.
OVERFLOW = {
    "ENABLED": "true",
    "START_WAITING": "1",
    "STOP_WAITING": "0",
    "START_OLDEST_WAIT_S": "120",
    "STOP_OLDEST_WAIT_S": "60",
    "STOP_HOLD_S": "2",
    "POLL_INTERVAL_S": "0.5",
    "LEASE_S": str(LEASE_S),
    "RING_TIMEOUT_S": str(RING_TIMEOUT_S),
}
REPORT: dict[str, Any] = {}


@dataclass
class Sites:
    local: Sandbox  # the 12345 centre
    remote: Sandbox  # the remote seat group
    bridge: RunningBridge


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """Both PBXes and the 12345 bridge with overflow on; stops what it started."""
    started: list[tuple[Sandbox, bool]] = []
    bridge: RunningBridge | None = None
    try:
        for name in ("12345", "remote"):
            sb = Sandbox(TWO_SITE / f"{name}.toml")
            started.append((sb, sb.start()))
        local = started[0][0]
        bridge = start_bridge(
            local.topology_path,
            local.topology,
            tmp_path_factory.mktemp("bridge-12345"),
            overrides={"HOTLINE_BRIDGE_LOG_LEVEL": "debug"}
            | {f"HOTLINE_BRIDGE_OVERFLOW__{k}": v for k, v in OVERFLOW.items()},
        )
        yield Sites(local, started[1][0], bridge)
    finally:
        if bridge is not None:
            bridge.stop()
        for sb, was_started in reversed(started):
            if was_started:
                sb.stop()
        if REPORT:
            print("\noverflow:", json.dumps(REPORT, indent=1))


@dataclass
class Calls:
    """SIPp peers of both sites and admin AMI sessions on both PBXes."""

    sites: Sites
    workdir: Path
    local_ami: AmiSession
    remote_ami: AmiSession
    procs: list[SippProcess] = field(default_factory=list)
    citizens: dict[str, SippProcess] = field(default_factory=dict)

    async def local_agent(self) -> SippProcess:
        a = self.sites.local.topology["agents"][0]
        proc = SippProcess(
            "agent_uas.xml", port=a["sip_port"], workdir=self.workdir, name=a["endpoint"]
        )
        self.procs.append(await proc.start())
        return proc

    async def seats(self) -> list[SippProcess]:
        out = []
        for a in self.sites.remote.topology["agents"]:
            proc = SippProcess(
                "remote_seat_uas.xml", port=a["sip_port"], workdir=self.workdir, name=a["endpoint"]
            )
            self.procs.append(await proc.start())
            out.append(proc)
        return out

    async def citizen(self, number: str, slot: int) -> SippProcess:
        """A citizen calling 12345 from the carrier's ``slot``-th port, held on the line."""
        c, pbx = self.sites.local.topology["citizens"], self.sites.local.topology["pbx"]
        port = [c["sip_port"], *c["extra_sip_ports"]][slot]
        inf = self.workdir / f"citizen-{number}.csv"
        inf.write_text(f"SEQUENTIAL\n{number};\n")
        proc = SippProcess(
            "citizen_uac.xml",
            port=port,
            workdir=self.workdir,
            name=f"citizen-{number}",
            remote=f"{pbx['sip_host']}:{pbx['sip_port']}",
            service=c["dial_number"],
            calls=1,
            inf=inf,
            hold=300,
        )
        self.procs.append(await proc.start(settle=0))
        self.citizens[number] = proc
        return proc

    async def citizen_channel(self, number: str) -> str:
        async def find() -> str | None:
            for ch in await self.local_ami.action_list("CoreShowChannels"):
                name = str(ch.get("Channel", ""))
                if name.startswith("PJSIP/carrier-") and ch.get("CallerIDNum") == number:
                    return name
            return None

        return str(await poll(find))

    async def hang_up(self, number: str) -> None:
        await self.local_ami.action_ok("Hangup", Channel=await self.citizen_channel(number))

    async def switch(self) -> tuple[str, int]:
        """The PBX's overflow globals as the dialplan reads them: (HOTLINE_OVERFLOW, UNTIL)."""
        flag = await self.local_ami.action("Getvar", Variable="HOTLINE_OVERFLOW")
        until = await self.local_ami.action("Getvar", Variable="HOTLINE_OVERFLOW_UNTIL")
        value = str(until.get("Value") or "0")
        return str(flag.get("Value") or ""), int(value) if value.isdigit() else 0

    async def wait_switch(self, value: str, within: float = 30.0) -> None:
        async def seen() -> bool:
            return (await self.switch())[0] == value

        await poll(seen, within)


async def hang_up_all(ami: AmiSession) -> None:
    if ami.closed:  # that PBX was stopped by the test
        return
    for ch in await ami.action_list("CoreShowChannels"):
        await ami.action("Hangup", Channel=ch["Channel"])


@pytest.fixture
async def calls(sites: Sites, tmp_path: Path) -> AsyncIterator[Calls]:
    contexts = [sites.local.admin_ami(), sites.remote.admin_ami()]
    local_ami, remote_ami = [await c.__aenter__() for c in contexts]
    for ami in (local_ami, remote_ami):
        await hang_up_all(ami)
    c = Calls(sites, tmp_path, local_ami, remote_ami)

    async def overflow_off() -> bool:
        flag, until = await c.switch()
        return flag != "on" or until < time.time()

    # Each test starts with overflow off: an idle queue switches it off after the calm hold.
    await poll(overflow_off)
    try:
        yield c
    finally:
        for ami in (local_ami, remote_ami):
            await hang_up_all(ami)
        await asyncio.sleep(0.5)
        await stop_all(*reversed(c.procs))
        for ctx in contexts:
            await ctx.__aexit__(None, None, None)


async def poll(fn: Any, within: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {within} s ({fn})")
        await asyncio.sleep(every)


def answered(proc: SippProcess) -> bool:
    """The citizen got a 200 OK for its INVITE (someone took the call)."""
    return any(m.status == 200 for m in proc.snapshot().received("INVITE", requests_only=False))


def seat_numbers(seat: SippProcess) -> list[tuple[str, str]]:
    """(From number, P-Asserted-Identity number) of every call the seat accepted."""
    return [
        (m.group(1), m.group(2))
        for line in seat.snapshot().log_lines
        if (m := re.search(r"seat-invite from=(\d+) pai=(\d+)", line))
    ]


def agent_callers(agent: SippProcess) -> list[str]:
    return [
        m.group(1)
        for inv in agent.snapshot().received("INVITE")
        if (m := re.search(r"<sip:(\d+)@", inv.header("From")))
    ]


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def user_events(ami: AmiSession, name: str, since: int) -> list[dict[str, Any]]:
    return ami.find_events(is_user_event(name), since)


async def test_overflow_to_remote_seats_and_back(calls: Calls) -> None:
    local, remote = calls.local_ami, calls.remote_ami
    bridge = calls.sites.bridge
    sup = str(calls.sites.local.topology["api_clients"][0]["token"])
    agent = await calls.local_agent()
    seat1, seat2 = await calls.seats()
    _, before = await bridge.request("GET", "/metrics")
    mark_l, mark_r = local.mark(), remote.mark()
    numbers = {k: f"1390000{i:04d}" for i, k in enumerate("ABCDEF", start=1)}

    # A takes the one local agent; B waits with nobody free: the bridge switches overflow on.
    await calls.citizen(numbers["A"], 0)
    await wait_bridged(local, since=mark_l)
    await calls.citizen(numbers["B"], 1)
    await local.wait_event(is_event("QueueCallerJoin", CallerIDNum=numbers["B"]), since=mark_l)
    await calls.wait_switch("on")
    st, ov = await bridge.request("GET", "/v1/overflow", token=sup)
    assert st == 200 and ov["active"] is True, ov
    assert ov["last_sample"]["waiting"] >= 1 and ov["last_sample"]["available"] == 0, ov
    flag, until = await calls.switch()
    assert flag == "on" and until > time.time(), (flag, until)

    # C and D overflow: answered at the remote site, the citizen's number in From and PAI.
    for key, slot in (("C", 2), ("D", 3)):
        since_r = remote.mark()
        await calls.citizen(numbers[key], slot)
        await local.wait_event(is_user_event("OverflowDialing"), since=mark_l)
        pair = await wait_bridged(
            remote, since=since_r, citizen_prefix="PJSIP/partner-12345-", other_prefix="PJSIP/seat"
        )
        # The entry hook's data travelled with the call (the remote PBX's inbound INVITE).
        for header, want in (("X-Hotline-Jurisdiction", "gucheng"), ("X-Hotline-Nuisance", "no")):
            got = await remote.action(
                "Getvar", Channel=pair.citizen, Variable=f"PJSIP_HEADER(read,{header})"
            )
            assert got.get("Value") == want, (header, got)
        cid = await remote.action("Getvar", Channel=pair.citizen, Variable="CALLERID(num)")
        assert cid.get("Value") == numbers[key], cid
    seen_at_seats = seat_numbers(seat1) + seat_numbers(seat2)
    assert sorted(seen_at_seats) == sorted(
        [(numbers["C"], numbers["C"]), (numbers["D"], numbers["D"])]
    ), seen_at_seats
    for key in "CD":  # overflowed calls never entered the local queue
        assert not local.find_events(
            is_event("QueueCallerJoin", CallerIDNum=numbers[key]), mark_l
        ), key

    # E overflows too, but both remote seats are busy: it rings out there and falls back to
    # the local queue (never dropped).
    await calls.citizen(numbers["E"], 4)
    fell = await local.wait_event(
        is_user_event("OverflowFallback"), since=mark_l, timeout=RING_TIMEOUT_S + 15
    )
    assert fell.get("DialStatus") in ("NOANSWER", "BUSY", "CONGESTION", "CHANUNAVAIL"), fell
    await local.wait_event(is_event("QueueCallerJoin", CallerIDNum=numbers["E"]), since=mark_l)

    # The local agent works through the queue: A ends, B is answered; B ends, E is answered.
    # Nobody waits any more: after the calm hold the bridge switches overflow off.
    for done, nxt in (("A", "B"), ("B", "E")):
        since_l = local.mark()
        await calls.hang_up(numbers[done])
        await local.wait_event(
            lambda e, n=numbers[nxt]: (
                e.get("Event") == "AgentConnect"  # type: ignore[misc]
                and e.get("CallerIDNum") == n
            ),
            since=since_l,
            timeout=20,
        )
    await calls.wait_switch("off")
    st, ov = await bridge.request("GET", "/v1/overflow", token=sup)
    assert ov["active"] is False and "calm" in ov["reason"], ov

    # F, after the queue recovered: the local queue and its agent, not the remote site.
    await calls.hang_up(numbers["E"])
    since_l = local.mark()
    dialing_before = len(user_events(local, "OverflowDialing", mark_l))
    await calls.citizen(numbers["F"], 5)
    await local.wait_event(is_event("QueueCallerJoin", CallerIDNum=numbers["F"]), since=since_l)
    await local.wait_event(
        lambda e: e.get("Event") == "AgentConnect" and e.get("CallerIDNum") == numbers["F"],
        since=since_l,
        timeout=20,
    )
    assert len(user_events(local, "OverflowDialing", mark_l)) == dialing_before == 3
    # The remote PBX saw exactly the three overflowed calls (C, D, E), none after the recovery.
    inbound = remote.find_events(
        lambda e: (
            e.get("Event") == "Newchannel"
            and str(e.get("Channel", "")).startswith("PJSIP/partner-12345-")
        ),
        mark_r,
    )
    assert sorted(e.get("CallerIDNum") for e in inbound) == [numbers[k] for k in "CDE"], inbound

    # None dropped: every citizen was answered, by the local agent or a remote seat. The PBX's
    # AgentConnect can reach us before the citizen's SIPp has written its 200 OK to its log.
    for key in "ABCDEF":
        await eventually(
            lambda p=calls.citizens[numbers[key]]: answered(p), f"citizen {key} answered", 5
        )
    assert agent_callers(agent) == [numbers[k] for k in "ABEF"], agent_callers(agent)
    assert len(seat_numbers(seat1) + seat_numbers(seat2)) == 2
    for seat in (seat1, seat2):
        assert not any("seat-refused" in line for line in seat.snapshot().log_lines)

    # The bridge counted it.
    st, text = await bridge.request("GET", "/metrics")
    assert st == 200
    assert (
        metric(text, "hotline_overflow_calls_total", result="overflowed")
        - metric(before, "hotline_overflow_calls_total", result="overflowed")
        == 3
    )
    assert (
        metric(text, "hotline_overflow_calls_total", result="fell_back")
        - metric(before, "hotline_overflow_calls_total", result="fell_back")
        == 1
    )
    assert metric(text, "hotline_overflow_transitions_total", to="on") >= 1
    assert metric(text, "hotline_overflow_transitions_total", to="off") >= 1
    assert metric(text, "hotline_overflow_active") == 0
    REPORT["overflow_and_back"] = {
        "citizen_calls": 6,
        "overflowed": 3,
        "answered_remotely": len(seen_at_seats),
        "fell_back_to_local_queue": 1,
        "answered_locally": len(agent_callers(agent)),
        "dropped": sum(1 for p in calls.citizens.values() if not answered(p)),
        "fallback_dial_status": fell.get("DialStatus"),
    }


async def test_a_remote_site_that_is_down_sends_the_citizen_to_the_local_queue(
    calls: Calls,
) -> None:
    local = calls.local_ami
    await calls.local_agent()
    mark = local.mark()
    await calls.citizen("13900000021", 0)
    await wait_bridged(local, since=mark)
    await calls.citizen("13900000022", 1)
    await calls.wait_switch("on")
    calls.sites.remote.stop()  # the remote seat group's PBX is gone
    try:
        since = local.mark()
        await calls.citizen("13900000023", 2)
        await local.wait_event(is_user_event("OverflowDialing"), since=since)
        fell = await local.wait_event(
            is_user_event("OverflowFallback"), since=since, timeout=RING_TIMEOUT_S + 15
        )
        await local.wait_event(
            is_event("QueueCallerJoin", CallerIDNum="13900000023"), since=since, timeout=20
        )
        # Still waiting in the local queue, not dropped.
        assert await calls.citizen_channel("13900000023")
        REPORT["remote_down"] = {"fallback_dial_status": fell.get("DialStatus")}
    finally:
        calls.sites.remote.start()


async def test_a_dead_bridge_lets_overflow_lapse_back_to_the_local_queue(calls: Calls) -> None:
    local = calls.local_ami
    await calls.local_agent()
    await calls.seats()
    mark = local.mark()
    await calls.citizen("13900000011", 0)
    await wait_bridged(local, since=mark)
    await calls.citizen("13900000012", 1)
    await calls.wait_switch("on")

    bridge = calls.sites.bridge
    assert bridge.proc is not None
    bridge.proc.kill()  # kill -9: nothing switches overflow off
    bridge.proc.wait(10)
    _, until = await calls.switch()

    async def lapsed() -> bool:
        return time.time() > until + 1

    await poll(lapsed, within=LEASE_S + 10)
    flag, until_now = await calls.switch()
    assert (flag, until_now) == ("on", until)  # still "on": only the lease ran out

    since = local.mark()
    await calls.citizen("13900000013", 2)
    await local.wait_event(
        is_event("QueueCallerJoin", CallerIDNum="13900000013"), since=since, timeout=20
    )
    assert not local.find_events(is_user_event("OverflowDialing"), since)
    REPORT["dead_bridge"] = {
        "switch_after_kill": flag,
        "lease_until": until,
        "new_call_went_to": "local queue",
    }
