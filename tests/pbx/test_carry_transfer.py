"""Carry-number transfer against the real sandbox PBX, with SIPp citizens, agents and partner.

The proof is in the SIP that left the PBX: the partner UAS checks From and P-Asserted-Identity
against the citizen's number (it refuses the call otherwise) and we read the INVITE it received.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Parties, RunningBridge
from support.ami import AmiSession

pytestmark = pytest.mark.pbx


async def wait_for_call(bridge: RunningBridge, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The agent (id) whose call the queue set up, and the call as GET /v1/calls shows it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for agent in bridge.topology["agents"]:
            status, body = await bridge.request("GET", "/v1/calls", token=agent["token"])
            assert status == 200, body
            if body["calls"]:
                return agent["id"], body["calls"][0]
        await asyncio.sleep(0.1)
    raise AssertionError("no citizen call reached an agent")


async def wait_state(
    bridge: RunningBridge, path: str, token: str, states: set[str], timeout: float = 15.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    body: Any = None
    while asyncio.get_running_loop().time() < deadline:
        status, body = await bridge.request("GET", path, token=token)
        assert status == 200, body
        if body["state"] in states:
            return dict(body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never reached {states}; last: {body}")


async def channels(ami: AmiSession) -> list[dict[str, str]]:
    events = await ami.action_list("CoreShowChannels")
    return [dict(e) for e in events if e.get("Event") == "CoreShowChannel"]


async def test_carry_transfer_carries_the_citizen_number_to_110(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13800138000"
    await parties.agents()
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await wait_for_call(bridge)
    assert call["citizen_number"] == number
    token = bridge.token(agent_id)

    status, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    handoff_id = body["handoff_id"]
    transfer = await wait_state(bridge, f"/v1/transfers/{body['transfer_id']}", token, {"answered"})
    assert transfer["outcome"] == "answered"
    assert [e["what"] for e in transfer["timeline"]][0] == "requested"
    assert "partner_answered" in [e["what"] for e in transfer["timeline"]]

    # What the 110 side really received.
    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == handoff_id
    assert f"{bridge.base_url}/v1/handoffs/{handoff_id}" in invite.header("Call-Info")
    assert "<sip:12345@" in invite.header("Diversion")

    # Citizen and partner share a bridge; the agent leg is gone.
    chans = await channels(admin_ami)
    by_endpoint = {c["Channel"].rsplit("-", 1)[0]: c for c in chans}
    assert set(by_endpoint) == {"PJSIP/carrier", "PJSIP/partner-110"}, sorted(by_endpoint)
    assert by_endpoint["PJSIP/carrier"]["BridgeId"]
    assert by_endpoint["PJSIP/carrier"]["BridgeId"] == by_endpoint["PJSIP/partner-110"]["BridgeId"]
    assert by_endpoint["PJSIP/carrier"]["CallerIDNum"] == number

    # The record was written and follows the call.
    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert status == 200, record
    kinds = [e["kind"] for e in record["events"]]
    assert "transfer_requested" in kinds and "partner_answered" in kinds
