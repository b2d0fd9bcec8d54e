"""One citizen-agent call and the plans that hand it over, and a reminder call's plan, shared by
the unit and ops tests."""

from __future__ import annotations

from dataclasses import replace

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.conferences import machine as cm
from hotline_bridge.core.reminder import ReminderPlan
from hotline_bridge.transfers import machine as tm

CITIZEN = "13800138000"

CALL = LiveCall(
    call_id="1700000000.1",
    citizen_number=CITIZEN,
    citizen_channel="PJSIP/carrier-00000001",
    agent_id="1001",
    agent_channel="PJSIP/agent1001-00000002",
    agent_uniqueid="1700000000.2",
    bridge_id="b1",
    linkedid="1700000000.1",
    since=0.0,
)

CARRY_PLAN = tm.CarryPlan(
    transfer_id="t-1",
    handoff_id="h-1",
    handoff_url="http://127.0.0.1:8345/v1/handoffs/h-1",
    call=CALL,
    target="110",
    target_number="110",
    target_dial="PJSIP/110@partner-110",
    forwarding_number="12345",
    ring_timeout_s=20,
    return_dial="PJSIP/agent1001",
    return_queue="hotline-12345",
    return_timeout_s=15,
)

THREE_WAY_PLAN = cm.ThreeWayPlan(
    conference_id="c-1",
    handoff_id="h-2",
    handoff_url="http://127.0.0.1:8345/v1/handoffs/h-2",
    call=CALL,
    target="110",
    target_dial="PJSIP/110@partner-110",
    forwarding_number="12345",
    ring_timeout_s=20,
)

REMINDER_PLAN = ReminderPlan(
    reminder_id="r-01jabcdefghjkmnpqrstvwxyz0",
    handoff_id="h-01jabcdefghjkmnpqrstvwxyz0",
    handoff_url="http://127.0.0.1:8345/v1/handoffs/h-01jabcdefghjkmnpqrstvwxyz0",
    jurisdiction="gucheng",
    dial="PJSIP/110@duty-110",
    caller_id="12345",
    notice="vm-youhave&digits/1&vm-message",
    ring_timeout_s=20,
    attempts=3,
    retry_after_s=30,
)


def another_call(n: int) -> LiveCall:
    """A second, distinct call (its own channels and Uniqueids)."""
    return replace(
        CALL,
        call_id=f"1700000000.{2 * n + 1}",
        citizen_channel=f"PJSIP/carrier-{2 * n + 1:08x}",
        agent_channel=f"PJSIP/agent1001-{2 * n + 2:08x}",
        agent_uniqueid=f"1700000000.{2 * n + 2}",
    )
