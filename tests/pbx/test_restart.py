"""``kill -9`` of the bridge in the middle of a promise: the restarted bridge keeps it.

A carry transfer is ringing the 110 desk when the bridge dies; the desk answers while no bridge
is running. The restarted bridge loads the transfer from its store, asks the PBX where the citizen
is, and settles it as answered (the citizen was never dropped). A duty-line reminder waiting for
its retry when the bridge dies rings again on time after the restart, and only once.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge, start_bridge
from lab.calls import partner_uas
from lab.sandbox import Sandbox

from tests.pbx.test_carry_transfer import channels
from tests.pbx.test_work_orders import (
    CITIZEN,
    PLATFORM_NUMBER,
    reminder_steps,
    sipp_time,
    wait_invites,
    wait_reminder,
)

from .conftest import Parties

pytestmark = pytest.mark.pbx

RESTART_BRIDGE_PORT = 18355
RETRY_AFTER_S = 8


@pytest.fixture(scope="module")
def restart_bridge(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBridge]:
    """A bridge of its own (own port and store) that the tests may kill; duty reminders: 2
    attempts, 2 s ringing, a retry RETRY_AFTER_S later (time enough to die in between)."""
    rb = start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        tmp_path_factory.mktemp("bridge-restart"),
        port=RESTART_BRIDGE_PORT,
        overrides={
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
            "HOTLINE_BRIDGE_DUTY_LINES__ATTEMPTS": "2",
            "HOTLINE_BRIDGE_DUTY_LINES__RING_TIMEOUT_S": "2",
            "HOTLINE_BRIDGE_DUTY_LINES__RETRY_AFTER_S": str(RETRY_AFTER_S),
            "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
        },
    )
    try:
        yield rb
    finally:
        rb.stop()


def kill_9(bridge: RunningBridge) -> None:
    assert bridge.proc is not None
    bridge.proc.send_signal(signal.SIGKILL)
    assert bridge.proc.wait(10) == -signal.SIGKILL


def inflight_rows(bridge: RunningBridge) -> list[tuple[str, str]]:
    store = Path(bridge.env["HOTLINE_BRIDGE_BRIDGE__STORE_PATH"])
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT kind, id FROM machines WHERE done = 0")
        return [(str(k), str(i)) for k, i in rows]


async def test_transfer_answered_while_the_bridge_was_dead_is_settled_after_restart(
    restart_bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    bridge = restart_bridge
    number = "13700137022"
    await parties.agents()
    # The 110 desk rings 5 s before answering: the bridge dies in between.
    desk = partner_uas(
        bridge.topology, parties.workdir, variables={"citizen": number}, extra_args=["-d", "5000"]
    )
    parties.procs.append(await desk.start())
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    status, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    path = f"/v1/transfers/{body['transfer_id']}"
    await bridge.wait_state(path, token, {"dialing", "ringing"})
    assert ("carry_transfer", body["transfer_id"]) in inflight_rows(bridge)

    kill_9(bridge)
    await asyncio.sleep(6)  # the desk answers with no bridge running
    chans = await channels(admin_ami)
    assert chans["PJSIP/carrier"]["BridgeId"] == chans["PJSIP/partner-110"]["BridgeId"]

    await asyncio.to_thread(bridge.restart)
    transfer = await bridge.wait_state(path, token, {"answered", "lost"})
    assert transfer["state"] == "answered", transfer
    assert transfer["timeline"][-1]["what"] == "partner_answered_unseen"
    assert inflight_rows(bridge) == []
    # The record tells the same story, and the citizen is still talking to 110.
    status, record = await bridge.request("GET", f"/v1/handoffs/{body['handoff_id']}", token=token)
    assert status == 200
    kinds = [e["data"].get("what") for e in record["events"] if e["kind"] == "call_progress"]
    assert "partner_answered_unseen" in kinds, kinds
    chans = await channels(admin_ami)
    assert chans["PJSIP/carrier"]["CallerIDNum"] == number
    assert chans["PJSIP/carrier"]["BridgeId"] == chans["PJSIP/partner-110"]["BridgeId"]
    (invite,) = desk.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")


async def test_a_pending_reminder_retry_rings_once_after_a_restart(
    restart_bridge: RunningBridge, parties: Parties
) -> None:
    bridge = restart_bridge
    duty = await parties.duty_line("partner_noanswer_uas.xml")
    token = bridge.token("1002")
    status, answer = await bridge.request(
        "POST",
        "/v1/work-orders",
        {
            "channel": "web",
            "category": "police.public_order",
            "danger_to_life": True,
            "jurisdiction": "yulong",
            "citizen_number": CITIZEN,
        },
        token,
    )
    assert status == 201, answer
    handoff_id = answer["id"]
    await wait_reminder(bridge, handoff_id, token, {"retry_wait"}, within=15)

    kill_9(bridge)
    await asyncio.to_thread(bridge.restart)
    reminder = await wait_reminder(
        bridge, handoff_id, token, {"unanswered"}, within=RETRY_AFTER_S + 15
    )
    assert reminder["attempt"] == 2
    invites = await wait_invites(duty, 2, within=5)
    assert len(invites) == 2, duty.snapshot().describe()
    assert all(f"<sip:{PLATFORM_NUMBER}@" in i.header("From") for i in invites)
    gap = sipp_time(invites[1].timestamp) - sipp_time(invites[0].timestamp)
    assert gap >= 2 + RETRY_AFTER_S - 1, gap  # not rung early by the restart
    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert reminder_steps(record) == [
        ("duty_reminder_dialing", "1", None),
        ("duty_reminder_attempt_failed", "1", "no_answer"),
        ("duty_reminder_retry_scheduled", "2", None),
        ("duty_reminder_dialing", "2", None),
        ("duty_reminder_attempt_failed", "2", "no_answer"),
        ("duty_reminder_unanswered", "2", "no_answer"),
    ]
    assert inflight_rows(bridge) == []
