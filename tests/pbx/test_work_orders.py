"""Work orders from non-voice channels and the 110 duty-line reminder, against the real sandbox PBX.

The proof is what left the PBX: the SIPp duty line (``[targets.duty-110]``, port 5092) checks
that From and P-Asserted-Identity carry the 12345 platform number (``-set citizen 12345``: it
refuses anything else with 403) and that the INVITE names the work order (X-Handoff-Id).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lab.bridge import RunningBridge, start_bridge
from lab.sandbox import Sandbox
from lab.sipp import SippProcess

from tests.pbx.waiting import holds

from .conftest import Parties

pytestmark = pytest.mark.pbx

PLATFORM_NUMBER = "12345"
CITIZEN = "13800138000"
NOANSWER_BRIDGE_PORT = 18351
REPORT: dict[str, float] = {}


def outbox_rows(bridge: RunningBridge, handoff_id: str) -> list[tuple[str, str | None]]:
    store = bridge.env["HOTLINE_BRIDGE_BRIDGE__STORE_PATH"]
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT kind, delivered_at FROM outbox WHERE handoff_id = ?", (handoff_id,)
        ).fetchall()
    return [(str(k), d) for k, d in rows]


def reminder_steps(record: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(what, attempt, outcome) of the record's duty-reminder events, in order."""
    return [
        (e["data"]["what"], e["data"].get("attempt", ""), e["data"].get("outcome"))
        for e in record["events"]
        if e["kind"] == "call_progress" and e["data"]["what"].startswith("duty_reminder_")
    ]


async def wait_reminder(
    bridge: RunningBridge, handoff_id: str, token: str, states: set[str], within: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    body: Any = None
    while loop.time() < deadline:
        status, body = await bridge.request(
            "GET", f"/v1/work-orders/{handoff_id}/reminder", token=token
        )
        assert status == 200, body
        if body["state"] in states:
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"reminder never reached {sorted(states)}; last: {body}")


async def wait_invites(proc: SippProcess, count: int, within: float) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        invites = proc.snapshot().received("INVITE")
        if len(invites) >= count:
            return invites
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} INVITE(s) expected: {proc.snapshot().describe()}")


def sipp_time(stamp: str) -> float:
    """A SIPp -trace_msg timestamp (local time, microseconds) as epoch seconds."""
    return datetime.strptime(stamp.replace("\t", " "), "%Y-%m-%d %H:%M:%S.%f").timestamp()


async def test_sms_complaint_is_filed_and_queued_for_the_partner(
    bridge: RunningBridge, parties: Parties
) -> None:
    duty = await parties.duty_line(citizen=PLATFORM_NUMBER)
    token = bridge.token("1001")
    status, answer = await bridge.request(
        "POST",
        "/v1/work-orders",
        {
            "channel": "sms",
            "category": "gov.complaint_department",
            "citizen_number": CITIZEN,
            "jurisdiction": "yulong",
            "request": "路灯坏了三周无人修",
        },
        token,
    )
    assert status == 201, answer
    handoff_id = answer["id"]
    assert answer["reminder"] is None  # not a police matter: 12345 handles it, no phone call
    assert answer["advice"]["alert_110_by_phone"] is False

    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert status == 200, record
    snap = record["snapshot"]
    assert snap["kind"] == "work_order" and snap["channel"] == "sms"
    assert snap["citizen"]["number"] == CITIZEN and snap["direction"] == "12345->110"
    assert outbox_rows(bridge, handoff_id) == [("handoff.created", None)]
    await holds(lambda: duty.snapshot().received("INVITE") == [], "no duty line rung", period=1.0)


