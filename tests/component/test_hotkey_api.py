"""The hotkey HTTP contract: status codes, reasons, and that bad input never reaches the PBX.

The PBX side is a recorder of submitted commands: these tests prove the HTTP edge's decisions,
not that a call moved (tests/pbx does that against real Asterisk and SIPp).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings

from hotline_bridge.calls import api as calls_api
from hotline_bridge.calls.api import CALLS
from hotline_bridge.calls.model import CallModel, LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.conferences import api as conferences_api
from hotline_bridge.conferences.api import CONFERENCES
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.core.commands import BlindTransfer, Command
from hotline_bridge.directory.model import DialPlanEntry
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.store import MachineRow
from hotline_bridge.runtime.app import make_app
from hotline_bridge.transfers import api as transfers_api
from hotline_bridge.transfers.api import TRANSFERS
from hotline_bridge.transfers.service import TransferService

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
TOKEN_1001 = {"Authorization": "Bearer sandbox-token-agent-1001"}
TOKEN_1002 = {"Authorization": "Bearer sandbox-token-agent-1002"}
SUPERVISOR = {"Authorization": "Bearer sandbox-token-supervisor-1"}


@dataclass
class MemoryRecorder:
    opened: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    desks: list[DialPlanEntry | None] = field(default_factory=list)
    jurisdictions: dict[str, str] = field(default_factory=dict)  # call id -> entry hook's

    def open(
        self,
        *,
        kind: str,
        call: LiveCall,
        target: str,
        handoff: HandoffInput,
        now: float,
        desk: DialPlanEntry | None = None,
        handoff_id: str | None = None,
        machine: MachineRow | None = None,
    ) -> str:
        hid = handoff_id or f"h-{len(self.opened) + 1}"
        self.opened.append(hid)
        self.desks.append(desk)
        return hid

    def jurisdiction(self, call_id: str) -> str:
        return self.jurisdictions.get(call_id, "unknown")

    def note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        self.notes.append((handoff_id, what))

    def url(self, handoff_id: str) -> str:
        return f"http://127.0.0.1:8345/v1/handoffs/{handoff_id}"


@dataclass
class FakeAmi:
    state: str = "ready"

    @dataclass
    class _Stats:
        reconnects: int = 0

    stats: _Stats = field(default_factory=_Stats)


@dataclass
class Harness:
    client: TestClient
    submitted: list[Command]
    recorder: MemoryRecorder
    calls: CallService


def ev(name: str, uid: str, chan: str, **kw: str) -> dict[str, str]:
    return {"Event": name, "Uniqueid": uid, "Linkedid": "1.1", "Channel": chan, **kw}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = bridge_settings(TOPOLOGY)
    model = CallModel({a.endpoint: a.id for a in settings.agents}, ["partner-110"])
    calls = CallService(model)
    calls.pbx_ready = True
    for e in (
        ev("Newchannel", "1.1", "PJSIP/carrier-00000001", CallerIDNum="13800138000"),
        ev("Newchannel", "1.2", "PJSIP/agent1001-00000002", CallerIDNum="13800138000"),
        ev("BridgeEnter", "1.1", "PJSIP/carrier-00000001", BridgeUniqueid="b1"),
        ev("BridgeEnter", "1.2", "PJSIP/agent1001-00000002", BridgeUniqueid="b1"),
    ):
        calls.on_event(e)
    submitted: list[Command] = []
    recorder = MemoryRecorder()
    transfers = TransferService(settings, calls, recorder, submitted.extend)
    conferences = ConferenceService(settings, calls, recorder, submitted.extend)
    app = make_app(settings, FakeAmi())  # type: ignore[arg-type]
    app[CALLS], app[TRANSFERS], app[CONFERENCES] = calls, transfers, conferences
    app.router.add_routes([*calls_api.routes(), *transfers_api.routes(), *conferences_api.routes()])
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Harness(client, submitted, recorder, calls)
    finally:
        await client.close()


async def post(h: Harness, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    resp = await h.client.post(
        path, data=data, headers={**headers, "Content-Type": "application/json"}
    )
    return resp.status, await resp.json()


async def test_carry_transfer_accepted(harness: Harness) -> None:
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1001
    )
    assert status == 202, body
    assert body["state"] == "requested" and body["call_id"] == "1.1"
    assert body["handoff_id"].startswith("h-") and body["transfer_id"].startswith("t-")
    assert harness.submitted[-1].__class__.__name__ == "BlindTransfer"
    # The record was opened before any command was handed over.
    assert harness.recorder.opened == [body["handoff_id"]]
    resp = await harness.client.get(f"/v1/transfers/{body['transfer_id']}", headers=TOKEN_1001)
    view = await resp.json()
    assert view["state"] == "requested" and view["citizen_number"] == "138****8000"


async def test_each_accepted_press_reports_its_record_write_a_refused_one_none(
    harness: Harness,
) -> None:
    observed: list[tuple[str, float]] = []
    harness.client.app[TRANSFERS].book.on_recorded = lambda k, s: observed.append((k, s))
    status, _ = await post(harness, "/v1/agents/1001/carry-transfer", {"target": "999"}, TOKEN_1001)
    assert status == 422 and observed == []  # refused before any record was written
    status, _ = await post(harness, "/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1001)
    assert status == 202
    ((kind, seconds),) = observed
    assert kind == "carry_transfer" and 0 <= seconds < 5


async def test_by_call_id_needs_the_agent_on_that_call(harness: Harness) -> None:
    status, body = await post(harness, "/v1/calls/1.1/three-way", {"target": "110"}, TOKEN_1002)
    assert status == 403 and "another agent" in body["error"]["reason"]
    status, body = await post(harness, "/v1/calls/1.1/three-way", {"target": "110"}, TOKEN_1001)
    assert status == 202 and body["conference_id"].startswith("c-")


# Uniqueids of a PBX with asterisk.conf systemname (several PBXes, one store): pbx-2-<e>.<n>.
SYSTEM_NAMED = "pbx-2-1764432000.41"


def call_with_system_name(h: Harness) -> None:
    """Agent 1002 on a call whose Uniqueids carry the PBX's system name."""
    cid, agent = SYSTEM_NAMED, "pbx-2-1764432000.42"
    for e in (
        ev("Newchannel", cid, "PJSIP/carrier-00000031", CallerIDNum="13800138001", Linkedid=cid),
        ev("Newchannel", agent, "PJSIP/agent1002-00000032", Linkedid=cid),
        ev("BridgeEnter", cid, "PJSIP/carrier-00000031", BridgeUniqueid="b9", Linkedid=cid),
        ev("BridgeEnter", agent, "PJSIP/agent1002-00000032", BridgeUniqueid="b9", Linkedid=cid),
    ):
        h.calls.on_event(e)


