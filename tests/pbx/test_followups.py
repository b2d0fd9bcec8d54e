"""The automated follow-up call (回访) against the real sandbox PBX.

A matter is filed and closed through the API of a real bridge process whose ``[follow_up]`` is
on (``PJSIP/{number}@carrier-out``, a SIPp citizen phone on 5094). The proof is what happened on
the wire and in the record: the phone got an INVITE to the citizen's own number from the platform
number, pressed 1 as RFC 4733 DTMF, and the record says ``satisfied``; a phone nobody answers is
tried the configured number of times and ends ``not_reached``; a confidential matter without the
citizen's consent is never called.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.bridge import RunningBridge, start_bridge
from lab.sandbox import Sandbox
from lab.sipp import SippProcess

from tests.pbx.waiting import eventually, holds

pytestmark = pytest.mark.pbx

FOLLOWUP_BRIDGE_PORT = 18353
CITIZEN = "13800138000"
DTMF = Path("/usr/share/sip-tester")


@pytest.fixture(scope="module")
def followup_bridge(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBridge]:
    citizens = sandbox.topology["citizens"]
    rb = start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        tmp_path_factory.mktemp("followup-bridge"),
        port=FOLLOWUP_BRIDGE_PORT,
        overrides={
            "HOTLINE_BRIDGE_FOLLOW_UP__DIAL": "PJSIP/{number}@" + citizens["callback_endpoint"],
            "HOTLINE_BRIDGE_FOLLOW_UP__DELAY_AFTER_CLOSE_S": "0",
            "HOTLINE_BRIDGE_FOLLOW_UP__SCAN_INTERVAL_S": "0.5",
            "HOTLINE_BRIDGE_FOLLOW_UP__RETRY_AFTER_S": "1",
            "HOTLINE_BRIDGE_FOLLOW_UP__ATTEMPTS": "2",
            "HOTLINE_BRIDGE_FOLLOW_UP__RING_TIMEOUT_S": "5",
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
        },
    )
    try:
        yield rb
    finally:
        rb.stop()


def supervisor(bridge: RunningBridge) -> str:
    return str(
        next(c["token"] for c in bridge.topology["api_clients"] if c["role"] == "supervisor")
    )


async def closed_matter(bridge: RunningBridge, **extra: Any) -> str:
    """A work order filed and closed (办结) by a supervisor: it is now owed its follow-up."""
    token = supervisor(bridge)
    body = {"category": "dispute.neighbour", "citizen_number": CITIZEN, **extra}
    status, answer = await bridge.request("POST", "/v1/work-orders", body, token)
    assert status == 201, answer
    hid = str(answer["id"])
    status, ev = await bridge.request(
        "POST", f"/v1/handoffs/{hid}/events", {"kind": "closed", "outcome": "调解成功"}, token
    )
    assert status == 201, ev
    return hid


async def record(bridge: RunningBridge, hid: str) -> dict[str, Any]:
    status, body = await bridge.request("GET", f"/v1/handoffs/{hid}", token=supervisor(bridge))
    assert status == 200, body
    return dict(body)


def steps(rec: dict[str, Any]) -> list[str]:
    return [
        e["data"]["what"]
        for e in rec["events"]
        if e["kind"] == "call_progress" and e["data"]["what"].startswith("follow_up_")
    ]


def press(workdir: Path, key: str) -> None:
    """The key the phone will press: sip-tester's RFC 4733 packets of that digit."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(DTMF / f"dtmf_2833_{key}.pcap", workdir / "followup_key.pcap")


async def citizen_phone(sandbox: Sandbox, workdir: Path, key: str) -> SippProcess:
    press(workdir, key)
    c = sandbox.topology["citizens"]
    phone = SippProcess(
        "citizen_followup_uas.xml",
        port=int(c["callback_sip_port"]),
        local_ip=c["sip_host"],
        workdir=workdir,
        name="citizen-phone",
        calls=1,
    )
    return await phone.start()


async def test_the_citizen_presses_1_and_the_record_says_satisfied(
    followup_bridge: RunningBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    phone = await citizen_phone(sandbox, tmp_path / "phone", "1")
    try:
        hid = await closed_matter(followup_bridge, callback="13912345678")
        rec: dict[str, Any] = {}

        async def rated() -> bool:
            rec.update(await record(followup_bridge, hid))
            return rec["state"]["satisfaction"] is not None

        await eventually(rated, "the follow-up rating is recorded", within=30)
        assert rec["state"]["satisfaction"] == "satisfied"
        assert steps(rec) == ["follow_up_call"]
        (rating,) = [e for e in rec["events"] if e["kind"] == "follow_up"]
        assert rating["actor"]["kind"] == "system" and rating["data"]["text"] == "自动回访:按键1"
        # On the wire: the callback number was called, from the platform number.
        await eventually(lambda: bool(phone.snapshot().log_lines), "the phone logged the call")
        invite = next(line for line in phone.snapshot().log_lines if "followup-invite" in line)
        assert "from=12345 " in invite and "to=13912345678 " in invite
    finally:
        await phone.stop(timeout=5)


async def test_a_confidential_matter_without_consent_is_never_called(
    followup_bridge: RunningBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    phone = await citizen_phone(sandbox, tmp_path / "phone", "1")
    try:
        hid = await closed_matter(followup_bridge, confidential=True, callback="13700001111")

        def not_called() -> bool:
            return not any("to=13700001111" in line for line in phone.snapshot().log_lines)

        await holds(not_called, "no call to the confidential citizen", period=3)
        assert steps(await record(followup_bridge, hid)) == []
        status, tasks = await followup_bridge.request(
            "GET", "/v1/follow-ups", token=supervisor(followup_bridge)
        )
        assert status == 200
        (task,) = [t for t in tasks["items"] if t["id"] == hid]
        assert task["may_call_back"] is False and task["automated"] is False
        assert task["callback"] == "137****1111"  # confidential: masked even for a supervisor
    finally:
        await phone.stop(timeout=5)
        await asyncio.sleep(0)


async def test_an_unanswered_citizen_is_tried_twice_then_not_reached(
    followup_bridge: RunningBridge,
) -> None:
    hid = await closed_matter(followup_bridge)  # nobody listens on the phone's port
    rec: dict[str, Any] = {}

    async def settled() -> bool:
        rec.update(await record(followup_bridge, hid))
        return rec["state"]["satisfaction"] is not None

    await eventually(settled, "the follow-up gave up", within=60)
    assert rec["state"]["satisfaction"] == "not_reached"
    assert steps(rec)[0] == "follow_up_call" and steps(rec).count("follow_up_call") == 2
    assert len(steps(rec)) == 4  # two attempts, each started and ended
