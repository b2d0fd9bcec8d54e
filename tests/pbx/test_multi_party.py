"""Multi-party emergency calls on the real PBX: citizen + 12345 + 110 + 120 in one ConfBridge room.

A traffic accident with injuries: the agent has 110 in a three-way call and adds the ambulance
desk (120, a SIPp desk of the directory that refuses any INVITE not carrying the citizen's
number in From and P-Asserted-Identity). Asterisk's own ``ConfbridgeList`` counts the room after
each step: 4 parties, the agent leaves (3), 110 is dropped (2), and when 120 hangs up the citizen
is not left alone: back in the 12345 queue, answered by an agent again.
"""

from __future__ import annotations

from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.sipp import SippProcess

from tests.pbx.test_directory import desk, request_user
from tests.pbx.test_three_way import room, start_three_way, wait_room
from tests.pbx.waiting import eventually

from .conftest import Parties

pytestmark = pytest.mark.pbx

CITIZEN = "PJSIP/carrier"
P110 = "PJSIP/partner-110"
P120 = "PJSIP/desk-120"


async def conference(bridge: RunningBridge, conf_id: str, token: str) -> dict[str, Any]:
    status, body = await bridge.request("GET", f"/v1/conferences/{conf_id}", token=token)
    assert status == 200, body
    return dict(body)


def legs(conf: dict[str, Any]) -> dict[str, str]:
    return {p["leg"]: p["state"] for p in conf["partners"]}


async def test_four_parties_then_agent_leaves_110_dropped_and_the_citizen_back_to_the_queue(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13600136000"
    ambulance = await desk(parties, "desk-120", number)
    agent_id, token, body, _police, ctx = await start_three_way(bridge, parties, number)
    conf_id = body["conference_id"]
    await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})
    agent = f"PJSIP/agent{agent_id}"
    await wait_room(admin_ami, conf_id, {CITIZEN, agent, P110})

    # The agent adds 120: 4 parties.
    status, added = await bridge.request(
        "POST", f"/v1/conferences/{conf_id}/partners", {"target": "120"}, token
    )
    assert status == 202, added
    assert added["leg"] == "p2" and added["leg_handoff_id"] != body["handoff_id"]
    members = await wait_room(admin_ami, conf_id, {CITIZEN, agent, P110, P120}, within=15)
    assert len(members) == 4
    assert members[P120]["CallerIDNum"] == number
    conf = await conference(bridge, conf_id, token)
    assert conf["state"] == "active" and legs(conf) == {"p1": "in", "p2": "in"}

    # 120 was called with the citizen's own number (the SIPp desk refuses anything else) and
    # its own record's id, at the desk the directory names for the call's jurisdiction.
    user, invite = request_user(ambulance)
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    assert invite.header("X-Handoff-Id") == added["leg_handoff_id"]
    assert f"/v1/handoffs/{added['leg_handoff_id']}>" in invite.header("Call-Info")
    status, record = await bridge.request(
        "GET", f"/v1/handoffs/{added['leg_handoff_id']}", token=token
    )
    assert status == 200, record
    assert record["snapshot"]["target"] == "120" and record["snapshot"]["kind"] == "three_way"
    assert record["events"][0]["data"]["desk_number"] == user

    # A second press for 120 while it is in the room is refused, naming why.
    status, again = await bridge.request(
        "POST", f"/v1/conferences/{conf_id}/partners", {"target": "120"}, token
    )
    assert status == 409 and "already" in again["error"]["reason"], again

    # The agent leaves: 3 parties, citizen with 110 and 120.
    status, left = await bridge.request("POST", f"/v1/conferences/{conf_id}/leave", {}, token)
    assert status == 202, left
    await wait_room(admin_ami, conf_id, {CITIZEN, P110, P120})
    await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"agent_left"})

    # 110 is dropped: 2 parties, the citizen still with 120.
    status, dropped = await bridge.request(
        "POST", f"/v1/conferences/{conf_id}/partners/p1/drop", {}, token
    )
    assert status == 202, dropped
    await wait_room(admin_ami, conf_id, {CITIZEN, P120})
    conf = await conference(bridge, conf_id, token)
    assert conf["state"] == "agent_left" and legs(conf) == {"p1": "gone", "p2": "in"}
    # Dropping 120 now would leave the citizen alone: refused.
    status, refused = await bridge.request(
        "POST", f"/v1/conferences/{conf_id}/partners/p2/drop", {}, token
    )
    assert status == 409 and "alone" in refused["error"]["reason"], refused

    # 120 hangs up: the citizen goes back to the 12345 queue, never hung up.
    await admin_ami.action("Hangup", Channel=members[P120]["Channel"])
    conf = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"ended"})
    assert "citizen_to_queue" in [e["what"] for e in conf["timeline"]]
    assert legs(conf) == {"p1": "gone", "p2": "left"}
    await wait_room(admin_ami, conf_id, set())  # Asterisk's count: nobody left in the room
    _again, call = await bridge.wait_for_call(within=15)
    assert call["call_id"] == body["call_id"]  # the same citizen, answered by an agent again

    status, record = await bridge.request(
        "GET", f"/v1/handoffs/{added['leg_handoff_id']}", token=token
    )
    kinds = [e["kind"] for e in record["events"]]
    assert "partner_answered" in kinds and "three_way_ended" in kinds, kinds
    assert ctx["agents"][agent_id].snapshot().received("BYE")


async def test_an_added_partner_that_does_not_answer_leaves_the_room_as_it_was(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13600136001"
    desks = parties.topology["desks"]
    silent = SippProcess(
        "partner_noanswer_uas.xml",
        port=desks["ports"]["desk-120"],
        local_ip=desks["sip_host"],
        workdir=parties.workdir,
        name="desk-120-noanswer",
    )
    parties.procs.append(await silent.start())
    agent_id, token, body, _police, _ctx = await start_three_way(bridge, parties, number)
    conf_id = body["conference_id"]
    await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"active"})
    three = {CITIZEN, f"PJSIP/agent{agent_id}", P110}
    await wait_room(admin_ami, conf_id, three)

    status, added = await bridge.request(
        "POST", f"/v1/conferences/{conf_id}/partners", {"target": "120"}, token
    )
    assert status == 202, added

    async def leg_failed() -> bool:
        return legs(await conference(bridge, conf_id, token)).get("p2") == "failed"

    await eventually(leg_failed, "120 did not answer: its leg failed", within=40, every=0.25)
    conf = await conference(bridge, conf_id, token)
    assert conf["state"] == "active"  # citizen, agent and 110 go on
    assert set(await room(admin_ami, conf_id)) == three
    (p2,) = [p for p in conf["partners"] if p["leg"] == "p2"]
    assert p2["outcome"] == "no_answer"
    assert len(silent.snapshot().received("INVITE")) == 1