async def test_a_call_of_a_pbx_with_a_system_name_is_pressed_by_its_id(harness: Harness) -> None:
    call_with_system_name(harness)
    path = f"/v1/calls/{SYSTEM_NAMED}/carry-transfer"
    status, body = await post(harness, path, {"target": "110"}, TOKEN_1001)
    assert status == 403, body  # another agent's call, found by that id
    status, body = await post(harness, path, {"target": "110"}, TOKEN_1002)
    assert status == 202 and body["call_id"] == SYSTEM_NAMED, body
    transfer = harness.submitted[-1]
    assert isinstance(transfer, BlindTransfer) and transfer.channel == "PJSIP/agent1002-00000032"


async def test_a_press_naming_a_system_named_call_acts_on_it(harness: Harness) -> None:
    call_with_system_name(harness)
    status, body = await post(
        harness,
        "/v1/agents/1002/carry-transfer",
        {"target": "110", "call_id": SYSTEM_NAMED},
        TOKEN_1002,
    )
    assert status == 202 and body["call_id"] == SYSTEM_NAMED, body


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [
        ("/v1/agents/1001/carry-transfer", {"target": "999"}, TOKEN_1001, 422, "unknown target"),
        ("/v1/agents/1001/carry-transfer", {"target": "1\r\n10"}, TOKEN_1001, 422, "invalid"),
        ("/v1/agents/1001/carry-transfer", {"target": "110", "x": 1}, TOKEN_1001, 422, "invalid"),
        ("/v1/agents/1001/carry-transfer", {}, TOKEN_1001, 422, "invalid"),
        ("/v1/agents/1001/carry-transfer", "{not json", TOKEN_1001, 400, "malformed JSON"),
        ("/v1/agents/1001/carry-transfer", {"target": "110"}, {}, 401, "bearer token"),
        (
            "/v1/agents/1001/carry-transfer",
            {"target": "110"},
            {"Authorization": "Bearer wrong-token-wrong-token"},
            401,
            "bearer token",
        ),
        ("/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1002, 403, "own calls"),
        ("/v1/agents/1002/carry-transfer", {"target": "110"}, TOKEN_1002, 409, "not on a call"),
        ("/v1/agents/1001/three-way", {"target": "110"}, SUPERVISOR, 403, "roles"),
        ("/v1/calls/9.9/carry-transfer", {"target": "110"}, TOKEN_1001, 404, "no live call"),
    ],
)
async def test_bad_requests_are_refused_before_any_pbx_command(
    harness: Harness, path: str, body: Any, headers: dict[str, str], status: int, reason: str
) -> None:
    got, payload = await post(harness, path, body, headers)
    assert got == status, payload
    assert reason in payload["error"]["reason"]
    assert harness.submitted == []
    assert harness.recorder.opened == []