async def test_police_work_order_rings_the_duty_line_from_the_platform_number(
    bridge: RunningBridge, parties: Parties
) -> None:
    duty = await parties.duty_line(citizen=PLATFORM_NUMBER)
    token = bridge.token("1001")
    filed_at = time.time()
    status, answer = await bridge.request(
        "POST",
        "/v1/work-orders",
        {
            "channel": "wechat",
            "category": "police.criminal",
            "citizen_number": CITIZEN,
            "jurisdiction": "gucheng",
            "event": "微信报称有人撬车",
        },
        token,
    )
    assert status == 201, answer
    handoff_id = answer["id"]
    assert answer["advice"]["alert_110_by_phone"] is True
    assert answer["reminder"]["dial"] == "PJSIP/110@duty-110"

    (invite,) = await wait_invites(duty, 1, within=10)
    REPORT["filing_to_duty_invite_s"] = round(sipp_time(invite.timestamp) - filed_at, 3)
    # The duty desk sees the 12345 platform, never the citizen, and the work order's id and URL.
    assert f"<sip:{PLATFORM_NUMBER}@" in invite.header("From")
    assert f"<sip:{PLATFORM_NUMBER}@" in invite.header("P-Asserted-Identity")
    assert CITIZEN not in str(invite.headers)
    assert invite.header("X-Handoff-Id") == handoff_id
    assert f"/v1/handoffs/{handoff_id}>" in invite.header("Call-Info")

    reminder = await wait_reminder(bridge, handoff_id, token, {"delivered"}, within=20)
    assert reminder["outcome"] == "answered" and reminder["attempt"] == 1
    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert status == 200
    assert record["snapshot"]["channel"] == "wechat"
    assert reminder_steps(record) == [
        ("duty_reminder_dialing", "1", None),
        ("duty_reminder_answered", "1", "answered"),
        ("duty_reminder_delivered", "1", "answered"),
    ]
    assert ("handoff.created", None) in outbox_rows(bridge, handoff_id)
    # The notice was played and the PBX hung up (the SIPp desk got its BYE).
    assert duty.snapshot().received("BYE")
    print(f"\nwork-order timings: {REPORT}")


@pytest.fixture(scope="module")
def noanswer_bridge(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBridge]:
    """A bridge whose duty-line reminder gives up quickly: 2 attempts, 2 s ringing, 1 s apart."""
    rb = start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        tmp_path_factory.mktemp("bridge-noanswer"),
        port=NOANSWER_BRIDGE_PORT,
        overrides={
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
            "HOTLINE_BRIDGE_DUTY_LINES__ATTEMPTS": "2",
            "HOTLINE_BRIDGE_DUTY_LINES__RING_TIMEOUT_S": "2",
            "HOTLINE_BRIDGE_DUTY_LINES__RETRY_AFTER_S": "1",
            "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
        },
    )
    try:
        yield rb
    finally:
        rb.stop()


async def test_unanswered_duty_line_is_retried_then_recorded_unanswered(
    noanswer_bridge: RunningBridge, parties: Parties, tmp_path: Path
) -> None:
    bridge = noanswer_bridge
    duty = await parties.duty_line("partner_noanswer_uas.xml")
    token = bridge.token("1002")
    status, answer = await bridge.request(
        "POST",
        "/v1/work-orders",
        {
            "channel": "web",
            "category": "police.public_order",
            "danger_to_life": True,
            "jurisdiction": "ninglang",  # no line of its own: the default duty line
            "citizen_number": CITIZEN,
        },
        token,
    )
    assert status == 201, answer
    handoff_id = answer["id"]
    reminder = await wait_reminder(bridge, handoff_id, token, {"unanswered"}, within=30)
    assert reminder["attempt"] == 2 and reminder["outcome"] == "no_answer"
    invites = duty.snapshot().received("INVITE")
    assert len(invites) == 2, duty.snapshot().describe()
    assert all(f"<sip:{PLATFORM_NUMBER}@" in i.header("From") for i in invites)
    gap = sipp_time(invites[1].timestamp) - sipp_time(invites[0].timestamp)
    REPORT["noanswer_retry_gap_s"] = round(gap, 3)
    assert 2.5 <= gap <= 6, gap  # ring 2 s, then the retry 1 s later

    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert status == 200
    assert reminder_steps(record) == [
        ("duty_reminder_dialing", "1", None),
        ("duty_reminder_attempt_failed", "1", "no_answer"),
        ("duty_reminder_retry_scheduled", "2", None),
        ("duty_reminder_dialing", "2", None),
        ("duty_reminder_attempt_failed", "2", "no_answer"),
        ("duty_reminder_unanswered", "2", "no_answer"),
    ]
    print(f"\nwork-order timings: {REPORT}")
