"""Carry-number transfer against the real sandbox PBX, with SIPp citizens, agents and partner.

The proof is in the SIP that left the PBX: the partner UAS checks From and P-Asserted-Identity
against the citizen's number (it refuses the call otherwise) and we read the INVITE it received.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge, start_bridge
from lab.sandbox import DEFAULT_TOPOLOGY
from lab.sipp import SippProcess

from tests.pbx.waiting import holds

from .conftest import Parties

pytestmark = pytest.mark.pbx


async def channels(ami: AmiSession) -> dict[str, dict[str, Any]]:
    """Live channels by endpoint prefix (``PJSIP/carrier``, ``PJSIP/agent1001``...)."""
    events = await ami.action_list("CoreShowChannels")
    return {
        str(e["Channel"]).rsplit("-", 1)[0]: dict(e)
        for e in events
        if e.get("Event") == "CoreShowChannel"
    }


def invites(proc: SippProcess) -> list[Any]:
    return proc.snapshot().received("INVITE")


async def test_carry_transfer_carries_the_citizen_number_to_110(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13800138000"
    await parties.agents()
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    assert call["citizen_number"] == number
    token = bridge.token(agent_id)

    status, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    handoff_id = body["handoff_id"]
    transfer = await bridge.wait_state(f"/v1/transfers/{body['transfer_id']}", token, {"answered"})
    assert transfer["outcome"] == "answered"
    steps = [e["what"] for e in transfer["timeline"]]
    assert steps[0] == "requested" and steps[-1] == "partner_answered"

    # What the 110 side really received.
    (invite,) = invites(partner)
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == handoff_id
    assert f"<{bridge.base_url}/v1/handoffs/{handoff_id}>" in invite.header("Call-Info")
    assert "<sip:12345@" in invite.header("Diversion")
    assert invite.header_all("History-Info")

    # Citizen and partner share a bridge; the agent leg is released.
    chans = await channels(admin_ami)
    assert set(chans) == {"PJSIP/carrier", "PJSIP/partner-110"}, sorted(chans)
    assert chans["PJSIP/carrier"]["BridgeId"]
    assert chans["PJSIP/carrier"]["BridgeId"] == chans["PJSIP/partner-110"]["BridgeId"]
    assert chans["PJSIP/carrier"]["CallerIDNum"] == number

    # The record exists and follows the call.
    status, record = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=token)
    assert status == 200, record
    kinds = [e["kind"] for e in record["events"]]
    assert "transfer_requested" in kinds and "partner_answered" in kinds


@pytest.mark.parametrize(
    ("scenario", "outcome"),
    [("partner_busy_uas.xml", "busy"), ("partner_noanswer_uas.xml", "no_answer")],
)
async def test_partner_that_does_not_take_the_call_returns_the_citizen_to_the_agent(
    bridge: RunningBridge,
    parties: Parties,
    admin_ami: AmiSession,
    scenario: str,
    outcome: str,
) -> None:
    number = "13900139000"
    agents = await parties.agents()
    partner = await parties.partner(scenario)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    status, body = await bridge.request(
        "POST", f"/v1/calls/{call['call_id']}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    transfer = await bridge.wait_state(
        f"/v1/transfers/{body['transfer_id']}", token, {"returned", "abandoned", "lost"}, 20
    )
    assert transfer["state"] == "returned", transfer
    assert transfer["outcome"] == outcome
    assert transfer["returned_to"] == agent_id
    assert len(invites(partner)) == 1

    # The same agent's phone rang a second time, still showing the citizen's number.
    agent_invites = invites(agents[agent_id])
    assert len(agent_invites) == 2
    assert f"<sip:{number}@" in agent_invites[1].header("From")
    # The citizen was never hung up: their channel is bridged with that agent again.
    chans = await channels(admin_ami)
    citizen = chans["PJSIP/carrier"]
    assert citizen["Uniqueid"] == call["call_id"]
    assert citizen["BridgeId"] == chans[f"PJSIP/agent{agent_id}"]["BridgeId"]
    _, calls = await bridge.request("GET", "/v1/calls", token=token)
    assert [c["call_id"] for c in calls["calls"]] == [call["call_id"]]

    status, record = await bridge.request("GET", f"/v1/handoffs/{body['handoff_id']}", token=token)
    kinds = [e["kind"] for e in record["events"]]
    assert "partner_failed" in kinds and "citizen_returned" in kinds


@pytest.mark.parametrize(
    ("case", "body", "headers", "status"),
    [
        ("unknown target", {"target": "999"}, "own", 422),
        ("control characters", {"target": "110\r\nAction: Hangup"}, "own", 422),
        ("control characters in the record", {"target": "110", "handoff": {"work_order_no": "a\nb"}}, "own", 422),
        ("malformed JSON", "{target: 110", "own", 400),
        ("oversized body", {"target": "110", "handoff": {"narrative": "x" * 100_000}}, "own", 413),
        ("no token", {"target": "110"}, "none", 401),
        ("wrong token", {"target": "110"}, "wrong", 401),
        ("another agent's call", {"target": "110"}, "other", 403),
    ],
)  # fmt: skip
async def test_bad_hotkey_requests_change_nothing_on_the_call(
    bridge: RunningBridge,
    parties: Parties,
    admin_ami: AmiSession,
    case: str,
    body: Any,
    headers: str,
    status: int,
) -> None:
    number = "13700137000"
    agents = await parties.agents()
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    before = await channels(admin_ami)
    other = next(a["id"] for a in bridge.topology["agents"] if a["id"] != agent_id)
    token = {
        "own": bridge.token(agent_id),
        "other": bridge.token(other),
        "wrong": "not-a-token-of-anyone",
        "none": None,
    }[headers]
    path = f"/v1/calls/{call['call_id']}/carry-transfer"
    if isinstance(body, str):
        got, answer = await asyncio.to_thread(_raw_post, bridge, path, body, token)
    else:
        got, answer = await bridge.request("POST", path, body, token)
    assert got == status, (case, answer)
    assert answer["error"]["reason"]

    async def untouched() -> bool:
        after = await channels(admin_ami)
        return (
            set(after) == set(before) == {"PJSIP/carrier", f"PJSIP/agent{agent_id}"}
            and after["PJSIP/carrier"]["BridgeId"] == before["PJSIP/carrier"]["BridgeId"]
            and invites(partner) == []
            and agents[agent_id].snapshot().received("BYE") == []
        )

    await holds(untouched, f"{case}: the call is untouched and 110 never rung")


def _raw_post(bridge: RunningBridge, path: str, body: str, token: str | None) -> tuple[int, Any]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(bridge.base_url + path, data=body.encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_ten_concurrent_presses_make_exactly_one_transfer(
    bridge: RunningBridge, parties: Parties
) -> None:
    number = "18600186000"
    await parties.agents()
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    presses = [
        bridge.request("POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token)
        for _ in range(10)
    ]
    answers = await asyncio.gather(*presses)
    statuses = sorted(status for status, _ in answers)
    # The first press wins; the rest find the call busy (409) or already gone from the agent.
    assert statuses.count(202) == 1, answers
    assert all(s == 409 for s in statuses if s != 202), answers
    (won,) = [body for status, body in answers if status == 202]
    await bridge.wait_state(f"/v1/transfers/{won['transfer_id']}", token, {"answered"})
    await holds(lambda: len(invites(partner)) == 1, "exactly one INVITE reached 110")


async def test_a_bridge_started_mid_call_rebuilds_its_calls_from_asterisk(
    bridge: RunningBridge, parties: Parties, tmp_path: Path
) -> None:
    """Channel names restart after an Asterisk restart and events are lost while the AMI link
    is down, so after every (re)connect the call model is rebuilt from CoreShowChannels."""
    number = "13800138000"
    await parties.agents()
    await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    late = await asyncio.to_thread(
        start_bridge, DEFAULT_TOPOLOGY, bridge.topology, tmp_path / "late", port=18399
    )
    try:
        token = late.token(agent_id)
        status, body = await late.request("GET", "/v1/calls", token=token)
        assert status == 200
        assert [c["call_id"] for c in body["calls"]] == [call["call_id"]]
        assert body["calls"][0]["citizen_number"] == number
        # ...and it can act on that call straight away.
        status, body = await late.request(
            "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
        )
        assert status == 202, body
        await late.wait_state(f"/v1/transfers/{body['transfer_id']}", token, {"answered"})
    finally:
        await asyncio.to_thread(late.stop)