async def test_invalid_fields_are_listed(harness: Harness) -> None:
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "1\n10"}, TOKEN_1001
    )
    assert status == 422
    assert [d["field"] for d in body["error"]["details"]] == ["target"]


async def test_oversized_body_is_413(harness: Harness) -> None:
    big = {"target": "110", "handoff": {"narrative": "x" * 200_000}}
    status, body = await post(harness, "/v1/agents/1001/carry-transfer", big, TOKEN_1001)
    assert status == 413, body
    assert harness.submitted == []


async def test_a_body_that_cannot_be_decoded_is_400_and_reaches_no_pbx(harness: Harness) -> None:
    """``Content-Encoding: gzip`` on a body that is not gzip: aiohttp fails reading it; that is
    the client's mistake (400, the Error body), not a 500. Found by the API fuzz."""
    resp = await harness.client.post(
        "/v1/agents/1001/carry-transfer",
        data=json.dumps({"target": "110"}),
        headers={**TOKEN_1001, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"] == {
        "status": 400,
        "reason": "malformed request body: it could not be decoded",
    }
    assert harness.submitted == [] and harness.recorder.opened == []


async def test_second_press_conflicts_and_ten_concurrent_presses_make_one(
    harness: Harness,
) -> None:
    presses = [
        post(harness, "/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1001)
        for _ in range(10)
    ]
    results = await asyncio.gather(*presses)
    statuses = sorted(s for s, _ in results)
    assert statuses == [202] + [409] * 9
    assert len(harness.recorder.opened) == 1
    assert sum(c.__class__.__name__ == "BlindTransfer" for c in harness.submitted) == 1
    # A three-way press on the same call while the transfer runs is refused too.
    status, _ = await post(harness, "/v1/agents/1001/three-way", {"target": "110"}, TOKEN_1001)
    assert status == 409


async def test_pbx_link_down_is_503_and_nothing_happens(harness: Harness) -> None:
    harness.calls.pbx_ready = False
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1001
    )
    assert status == 503 and "nothing was attempted" in body["error"]["reason"]
    assert harness.submitted == []


async def test_leave_before_partner_joined_is_409(harness: Harness) -> None:
    _, body = await post(harness, "/v1/agents/1001/three-way", {"target": "110"}, TOKEN_1001)
    conf = body["conference_id"]
    status, body = await post(harness, f"/v1/conferences/{conf}/leave", {}, TOKEN_1001)
    assert status == 409 and "partner" in body["error"]["reason"]
    status, body = await post(harness, f"/v1/conferences/{conf}/cancel", {}, TOKEN_1002)
    assert status == 403


async def test_openapi_lists_every_served_route(harness: Harness) -> None:
    resp = await harness.client.get("/v1/openapi.json")
    doc = await resp.json()
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in harness.client.app.router.routes()  # type: ignore[union-attr]
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    body_ref = doc["paths"]["/v1/agents/{agent}/carry-transfer"]["post"]["requestBody"]
    assert body_ref["content"]["application/json"]["schema"]["$ref"].endswith("HotkeyRequest")
    assert "HotkeyRequest" in doc["components"]["schemas"]


async def test_openapi_lists_what_every_route_really_answers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statuses the middleware answers for a route are the route's too: every request that
    changes something may get the rate limiter's 429 (with Retry-After); and a status answered
    with the operation's own body (a degraded health report) does not claim the Error schema.
    Found by the API fuzz."""
    from hotline_bridge.runtime import app as runtime_app

    built = []
    real = runtime_app.openapi_document
    monkeypatch.setattr(runtime_app, "openapi_document", lambda app: built.append(1) or real(app))
    docs = [await (await harness.client.get("/v1/openapi.json")).json() for _ in range(3)]
    assert docs[0] == docs[1] == docs[2] and len(built) == 1  # built once, not per request
    for path, ops in docs[0]["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            if method == "post":
                assert "Retry-After" in responses["429"]["headers"], path
            else:
                assert "429" not in responses, path
    health = docs[0]["paths"]["/healthz"]["get"]["responses"]
    assert set(health) == {"200", "503"} and "content" not in health["503"]


async def test_calls_list_is_scoped_to_the_agent(harness: Harness) -> None:
    resp = await harness.client.get("/v1/calls", headers=TOKEN_1001)
    assert [c["call_id"] for c in (await resp.json())["calls"]] == ["1.1"]
    resp = await harness.client.get("/v1/calls", headers=TOKEN_1002)
    assert (await resp.json())["calls"] == []
    resp = await harness.client.get("/v1/calls")
    assert resp.status == 401


async def test_a_retry_loop_gets_429_with_retry_after_and_reaches_no_pbx(harness: Harness) -> None:
    """A softphone hammering the hotkey: past its burst the bridge answers 429 with
    Retry-After, and those requests never get as far as a PBX command."""
    from aiohttp import web as aioweb

    from hotline_bridge.core.principal import Principal
    from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares
    from hotline_bridge.web.limits import RateLimiter

    now = [0.0]
    app = harness.client.app
    assert app is not None
    limited = aioweb.Application(
        middlewares=make_middlewares(
            TokenAuth([(TOKEN_1001["Authorization"][7:], Principal("1001", "agent", "1001"))]),
            RateLimiter(rate_per_s=1.0, burst=3),
            clock=lambda: now[0],
        )
    )
    for key in (CALLS, TRANSFERS, CONFERENCES, MAX_BODY):
        limited[key] = app[key]
    limited.router.add_routes(transfers_api.routes())
    async with TestClient(TestServer(limited)) as client:
        statuses, retry = [], None
        for _ in range(10):
            resp = await client.post(
                "/v1/calls/9.9/carry-transfer",  # no such call: 404, but it counts as a press
                json={"target": "110"},
                headers=TOKEN_1001,
            )
            statuses.append(resp.status)
            retry = resp.headers.get("Retry-After", retry)
        assert statuses[:3] == [404, 404, 404] and set(statuses[3:]) == {429}
        assert retry == "1"
        assert harness.submitted == []
        now[0] += 1.0  # a second later, one more press is allowed
        resp = await client.post(
            "/v1/calls/9.9/carry-transfer", json={"target": "110"}, headers=TOKEN_1001
        )
        assert resp.status == 404


async def test_a_key_pressed_before_the_model_has_the_call_waits_for_it(harness: Harness) -> None:
    """The press can overtake the BridgeEnter the PBX already sent (still in the AMI socket):
    the by-agent route gives the model a moment instead of answering 409."""
    loop = asyncio.get_running_loop()

    def answered() -> None:
        for e in (
            ev("Newchannel", "2.1", "PJSIP/carrier-00000011", CallerIDNum="13900139000"),
            ev("Newchannel", "2.2", "PJSIP/agent1002-00000012", CallerIDNum="13900139000"),
            ev("BridgeEnter", "2.1", "PJSIP/carrier-00000011", BridgeUniqueid="b2"),
            ev("BridgeEnter", "2.2", "PJSIP/agent1002-00000012", BridgeUniqueid="b2"),
        ):
            harness.calls.on_event(e)

    loop.call_later(0.05, answered)
    status, body = await post(
        harness, "/v1/agents/1002/carry-transfer", {"target": "110"}, TOKEN_1002
    )
    assert status == 202, body
    assert body["call_id"] == "2.1"


async def test_a_key_acts_on_the_call_the_agent_is_on_not_the_previous_one(
    harness: Harness,
) -> None:
    """Agent 1001's next call is answered before the hang-up of the previous one was read."""
    await asyncio.sleep(0.01)  # the next call is bridged later than the first
    for e in (
        ev("Newchannel", "3.1", "PJSIP/carrier-00000021", CallerIDNum="13700137000"),
        ev("Newchannel", "3.2", "PJSIP/agent1001-00000022", CallerIDNum="13700137000"),
        ev("BridgeEnter", "3.1", "PJSIP/carrier-00000021", BridgeUniqueid="b3"),
        ev("BridgeEnter", "3.2", "PJSIP/agent1001-00000022", BridgeUniqueid="b3"),
    ):
        harness.calls.on_event(e)
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110"}, TOKEN_1001
    )
    assert status == 202, body
    assert body["call_id"] == "3.1"
    transfer = harness.submitted[-1]
    assert transfer.__class__.__name__ == "BlindTransfer"
    assert transfer.channel == "PJSIP/agent1001-00000022"  # type: ignore[attr-defined]


