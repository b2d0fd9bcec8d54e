"""The dialplan's FastAGI hooks against the real sandbox PBX, with the bridge as a real process.

- entry: a SIPp citizen's call runs the entry hook; CALL_JURISDICTION / CALL_NUISANCE are on the
  citizen's channel (VarSet events, Getvar) before it joins the queue, and the call log has it;
- receive: calls the partner hands over (partner_uac.xml, from the partner-110 endpoint, with
  X-Handoff-Id) are routed by their record's urgency: urgent ones wait ahead of everyone
  (QueueCallerJoin position, QueueStatus priority);
- latency: the entry hook's round trip as the dialplan sees it (Asterisk's own event
  timestamps, manager.conf timestampevents=yes), over a burst of calls;
- failure: with the bridge stopped, citizens and handed-over calls still reach the queue (AGI
  only sets AGISTATUS=FAILURE). This test restarts the session's bridge when it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import statistics
from typing import Any

import pytest
from lab.ami import AmiSession, Message, is_event
from lab.bridge import RunningBridge
from lab.calls import citizen_uac
from lab.sandbox import Sandbox
from lab.sipp import SippProcess

from hotline_bridge.handoffs.ids import new_handoff_id

from .conftest import Parties

pytestmark = pytest.mark.pbx

BURST = 60  # calls in the latency burst


def require_agi(bridge: RunningBridge) -> None:
    _, body = bridge.request_sync("GET", "/healthz")
    agi = body.get("agi", {}) if isinstance(body, dict) else {}
    assert agi.get("state") == "listening", (
        f"the test bridge's AGI server is not listening: {agi}. Another bridge (make run, the "
        f"demo) may hold the topology's [agi] port {bridge.topology['agi']['port']}."
    )


def supervisor(bridge: RunningBridge) -> str:
    return str(
        next(c["token"] for c in bridge.topology["api_clients"] if c["role"] == "supervisor")
    )


async def file_work_order(bridge: RunningBridge, **body: Any) -> str:
    status, view = await bridge.request("POST", "/v1/work-orders", body, supervisor(bridge))
    assert status == 201, view
    return str(view["id"])


def variables(ami: AmiSession, channel: str, since: int) -> dict[str, list[str]]:
    """Every value each channel variable took (VarSet events), in order."""
    out: dict[str, list[str]] = {}
    for ev in ami.find_events(is_event("VarSet", Channel=channel), since):
        out.setdefault(ev["Variable"], []).append(ev["Value"])
    return out


async def queue_join(ami: AmiSession, caller: str, since: int, timeout: float = 10) -> Message:
    return await ami.wait_event(is_event("QueueCallerJoin", CallerIDNum=caller), timeout, since)


def agi_round_trip_ms(ami: AmiSession, channel: str, since: int) -> float:
    """From the AGI() step starting to AGISTATUS being set, by Asterisk's own clock."""
    start = ami.find_events(is_event("Newexten", Channel=channel, Application="AGI"), since)
    end = ami.find_events(is_event("VarSet", Channel=channel, Variable="AGISTATUS"), since)
    assert start and end, (channel, start, end)
    return (float(end[0]["Timestamp"]) - float(start[0]["Timestamp"])) * 1000


async def call_row(bridge: RunningBridge, call_id: str) -> dict[str, Any]:
    """The call log row the hook wrote after answering (read-only, from the bridge's store)."""
    path = bridge.env["HOTLINE_BRIDGE_BRIDGE__STORE_PATH"]
    for _ in range(40):
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no call log row for {call_id}")


async def hang_up_and_stop(ami: AmiSession, channel: str, proc: SippProcess) -> None:
    await ami.action("Hangup", Channel=channel)
    await proc.stop()  # frees the SIPp port for the next call


# -- entry ---------------------------------------------------------------------------------------


