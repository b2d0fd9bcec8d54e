"""The linkage directory on the real PBX: each call reaches its own jurisdiction's desk.

The sandbox bridge routes by the seed directory (src/hotline_bridge/directory/targets.toml); its
desks are SIPp UASes ([desks] of asterisk/sandbox.toml). Calls arriving on the main carrier trunk
are Gucheng's, calls on [county_trunk] Yulong's (the entry hook's jurisdiction). The proof is the
INVITE each desk received: which number was dialled (the request URI), and that it carries the
citizen's own number in From and P-Asserted-Identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.calls import citizen_uac
from lab.sipp import SippProcess

from .conftest import Parties

pytestmark = pytest.mark.pbx


async def desk(parties: Parties, endpoint: str, number: str) -> SippProcess:
    """The SIPp desk behind ``endpoint``, refusing any INVITE not from ``number``."""
    desks = parties.topology["desks"]
    proc = SippProcess(
        "partner_uas.xml",
        port=desks["ports"][endpoint],
        local_ip=desks["sip_host"],
        workdir=parties.workdir,
        name=endpoint,
        variables={"citizen": number},
    )
    parties.procs.append(await proc.start())
    return proc


async def county_citizen(parties: Parties, number: str) -> SippProcess:
    """A citizen calling 12345 over Yulong's own trunk."""
    trunk = parties.topology["county_trunk"]
    proc = citizen_uac(parties.topology, parties.workdir, number=number, port=trunk["sip_port"])
    parties.procs.append(await proc.start(settle=0))
    return proc


