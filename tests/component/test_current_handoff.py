"""Screen data for the receiving agent: ``GET /v1/agents/{agent}/current-handoff``.

The join of the call model (who is bridged with the agent) and the receiving hook's call log
(which inbound channel carried which X-Handoff-Id), on the 110 site of asterisk/two-site/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings

from hotline_bridge.calls.api import CALLS
from hotline_bridge.calls.model import CallModel
from hotline_bridge.calls.service import CallService
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    HandoffKind,
)
from hotline_bridge.handoffs.recorder import StoreRecorder, open_recorder
from hotline_bridge.handoffs.screen import current_entry
from hotline_bridge.handoffs.store import CallEntry
from hotline_bridge.runtime.app import build

SITE_110 = Path(__file__).resolve().parents[2] / "asterisk" / "two-site" / "110.toml"
AGENT = {"Authorization": "Bearer two-site-token-110-agent-1101"}
HID = "h-01jabcdefghjkmnpqrstvwxyz0"
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def ev(name: str, uid: str, chan: str, **kw: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, "Linkedid": "1.1", "Channel": chan, **kw}


PARTNER_LEG = ("1.1", "PJSIP/partner-12345-00000001")
AGENT_LEG = ("1.2", "PJSIP/agent1101-00000002")
CITIZEN_LEG = ("2.1", "PJSIP/carrier-00000003")


def bridged(*legs: tuple[str, str], bridge: str = "b1") -> list[dict[str, str]]:
    out = [ev("Newchannel", uid, chan, CallerIDNum="13800138000") for uid, chan in legs]
    return out + [ev("BridgeEnter", uid, chan, BridgeUniqueid=bridge) for uid, chan in legs]


# -- the call model ------------------------------------------------------------------------------


def test_peers_of_agent_name_the_partner_leg_of_a_handed_over_call() -> None:
    mdl = CallModel({"agent1101": "1101"}, ["partner-12345"])
    for e in bridged(PARTNER_LEG, AGENT_LEG):
        mdl.apply(e, now=1.0)
    (peer,) = mdl.peers_of_agent("1101")
    assert peer.uniqueid == "1.1" and mdl.role_of(peer) == "partner"
    assert mdl.call_of_agent("1101") is None  # no citizen channel here: not a LiveCall
    assert mdl.peers_of_agent("9999") == []


def test_peers_of_agent_is_empty_off_a_call_and_after_it() -> None:
    mdl = CallModel({"agent1101": "1101"}, ["partner-12345"])
    assert mdl.peers_of_agent("1101") == []
    for e in bridged(PARTNER_LEG, AGENT_LEG):
        mdl.apply(e, now=1.0)
    mdl.apply(ev("Hangup", *PARTNER_LEG), now=2.0)
    assert mdl.peers_of_agent("1101") == []


# -- the join (pure) -----------------------------------------------------------------------------


def entry(call_id: str, handoff_id: str | None) -> CallEntry:
    kind = "from_partner" if handoff_id else "citizen"
    return CallEntry(call_id=call_id, arrived_at=NOW, kind=kind, handoff_id=handoff_id)


def test_current_entry_is_the_peer_that_carried_a_handoff() -> None:
    log = {"1.1": entry("1.1", None), "1.3": entry("1.3", HID)}
    assert current_entry(["1.1", "1.2", "1.3"], log.get) == log["1.3"]
    assert current_entry(["1.1", "1.2"], log.get) is None
    assert current_entry([], log.get) is None


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
async def site110(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient, CallService, StoreRecorder]]:
    monkeypatch.setenv("HOTLINE_BRIDGE_BRIDGE__STORE_PATH", str(tmp_path / "h.sqlite3"))
    settings = bridge_settings(SITE_110)
    with open_recorder(settings) as recorder:
        bridge = build(settings, recorder)
        calls = bridge.app[CALLS]
        calls.pbx_ready = True
        client = TestClient(TestServer(bridge.app))
        await client.start_server()
        try:
            yield client, calls, recorder
        finally:
            await client.close()


def receive_record(recorder: StoreRecorder) -> None:
    """The 12345 site's record, as the partner link stores it, and the hook's call log row."""
    record = new_handoff(
        HandoffInput(category="dispute.neighbour"),
        handoff_id=HID,
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_110,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=recorder.catalog,
        now=NOW,
    )
    recorder.store.create(record, outbox=False)
    recorder.store.open_call(
        CallEntry(
            call_id="1.1",
            arrived_at=NOW,
            kind="from_partner",
            caller="13800138000",
            handoff_id=HID,
            urgency="normal",
        )
    )


async def test_the_answering_agent_reads_the_record_of_the_call(
    site110: tuple[TestClient, CallService, StoreRecorder],
) -> None:
    client, calls, recorder = site110
    receive_record(recorder)
    for e in bridged(PARTNER_LEG, AGENT_LEG):
        calls.on_event(e)
    resp = await client.get("/v1/agents/1101/current-handoff", headers=AGENT)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["handoff_id"] == HID and body["call_id"] == "1.1"
    assert body["caller_number"] == "13800138000" and body["urgency"] == "normal"
    assert body["record"]["snapshot"]["matter"]["category"] == "dispute.neighbour"


async def test_refusals(site110: tuple[TestClient, CallService, StoreRecorder]) -> None:
    client, calls, recorder = site110
    path = "/v1/agents/1101/current-handoff"
    assert (await client.get(path)).status == 401
    other = {"Authorization": "Bearer two-site-token-110-supervisor-1"}
    assert (await client.get(path, headers=other)).status == 403
    assert (await client.get(path, headers=AGENT)).status == 409  # not on a call
    # A citizen's own call: no handoff.
    recorder.store.open_call(entry("2.1", None))
    for e in bridged(CITIZEN_LEG, AGENT_LEG):
        calls.on_event(e)
    resp = await client.get(path, headers=AGENT)
    assert resp.status == 404, await resp.json()
    calls.pbx_ready = False
    assert (await client.get(path, headers=AGENT)).status == 503


async def test_a_handoff_whose_record_never_arrived_is_404(
    site110: tuple[TestClient, CallService, StoreRecorder],
) -> None:
    client, calls, recorder = site110
    recorder.store.open_call(entry("1.1", HID))  # the hook saw the id; no record came
    for e in bridged(PARTNER_LEG, AGENT_LEG):
        calls.on_event(e)
    assert (await client.get("/v1/agents/1101/current-handoff", headers=AGENT)).status == 404