async def test_a_press_naming_the_call_it_was_for_never_acts_on_the_agent_s_next_call(
    harness: Harness,
) -> None:
    """A press read seconds late (a bridge behind under load) finds agent 1001 on the NEXT
    citizen's call: with the call the phone was on in the body, that is a 409 and no command."""
    for e in (
        ev("Hangup", "1.1", "PJSIP/carrier-00000001"),
        ev("Hangup", "1.2", "PJSIP/agent1001-00000002"),
        ev("Newchannel", "4.1", "PJSIP/carrier-00000031", CallerIDNum="13600136000"),
        ev("Newchannel", "4.2", "PJSIP/agent1001-00000032", CallerIDNum="13600136000"),
        ev("BridgeEnter", "4.1", "PJSIP/carrier-00000031", BridgeUniqueid="b4"),
        ev("BridgeEnter", "4.2", "PJSIP/agent1001-00000032", BridgeUniqueid="b4"),
    ):
        harness.calls.on_event(e)
    for path in ("/v1/agents/1001/carry-transfer", "/v1/agents/1001/three-way"):
        status, body = await post(harness, path, {"target": "110", "call_id": "1.1"}, TOKEN_1001)
        assert status == 409, body
        assert "is now 4.1, not 1.1" in body["error"]["reason"]
    assert harness.submitted == [] and harness.recorder.opened == []
    status, body = await post(harness, "/v1/calls/4.1/carry-transfer",
                              {"target": "110", "call_id": "1.1"}, TOKEN_1001)  # fmt: skip
    assert status == 409 and harness.submitted == []
    # A call newer than any the bridge has read (it is behind the PBX): not "ended", press again.
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110", "call_id": "7.1"}, TOKEN_1001
    )
    assert status == 409, body
    assert "call 7.1 has not reached the bridge yet" in body["error"]["reason"]
    assert "press again" in body["error"]["reason"] and harness.submitted == []
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110", "call_id": "4.1"}, TOKEN_1001
    )
    assert status == 202 and body["call_id"] == "4.1"
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110", "call_id": "x y"}, TOKEN_1001
    )
    assert status == 422 and [d["field"] for d in body["error"]["details"]] == ["call_id"]


