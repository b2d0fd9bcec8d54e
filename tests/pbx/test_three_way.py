"""Three-way calls against the real sandbox PBX: citizen, agent and 110 in one ConfBridge room."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge

from tests.pbx.waiting import eventually, holds

from .conftest import Parties

pytestmark = pytest.mark.pbx


async def room(ami: AmiSession, conference_id: str) -> dict[str, dict[str, Any]]:
    """ConfBridge members by endpoint prefix, as Asterisk lists them."""
    members = await ami.action_list("ConfbridgeList", Conference=conference_id)
    return {
        str(m["Channel"]).rsplit("-", 1)[0]: dict(m)
        for m in members
        if m.get("Event") == "ConfbridgeList"
    }


async def wait_room(
    ami: AmiSession, conference_id: str, endpoints: set[str], within: float = 10
) -> dict[str, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    members: dict[str, dict[str, Any]] = {}
    while loop.time() < deadline:
        members = await room(ami, conference_id)
        if set(members) == endpoints:
            return members
        await asyncio.sleep(0.05)
    raise AssertionError(f"room {conference_id} has {sorted(members)}, wanted {sorted(endpoints)}")


async def start_three_way(
    bridge: RunningBridge, parties: Parties, number: str, partner_scenario: str = "partner_uas.xml"
) -> tuple[str, str, dict[str, Any], Any, dict[str, Any]]:
    agents = await parties.agents()
    variables = {"citizen": number} if partner_scenario == "partner_uas.xml" else {}
    partner = await parties.partner(partner_scenario, **variables)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    status, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/three-way", {"target": "110"}, token
    )
    assert status == 202, body
    return agent_id, token, body, partner, {"agents": agents, "call": call}


async def test_three_way_then_the_agent_leaves(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13800138000"
    agent_id, token, body, partner, ctx = await start_three_way(bridge, parties, number)
    conf_id = body["conference_id"]
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})
    assert conf["members"] == ["agent", "citizen", "partner"]
    three = {"PJSIP/carrier", f"PJSIP/agent{agent_id}", "PJSIP/partner-110"}
    await wait_room(admin_ami, conf_id, three)

    # 110 was called with the citizen's own number and the handoff id.
    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == body["handoff_id"]
    assert f"/v1/handoffs/{body['handoff_id']}>" in invite.header("Call-Info")

    status, left = await bridge.request("POST", f"/v1/conferences/{conf_id}/leave", {}, token)
    assert status == 202, left
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"agent_left"})
    assert conf["members"] == ["citizen", "partner"]
    members = await wait_room(admin_ami, conf_id, {"PJSIP/carrier", "PJSIP/partner-110"})
    assert members["PJSIP/carrier"]["CallerIDNum"] == number
    # The agent's phone gets its BYE; citizen and partner go on talking.
    agent = ctx["agents"][agent_id]
    await eventually(lambda: bool(agent.snapshot().received("BYE")), "the agent's phone got BYE")
    await holds(lambda: not partner.snapshot().received("BYE"), "110 keeps talking to the citizen")
    assert set(await room(admin_ami, conf_id)) == {"PJSIP/carrier", "PJSIP/partner-110"}

    status, record = await bridge.request("GET", f"/v1/handoffs/{body['handoff_id']}", token=token)
    kinds = [e["kind"] for e in record["events"]]
    assert "three_way_started" in kinds and "agent_left" in kinds


async def test_three_way_cancel_keeps_citizen_and_agent_talking(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13900139000"
    agent_id, token, body, partner, ctx = await start_three_way(bridge, parties, number)
    conf_id = body["conference_id"]
    await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})

    status, answer = await bridge.request("POST", f"/v1/conferences/{conf_id}/cancel", {}, token)
    assert status == 202, answer
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"cancelled"})
    assert conf["outcome"] == "cancelled"
    await wait_room(admin_ami, conf_id, {"PJSIP/carrier", f"PJSIP/agent{agent_id}"})
    await eventually(lambda: bool(partner.snapshot().received("BYE")), "110's leg got BYE")
    agent = ctx["agents"][agent_id]
    await holds(lambda: not agent.snapshot().received("BYE"), "the agent stays with the citizen")
    assert set(await room(admin_ami, conf_id)) == {"PJSIP/carrier", f"PJSIP/agent{agent_id}"}
    # Leaving is no longer possible: there is no partner to leave the citizen with.
    status, _ = await bridge.request("POST", f"/v1/conferences/{conf_id}/leave", {}, token)
    assert status == 409


async def test_partner_no_answer_keeps_citizen_and_agent_talking(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    agent_id, token, body, partner, ctx = await start_three_way(
        bridge, parties, "13700137000", "partner_noanswer_uas.xml"
    )
    conf_id = body["conference_id"]
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"partner_failed"}, 15)
    assert conf["outcome"] == "no_answer"
    assert len(partner.snapshot().received("INVITE")) == 1
    await wait_room(admin_ami, conf_id, {"PJSIP/carrier", f"PJSIP/agent{agent_id}"})
    assert ctx["agents"][agent_id].snapshot().received("BYE") == []


async def test_citizen_hang_up_ends_the_room(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    agent_id, token, body, partner, ctx = await start_three_way(bridge, parties, "15000150000")
    conf_id = body["conference_id"]
    await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})
    citizen = (await room(admin_ami, conf_id))["PJSIP/carrier"]["Channel"]
    await admin_ami.action("Hangup", Channel=citizen)
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"ended"})
    assert conf["members"] == []
    agent = ctx["agents"][agent_id]
    await eventually(lambda: bool(partner.snapshot().received("BYE")), "110's leg got BYE")
    await eventually(lambda: bool(agent.snapshot().received("BYE")), "the agent's phone got BYE")
