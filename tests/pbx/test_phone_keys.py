"""Phone keys on the real PBX: the agent's phone dials *1 / *2 / *0 as RFC 4733 DTMF.

Asterisk's applicationmap (two-party call) and the agent's ConfBridge menu (three-way room) run
[hotline-keys] on the agent's channel, which asks the bridge's `key` hook; the proof is what
left the PBX: the 110 desk's INVITE with the citizen's number, the room's members.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.dtmf import write_presses
from lab.sipp import SippProcess
from lab.softphone import BARESIP, Softphone

from tests.pbx.test_directory import desk, request_user
from tests.pbx.test_three_way import room, wait_room
from tests.pbx.waiting import eventually, holds

from .conftest import Parties

pytestmark = pytest.mark.pbx


def supervisor(bridge: RunningBridge) -> str:
    return str(
        next(c["token"] for c in bridge.topology["api_clients"] if c["role"] == "supervisor")
    )


async def key_phones(parties: Parties, keys: list[str]) -> dict[str, SippProcess]:
    """Every agent's phone is a SIPp UAS that dials ``keys`` (1.5 s after answering, then 6 s
    later); each has a media port of its own (the keys are RTP)."""
    write_presses(parties.workdir, keys)
    phones = {}
    for i, agent in enumerate(parties.topology["agents"]):
        proc = SippProcess(
            "agent_keys_uas.xml",
            port=agent["sip_port"],
            local_ip=agent["sip_host"],
            workdir=parties.workdir,
            name=agent["endpoint"],
            extra_args=["-mp", str(6100 + 100 * i)],
        )
        parties.procs.append(await proc.start())
        phones[agent["id"]] = proc
    return phones


def pressed(phone: SippProcess, n: int) -> bool:
    return (
        f"agent-key-{n}" in phone.log_file.read_text(errors="replace")
        if phone.log_file.exists()
        else False
    )


async def carried_to_110(partner: SippProcess, number: str) -> str:
    """The one INVITE the 110 desk got: the citizen's number in From and P-Asserted-Identity
    (what left the PBX). Returns its X-Handoff-Id."""
    await eventually(lambda: bool(partner.snapshot().received("INVITE")), "110 was called", 15)
    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    handoff_id = invite.header("X-Handoff-Id")
    assert f"/v1/handoffs/{handoff_id}>" in invite.header("Call-Info")
    return handoff_id


async def record(bridge: RunningBridge, handoff_id: str) -> dict[str, Any]:
    status, body = await bridge.request(
        "GET", f"/v1/handoffs/{handoff_id}", token=supervisor(bridge)
    )
    assert status == 200, body
    return dict(body)


def key_notes(rec: dict[str, Any]) -> list[str]:
    return [
        e["data"].get("detail", "")
        for e in rec["events"]
        if e["kind"] == "call_progress" and e["data"].get("what") == "phone_key"
    ]


async def test_star1_on_the_agents_phone_carries_the_citizen_number_to_110(
    bridge: RunningBridge, parties: Parties
) -> None:
    number = "13800138011"
    phones = await key_phones(parties, ["*1", "*0"])
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    assert call["citizen_number"] == number

    # Nobody pressed anything through the API: the INVITE at 110 comes from the key alone.
    handoff_id = await carried_to_110(partner, number)
    assert pressed(phones[agent_id], 1)

    rec = await record(bridge, handoff_id)
    assert rec["snapshot"]["kind"] == "carry_transfer"
    assert rec["snapshot"]["created_by"]["id"] == agent_id
    assert key_notes(rec) == ["carry110 (*1) on the agent's phone"]
    await eventually(lambda: _has_kind(bridge, handoff_id, "partner_answered"), "110 answered", 15)
    # The carry took the agent's leg away before the second key: it was never dialled.
    await eventually(lambda: bool(phones[agent_id].snapshot().received("BYE")), "agent BYE")
    assert not pressed(phones[agent_id], 2)


async def _has_kind(bridge: RunningBridge, handoff_id: str, kind: str) -> bool:
    rec = await record(bridge, handoff_id)
    return any(e["kind"] == kind for e in rec["events"])


async def test_star2_joins_110_and_star0_leaves_the_citizen_with_110(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13800138012"
    phones = await key_phones(parties, ["*2", "*0"])
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()

    handoff_id = await carried_to_110(partner, number)
    rec = await record(bridge, handoff_id)
    assert rec["snapshot"]["kind"] == "three_way"
    assert key_notes(rec) == ["threeway110 (*2) on the agent's phone"]
    rooms = await admin_ami.action_list("ConfbridgeListRooms")
    (conf_id,) = [str(r["Conference"]) for r in rooms if r.get("Event") == "ConfbridgeListRooms"]
    await wait_room(
        admin_ami, conf_id, {"PJSIP/carrier", f"PJSIP/agent{agent_id}", "PJSIP/partner-110"}
    )

    # *0, dialled in the room (the agent's ConfBridge menu): the agent leaves, 110 stays.
    await eventually(lambda: pressed(phones[agent_id], 2), "the agent dialled *0", 10)
    members = await wait_room(admin_ami, conf_id, {"PJSIP/carrier", "PJSIP/partner-110"})
    assert members["PJSIP/carrier"]["CallerIDNum"] == number
    await eventually(lambda: bool(phones[agent_id].snapshot().received("BYE")), "agent BYE")
    await holds(lambda: not partner.snapshot().received("BYE"), "110 keeps the citizen")
    assert set(await room(admin_ami, conf_id)) == {"PJSIP/carrier", "PJSIP/partner-110"}
    await eventually(lambda: _has_kind(bridge, handoff_id, "agent_left"), "agent_left recorded")


async def test_star3_in_the_room_adds_120_with_the_citizen_number(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    """Multi-party by phone key: *2 joins 110, then *3 (the agent's room menu) calls the
    ambulance desk in as a fourth party, under its own record."""
    number = "13800138013"
    ambulance = await desk(parties, "desk-120", number)
    phones = await key_phones(parties, ["*2", "*3"])
    partner = await parties.partner(citizen=number)
    await parties.citizen(number, hold=40)
    agent_id, _call = await bridge.wait_for_call()
    await carried_to_110(partner, number)
    rooms = await admin_ami.action_list("ConfbridgeListRooms")
    (conf_id,) = [str(r["Conference"]) for r in rooms if r.get("Event") == "ConfbridgeListRooms"]

    await eventually(lambda: pressed(phones[agent_id], 2), "the agent dialled *3", 10)
    four = {"PJSIP/carrier", f"PJSIP/agent{agent_id}", "PJSIP/partner-110", "PJSIP/desk-120"}
    members = await wait_room(admin_ami, conf_id, four, within=15)
    assert members["PJSIP/desk-120"]["CallerIDNum"] == number
    _user, invite = request_user(ambulance)
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    rec = await record(bridge, invite.header("X-Handoff-Id"))
    assert rec["snapshot"]["target"] == "120" and rec["snapshot"]["kind"] == "three_way"
    assert key_notes(rec) == ["add120 (*3) in the room"]


# -- a real softphone (baresip) as the agent's phone --------------------------------------------


@pytest.fixture
async def softphone(parties: Parties) -> AsyncIterator[Softphone]:
    """Agent 1001's phone is baresip; agent 1002's answers busy, so the queue offers 1001."""
    if shutil.which(BARESIP) is None:
        if os.environ.get("HOTLINE_REQUIRE_PBX"):
            pytest.fail("baresip is missing: `make deps` installs it (Debian's baresip-core)")
        pytest.skip("baresip is not installed (make deps installs it)")
    a1, a2 = parties.topology["agents"]
    await parties.busy(a2)
    phone = Softphone(parties.workdir, a1["endpoint"], a1["sip_port"], cons_port=5555)
    await phone.start()
    try:
        yield phone
    finally:
        await phone.stop()


async def test_a_real_softphone_dials_star1_and_110_gets_the_citizen_number(
    bridge: RunningBridge, parties: Parties, softphone: Softphone
) -> None:
    number = "13800138021"
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call(within=20)
    assert agent_id == "1001" and call["citizen_number"] == number

    await softphone.press("*1")
    handoff_id = await carried_to_110(partner, number)
    rec = await record(bridge, handoff_id)
    assert rec["snapshot"]["kind"] == "carry_transfer"
    assert key_notes(rec) == ["carry110 (*1) on the agent's phone"]
    await eventually(lambda: _has_kind(bridge, handoff_id, "partner_answered"), "110 answered", 15)


async def test_a_real_softphone_refused_key_beeps_to_the_agent_and_drops_nobody(
    bridge: RunningBridge, parties: Parties, softphone: Softphone, admin_ami: AmiSession
) -> None:
    """*2 while 110 rings and never answers; *0 (leave) is refused: 110 is not in the room, and
    leaving would leave the citizen alone. The beep plays on the agent's channel only; *9 then
    cancels the partner leg and citizen and agent talk on."""
    number = "13800138022"
    partner = await parties.partner("partner_noanswer_uas.xml")
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call(within=20)
    assert agent_id == "1001"

    await softphone.press("*2")
    await eventually(lambda: bool(partner.snapshot().received("INVITE")), "110 rings", 15)
    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    rooms = await admin_ami.action_list("ConfbridgeListRooms")
    (conf_id,) = [str(r["Conference"]) for r in rooms if r.get("Event") == "ConfbridgeListRooms"]
    both = {"PJSIP/carrier", "PJSIP/agent1001"}
    await wait_room(admin_ami, conf_id, both)

    mark = admin_ami.mark()
    await softphone.press("*0")
    beeps = await admin_ami.wait_event(
        lambda e: e.get("Event") == "AGIExecStart" and "beeperr" in str(e.get("Command", "")),
        since=mark,
        timeout=10,
    )
    assert str(beeps["Channel"]).startswith("PJSIP/agent1001-")
    # Nothing was played to the citizen, and nobody left the room.
    played = admin_ami.find_events(
        lambda e: (
            e.get("Event") in ("AGIExecStart", "Newexten")
            and str(e.get("Channel", "")).startswith("PJSIP/carrier")
        ),
        since=mark,
    )
    assert played == []
    await holds(lambda: _room_is(admin_ami, conf_id, both), "citizen and agent stay", 1.0)
    token = bridge.token(agent_id)
    conf = await bridge.request("GET", f"/v1/conferences/{conf_id}", token=token)
    assert conf[0] == 200 and conf[1]["state"] not in ("agent_left", "ended"), conf

    await softphone.press("*9")
    conf_state = await bridge.wait_state(f"/v1/conferences/{conf_id}", token, {"cancelled"})
    assert conf_state["outcome"] == "cancelled"
    await eventually(lambda: bool(partner.snapshot().received("CANCEL")), "110's leg cancelled")
    await holds(lambda: _room_is(admin_ami, conf_id, both), "citizen and agent talk on", 1.0)


async def _room_is(ami: AmiSession, conf_id: str, endpoints: set[str]) -> bool:
    return set(await room(ami, conf_id)) == endpoints