async def test_a_press_naming_its_call_acts_on_that_call_while_the_next_one_is_already_up(
    harness: Harness,
) -> None:
    """Agent 1001's next call is up before the previous one's hang-up is read; a press for the
    previous call (named) acts on it, not on the newest call the model pairs the agent with."""
    for e in (
        ev("Newchannel", "5.1", "PJSIP/carrier-00000041", CallerIDNum="13500135000"),
        ev("Newchannel", "5.2", "PJSIP/agent1001-00000042", CallerIDNum="13500135000"),
        ev("BridgeEnter", "5.1", "PJSIP/carrier-00000041", BridgeUniqueid="b5"),
        ev("BridgeEnter", "5.2", "PJSIP/agent1001-00000042", BridgeUniqueid="b5"),
    ):
        harness.calls.on_event(e)
    status, body = await post(
        harness, "/v1/agents/1001/carry-transfer", {"target": "110", "call_id": "1.1"}, TOKEN_1001
    )
    assert status == 202 and body["call_id"] == "1.1", body
    transfer = harness.submitted[-1]
    assert transfer.channel == "PJSIP/agent1001-00000002"  # type: ignore[attr-defined]
    # Another agent's call, named: not this agent's, so the agent's own call decides (409).
    status, body = await post(
        harness, "/v1/agents/1002/carry-transfer", {"target": "110", "call_id": "5.1"}, TOKEN_1002
    )
    assert status == 409, body