async def carried(
    bridge: RunningBridge, body: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The next answered call carried with ``body``: (agent token, transfer, record)."""
    agent_id, call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    status, reply = await bridge.request(
        "POST", f"/v1/calls/{call['call_id']}/carry-transfer", body, token
    )
    assert status == 202, reply
    transfer = await bridge.wait_state(
        f"/v1/transfers/{reply['transfer_id']}", token, {"answered", "returned", "lost"}, 20
    )
    status, record = await bridge.request("GET", f"/v1/handoffs/{reply['handoff_id']}", token=token)
    assert status == 200, record
    return token, transfer, record


def request_user(proc: SippProcess) -> tuple[str, Any]:
    (invite,) = proc.snapshot().received("INVITE")
    uri = invite.start_line.split()[1]  # INVITE sip:1102@127.0.0.1:5111 SIP/2.0
    return uri.removeprefix("sip:").split("@", 1)[0], invite


async def test_two_jurisdictions_reach_two_different_110_desks(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    gucheng_number, yulong_number = "13800138001", "13900139002"
    await parties.agents()
    city_desk = await parties.partner(citizen=gucheng_number)  # partner-110: the city desk
    yulong_desk = await desk(parties, "desk-110-yulong", yulong_number)

    await parties.citizen(gucheng_number)
    _, transfer, record = await carried(bridge, {"target": "110"})
    assert transfer["state"] == "answered", transfer
    user, invite = request_user(city_desk)
    assert user == "110"
    assert f"<sip:{gucheng_number}@" in invite.header("From")
    assert f"<sip:{gucheng_number}@" in invite.header("P-Asserted-Identity")
    assert record["snapshot"]["matter"]["jurisdiction"] == "gucheng"
    assert record["events"][0]["data"] == {
        "desk": "city",
        "desk_number": "110",
        "call_jurisdiction": "gucheng",
        "jurisdiction_override": "no",
    }

    await county_citizen(parties, yulong_number)
    _, transfer, record = await carried(bridge, {"target": "110"})
    assert transfer["state"] == "answered", transfer
    user, invite = request_user(yulong_desk)
    assert user == "1102"  # Yulong's own 110 desk
    assert invite.header("X-Handoff-Id") == record["id"]
    assert f"<sip:{yulong_number}@" in invite.header("From")
    assert f"<sip:{yulong_number}@" in invite.header("P-Asserted-Identity")
    assert record["snapshot"]["matter"]["jurisdiction"] == "yulong"
    assert record["events"][0]["data"]["desk"] == "yulong"
    assert len(city_desk.snapshot().received("INVITE")) == 1  # nothing more reached the city


async def test_a_plain_line_gets_the_agent_s_chosen_jurisdiction_and_the_record_by_reference(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13700137003"
    await parties.agents()
    fire = await desk(parties, "desk-119", number)
    await parties.citizen(number)  # a Gucheng caller reporting a fire across the line in Yulong
    _, transfer, record = await carried(
        bridge, {"target": "119", "handoff": {"jurisdiction": "yulong"}}
    )
    assert transfer["state"] == "answered", transfer
    user, invite = request_user(fire)
    assert user == "1192"
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    # By reference: the record's id and URL travel in the call's own headers.
    assert invite.header("X-Handoff-Id") == record["id"]
    assert f"/v1/handoffs/{record['id']}>" in invite.header("Call-Info")
    assert record["snapshot"]["target"] == "119"
    assert record["snapshot"]["matter"]["jurisdiction"] == "yulong"
    assert record["events"][0]["data"]["jurisdiction_override"] == "yes"
    assert record["events"][0]["data"]["call_jurisdiction"] == "gucheng"


async def test_a_duty_line_s_desk_reads_the_record_its_call_carried(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13500135005"
    await parties.agents()
    water = await desk(parties, "desk-water", number)
    await county_citizen(parties, number)  # a burst main in Yulong
    _, transfer, record = await carried(bridge, {"target": "water", "handoff": {"place": "玉龙县"}})
    assert transfer["state"] == "answered", transfer
    user, invite = request_user(water)
    assert user == "966062"  # the water company's Yulong duty desk
    handoff_id = invite.header("X-Handoff-Id")
    assert handoff_id == record["id"]
    # The desk reads the record by the id its call carried, with its own token ...
    water_co = next(c["token"] for c in bridge.topology["api_clients"] if c["id"] == "water-co")
    status, seen = await bridge.request("GET", f"/v1/handoffs/{handoff_id}", token=water_co)
    assert status == 200, seen
    assert seen["snapshot"]["content"]["place"] == "玉龙县"
    assert seen["snapshot"]["citizen"]["number"] != number  # masked: the desk has the call
    # ... and nothing else: a record handed to 119 is not its to read.
    status, answer = await bridge.request("GET", "/v1/handoffs?limit=1", token=water_co)
    assert status == 403, answer


async def test_a_target_that_takes_no_three_way_call_is_refused_and_the_call_stays(
    bridge: RunningBridge, parties: Parties, admin_ami: AmiSession
) -> None:
    number = "13600136004"
    await parties.agents()
    await parties.citizen(number)
    agent_id, call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    status, reply = await bridge.request(
        "POST", f"/v1/calls/{call['call_id']}/three-way", {"target": "water"}, token
    )
    assert status == 422 and "no three-way" in reply["error"]["reason"], reply
    status, reply = await bridge.request(
        "POST", f"/v1/calls/{call['call_id']}/carry-transfer", {"target": "fire"}, token
    )
    assert status == 422 and "unknown target 'fire'" in reply["error"]["reason"], reply
    # Nothing moved: the citizen is still with the agent.
    events = await admin_ami.action_list("CoreShowChannels")
    names = {
        str(e["Channel"]).rsplit("-", 1)[0] for e in events if e.get("Event") == "CoreShowChannel"
    }
    assert names == {"PJSIP/carrier", f"PJSIP/agent{agent_id}"}, names


def test_the_sandbox_has_a_desk_for_every_desk_of_the_directory(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    from hotline_bridge.directory.configured import endpoints
    from hotline_bridge.directory.loader import load_directory

    topo = bridge.topology
    have = set(topo["desks"]["ports"]) | {t["endpoint"] for t in topo["targets"].values()}
    assert set(endpoints(load_directory())) <= have