async def test_entry_hook_sets_jurisdiction_and_nuisance_and_opens_the_call_log(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    require_agi(bridge)
    topo = bridge.topology
    queue = topo["citizens"]["queue"]
    jurisdiction = topo["agi"]["jurisdiction_by_endpoint"][topo["citizens"]["endpoint"]]
    nuisance, ordinary = "15000150011", "15000150012"
    for _ in range(topo["agi"]["nuisance_threshold"]):
        await file_work_order(
            bridge, citizen_number=nuisance, category="police.harassment", narrative="反复骚扰"
        )

    for number, flag in ((nuisance, "yes"), (ordinary, "no")):
        mark = admin_ami.mark()
        citizen = await parties.citizen(number)
        join = await queue_join(admin_ami, number, mark)
        channel = join["Channel"]
        assert join["Queue"] == queue
        seen = variables(admin_ami, channel, mark)
        # The dialplan's defaults first, then the hook's values, all before the queue.
        assert seen["CALL_JURISDICTION"] == ["unknown", jurisdiction], seen
        assert seen["CALL_NUISANCE"] == ["unknown", flag], seen
        assert seen["AGISTATUS"] == ["SUCCESS"]
        for name, value in (("CALL_NUISANCE", flag), ("CALL_JURISDICTION", jurisdiction)):
            got = await admin_ami.action_ok("Getvar", Channel=channel, Variable=name)
            assert got["Value"] == value
        row = await call_row(bridge, join["Uniqueid"])
        assert row["kind"] == "citizen" and row["caller"] == number
        assert row["endpoint"] == topo["citizens"]["endpoint"]
        assert row["dialled"] == topo["citizens"]["dial_number"]
        assert row["jurisdiction"] == jurisdiction and row["nuisance"] == (flag == "yes")
        await hang_up_and_stop(admin_ami, channel, citizen)


# -- receive -------------------------------------------------------------------------------------


async def test_handed_over_calls_are_routed_by_their_records_urgency(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    require_agi(bridge)
    queue = bridge.topology["citizens"]["queue"]
    urgent = await file_work_order(
        bridge,
        citizen_number="15000150021",
        matter_class="unclear_responsibility",
        danger_to_life=True,
        jurisdiction="yulong",
    )
    normal = await file_work_order(
        bridge,
        citizen_number="15000150022",
        category="gov.violation_report",
        jurisdiction="huaping",
    )
    never_pushed = new_handoff_id()
    # In arrival order, 0.5 s apart: a normal handoff is already waiting when the urgent one
    # comes; then a call without a usable id, and one whose record never arrives.
    calls = [
        ("15000150022", normal),
        ("15000150021", urgent),
        ("15000150023", "none"),
        ("15000150024", never_pushed),
    ]
    mark = admin_ami.mark()
    await parties.handed_over(calls, rate=2)
    joins = {n: await queue_join(admin_ami, n, mark, timeout=15) for n, _ in calls}

    assert {j["Queue"] for j in joins.values()} == {queue}
    assert joins["15000150022"]["Position"] == "1"
    assert joins["15000150021"]["Position"] == "1", "the urgent handoff must go ahead"
    entries = [
        e
        for e in await admin_ami.action_list("QueueStatus", Queue=queue)
        if e.get("Event") == "QueueEntry"
    ]
    assert [(e["CallerIDNum"], e["Priority"]) for e in entries] == [
        ("15000150021", "10"),
        ("15000150022", "0"),
        ("15000150023", "0"),
        ("15000150024", "0"),
    ]

    expected = {
        "15000150021": ("urgent", "unclear_responsibility", "yulong", urgent),
        "15000150022": ("normal", "non_police_matter", "huaping", normal),
        "15000150023": ("unknown", "", "unknown", ""),
        "15000150024": ("unknown", "", "unknown", never_pushed),
    }
    for number, (urgency, matter_class, jurisdiction, handoff_id) in expected.items():
        channel = joins[number]["Channel"]
        seen = variables(admin_ami, channel, mark)
        assert seen["AGISTATUS"] == ["SUCCESS"], (number, seen)
        assert seen["HANDOFF_URGENCY"] == ["unknown", urgency], (number, seen)
        assert seen["HANDOFF_CLASS"] == [matter_class]
        assert seen["HANDOFF_JURISDICTION"] == [jurisdiction]
        assert seen["HANDOFF_RECEIVED_ID"][-1] == handoff_id
        assert ("QUEUE_PRIO" in seen) == (urgency == "urgent")
        row = await call_row(bridge, joins[number]["Uniqueid"])
        assert (row["kind"], row["urgency"], row["endpoint"]) == (
            "from_partner",
            urgency,
            "partner-110",
        )
    # A record that never arrives was waited for (its push may have been in flight), then the
    # call went on as normal; a call without a usable id did not wait.
    wait_s = bridge.topology["agi"]["receive_wait_s"]
    assert agi_round_trip_ms(admin_ami, joins["15000150024"]["Channel"], mark) >= wait_s * 1000
    assert agi_round_trip_ms(admin_ami, joins["15000150023"]["Channel"], mark) < 100


# -- latency -------------------------------------------------------------------------------------


async def test_entry_hook_round_trip_as_seen_from_the_dialplan(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    require_agi(bridge)
    await parties.agents()
    mark = admin_ami.mark()
    citizens = citizen_uac(bridge.topology, parties.workdir, hold=0.2, calls=BURST, rate=10)
    parties.procs.append(await citizens.start(settle=0))
    result = await citizens.wait(timeout=90)
    assert result.returncode == 0, result.describe()

    starts = {
        e["Uniqueid"]: float(e["Timestamp"])
        for e in admin_ami.find_events(
            is_event("Newexten", Context="hotline-citizens", Application="AGI"), mark
        )
    }
    ends = {
        e["Uniqueid"]: float(e["Timestamp"])
        for e in admin_ami.find_events(
            is_event("VarSet", Variable="AGISTATUS", Value="SUCCESS"), mark
        )
        if e["Uniqueid"] in starts
    }
    ms = sorted((ends[u] - starts[u]) * 1000 for u in ends)
    assert len(ms) == BURST, f"{len(ms)} of {BURST} calls ran the entry hook successfully"
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    _, health = bridge.request_sync("GET", "/healthz")
    print(
        f"\nentry hook round trip seen by the dialplan over {len(ms)} calls at 10/s: "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms; "
        f"bridge-side: {health['agi']['latency_ms'].get('entry')}"
    )
    # No timed assertion here (a shared box made p99 anything from 5 to 110 ms): AGISTATUS
    # SUCCESS on every call already says each answer beat the hook's own timeout
    # ([agi] request_timeout_s); the latency itself is measured by `make bench`.
    assert health["agi"]["latency_ms"].get("entry") is not None


# -- failure -------------------------------------------------------------------------------------


async def test_with_the_bridge_stopped_calls_still_reach_the_queue(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession, sandbox: Sandbox
) -> None:
    agi = sandbox.topology["agi"]
    queue = sandbox.topology["citizens"]["queue"]
    bridge.stop()
    try:
        with socket.socket() as probe:
            taken = probe.connect_ex((agi["host"], agi["port"])) == 0
        assert not taken, f"something else listens on the AGI port {agi['port']}"

        mark = admin_ami.mark()
        citizen = await parties.citizen("15000150031")
        join = await queue_join(admin_ami, "15000150031", mark)
        assert join["Queue"] == queue
        seen = variables(admin_ami, join["Channel"], mark)
        assert seen["AGISTATUS"] == ["FAILURE"]
        assert seen["CALL_JURISDICTION"] == ["unknown"] and seen["CALL_NUISANCE"] == ["unknown"]
        failed_ms = agi_round_trip_ms(admin_ami, join["Channel"], mark)
        assert failed_ms < 50
        await hang_up_and_stop(admin_ami, join["Channel"], citizen)

        mark = admin_ami.mark()
        await parties.handed_over([("15000150032", new_handoff_id())])
        join = await queue_join(admin_ami, "15000150032", mark)
        assert join["Queue"] == queue
        seen = variables(admin_ami, join["Channel"], mark)
        assert seen["AGISTATUS"] == ["FAILURE"]
        assert seen["HANDOFF_URGENCY"] == ["unknown"] and "QUEUE_PRIO" not in seen
        print(f"\nAGI with the bridge down: AGISTATUS=FAILURE after {failed_ms:.2f} ms")
    finally:
        bridge.restart()
    require_agi(bridge)