async def test_adding_and_dropping_partners_names_every_refusal(harness: Harness) -> None:
    _, body = await post(harness, "/v1/agents/1001/three-way", {"target": "110"}, TOKEN_1001)
    conf = body["conference_id"]
    partners = f"/v1/conferences/{conf}/partners"
    status, body = await post(harness, partners, {"target": "120"}, TOKEN_1001)
    assert status == 409 and "settled" in body["error"]["reason"]  # 110 still being called
    service = harness.client.app[CONFERENCES]  # type: ignore[union-attr]
    for uid, chan in (
        ("1.1", "PJSIP/carrier-00000001"),
        ("1.2", "PJSIP/agent1001-00000002"),
        (f"{conf}-partner", "PJSIP/partner-110-00000003"),
    ):
        service.on_event(ev("ConfbridgeJoin", uid, chan, Conference=conf))
    assert service.get(conf).state == "active"

    status, body = await post(harness, partners, {"target": "120"}, TOKEN_1002)
    assert status == 403
    status, body = await post(
        harness, "/v1/conferences/c-nope/partners", {"target": "120"}, TOKEN_1001
    )
    assert status == 404
    status, body = await post(harness, partners, {"target": "999"}, TOKEN_1001)
    assert status == 422 and "unknown target" in body["error"]["reason"]
    status, body = await post(harness, partners, {"target": "110"}, TOKEN_1001)
    assert status == 409 and "already" in body["error"]["reason"]
    status, body = await post(harness, partners, {"target": "120", "extra": 1}, TOKEN_1001)
    assert status == 422
    # A press naming another call than the room's: nothing done; another agent's room: 403 first.
    status, body = await post(harness, partners, {"target": "120", "call_id": "9.9"}, TOKEN_1001)
    assert status == 409 and "not on call 9.9" in body["error"]["reason"]
    status, body = await post(harness, partners, {"target": "120", "call_id": "1.1"}, TOKEN_1002)
    assert status == 403

    opened = list(harness.recorder.opened)
    status, body = await post(harness, partners, {"target": "120"}, TOKEN_1001)
    assert status == 202, body
    assert body["leg"] == "p2" and body["leg_handoff_id"] not in opened
    # Its own record was opened, and the Originate for its leg handed over after it.
    assert harness.recorder.opened == [*opened, body["leg_handoff_id"]]
    originate = harness.submitted[-1]
    assert originate.__class__.__name__ == "Originate"
    assert originate.channel_id == f"{conf}-p2"  # type: ignore[attr-defined]

    status, body = await post(harness, f"{partners}/p9/drop", {}, TOKEN_1001)
    assert status == 409 and "no partner leg p9" in body["error"]["reason"]
    status, body = await post(harness, f"{partners}/p2/drop", {}, TOKEN_1001)
    assert status == 202, body
    assert harness.submitted[-1].__class__.__name__ == "Hangup"  # it was still ringing
    resp = await harness.client.get(f"/v1/conferences/{conf}", headers=TOKEN_1001)
    view = await resp.json()
    assert [(p["leg"], p["state"]) for p in view["partners"]] == [("p1", "in"), ("p2", "dropped")]
