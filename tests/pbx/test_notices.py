"""Notices of a major emergency (互相通报) on the real PBX: pushed to the linked 110 platform, rung
to plain lines, retried, with each recipient's receipt in the record.

The 110 platform is a real partner receiver (the product's own, lab.faults.partner.PartnerDesk)
behind a real partner link; the plain lines are the seed directory's SIPp desks. The proof is
what arrived: the notice record at 110's receiver, and the INVITE at each desk (the Yulong desk
number dialled, the record's id in X-Handoff-Id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge, start_bridge
from lab.faults.partner import PartnerDesk, bridge_env
from lab.sandbox import Sandbox
from lab.sipp import SippProcess

from .conftest import Parties
from .test_directory import request_user

pytestmark = pytest.mark.pbx

PORT, DESK_PORT = 18393, 18394


@pytest.fixture
def notifier(sandbox: Sandbox, tmp_path: Path) -> Iterator[RunningBridge]:
    """A 12345 bridge with a partner link to the 110 receiver (so 110 is a linked platform)."""
    rb = start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        tmp_path / "bridge",
        port=PORT,
        overrides={
            **bridge_env(DESK_PORT),
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
            "HOTLINE_BRIDGE_NOTICES__ATTEMPTS": "2",
            "HOTLINE_BRIDGE_NOTICES__RETRY_AFTER_S": "1",
            "HOTLINE_BRIDGE_NOTICES__RING_TIMEOUT_S": "3",
            "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
        },
    )
    try:
        yield rb
    finally:
        rb.stop()


async def desk(parties: Parties, endpoint: str, scenario: str = "partner_uas.xml") -> SippProcess:
    desks = parties.topology["desks"]
    proc = SippProcess(
        scenario,
        port=desks["ports"][endpoint],
        local_ip=desks["sip_host"],
        workdir=parties.workdir,
        name=f"{endpoint}-{Path(scenario).stem}",
    )
    parties.procs.append(await proc.start())
    return proc


async def settled(rb: RunningBridge, notice_id: str, token: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        status, view = await rb.request("GET", f"/v1/notices/{notice_id}", token=token)
        assert status == 200, view
        if view["state"] != "sending" or time.monotonic() > deadline:
            return view
        await asyncio.sleep(0.3)


async def test_a_notice_reaches_the_linked_platform_and_rings_each_plain_line(
    notifier: RunningBridge, parties: Parties, admin_ami: AmiSession, tmp_path: Path
) -> None:
    platform = PartnerDesk(tmp_path, DESK_PORT)
    await platform.up()
    try:
        fire = await desk(parties, "desk-119")
        gas = await desk(parties, "desk-gas", "partner_noanswer_uas.xml")
        token = notifier.token("1001")
        body = {
            "targets": ["110", "119", "gas"],
            "jurisdiction": "yulong",
            "event": "化工厂爆炸，浓烟",
            "place": "玉龙县工业园",
            "danger_to_life": True,
        }
        status, answer = await notifier.request("POST", "/v1/notices", body, token)
        assert status == 201, answer
        notice_id = answer["id"]
        view = await settled(notifier, notice_id, token, 40)
        by_target = {r["target"]: r for r in view["recipients"]}
        assert view["state"] == "partial", view
        assert by_target["110"]["kind"] == "linked" and by_target["110"]["delivery"] == "delivered"
        assert by_target["119"]["delivery"] == "delivered"
        assert by_target["gas"]["delivery"] == "failed"
        assert by_target["gas"]["call"]["attempt"] == 2  # retried once, then given up

        # The 110 platform's receiver holds the notice record (one push, nothing doubled).
        assert notice_id in platform.received_records()
        assert platform.doubled() == {}
        got = platform.store.get(notice_id)
        assert got is not None and got.snapshot.kind.value == "notice"
        assert got.snapshot.matter.jurisdiction.value == "yulong"

        # The plain lines were rung at their Yulong desks, the record's id in the call.
        user, invite = request_user(fire)
        assert user == "1192" and invite.header("X-Handoff-Id") == notice_id
        assert "<sip:12345@" in invite.header("From")  # from the platform number
        gas_invites = gas.snapshot().received("INVITE")
        assert len(gas_invites) == 2
        assert {
            i.start_line.split()[1].removeprefix("sip:").split("@")[0] for i in gas_invites
        } == {"967772"}

        # Every receipt is in the record.
        status, record = await notifier.request("GET", f"/v1/handoffs/{notice_id}", token=token)
        assert status == 200, record
        receipts = [
            (e["data"]["what"], e["data"]["target"])
            for e in record["events"]
            if e["data"].get("what") in ("notice_delivered", "notice_failed")
        ]
        assert sorted(receipts) == [
            ("notice_delivered", "110"),
            ("notice_delivered", "119"),
            ("notice_failed", "gas"),
        ]
    finally:
        await platform.close()


async def test_a_notice_that_cannot_go_is_refused_with_the_reason(
    notifier: RunningBridge, parties: Parties
) -> None:
    token = notifier.token("1001")
    for body, reason in (
        ({"targets": []}, "targets"),
        ({"targets": ["119", "119"]}, "more than once"),
        ({"targets": ["fire-brigade"]}, "unknown target 'fire-brigade'"),
    ):
        status, answer = await notifier.request("POST", "/v1/notices", body, token)
        assert status == 422, answer
        assert reason in str(answer["error"]), answer
