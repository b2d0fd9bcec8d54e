"""The record API over HTTP: create, read, append, list, route; roles, masking, audit, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.catalog import api as catalog_api
from hotline_bridge.config.settings import DutyLineSettings
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs import api as handoffs_api
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    EventKind,
    HandoffKind,
)
from hotline_bridge.handoffs.service import HandoffService
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares
from hotline_bridge.workorders import api as workorders_api
from hotline_bridge.workorders.service import ReminderService, WorkOrderService

TOKENS = {
    "agent1": ("tok-agent-1001-xxxxxxxx", Principal("agent-1001", "agent", "1001")),
    "agent2": ("tok-agent-1002-xxxxxxxx", Principal("agent-1002", "agent", "1002")),
    "supervisor": ("tok-supervisor-1-xxxxxx", Principal("supervisor1", "supervisor")),
    "partner": ("tok-partner-110-xxxxxxx", Principal("partner-110", "partner")),
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Api:
    def __init__(self, client: TestClient[web.Request, web.Application], store: SqliteHandoffStore):
        self.client = client
        self.store = store

    async def call(
        self, method: str, path: str, who: str | None = "agent1", **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKENS[who][0]}"} if who else {}
        async with self.client.request(method, path, headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body

    async def create(self, body: dict[str, Any], who: str = "agent1") -> dict[str, Any]:
        status, data = await self.call("POST", "/v1/work-orders", who, json=body)
        assert status == 201, data
        return data["handoff"]  # type: ignore[no-any-return]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    service = HandoffService(
        store, load_catalog(), site=Platform.HOTLINE_12345, target="110", clock=Clock()
    )
    app = web.Application(
        middlewares=make_middlewares(TokenAuth(TOKENS.values())), client_max_size=64 * 1024
    )
    app[MAX_BODY] = 64 * 1024
    app[handoffs_api.HANDOFFS] = service
    reminders = ReminderService(
        DutyLineSettings(), caller_id="12345", store=store, record_url=str, submit=list
    )
    app[workorders_api.WORK_ORDERS] = WorkOrderService(
        service, reminders, service.catalog, site=Platform.HOTLINE_12345
    )
    app.router.add_routes([*handoffs_api.routes(), *workorders_api.routes()])
    catalog_api.install(app, service.catalog, Platform.HOTLINE_12345)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, store)
    store.close()


BODY = {
    "category": "police.public_order",
    "citizen_number": "13800138000",
    "callback": "13912345678",
    "citizen_name": "和先生",
    "jurisdiction": "yulong",
    "place": "玉龙县白沙镇",
    "event": "酒吧门口有人打架",
    "request": "请派警察",
    "narrative": "市民称:\n有人持械。",
}


# -- create ----------------------------------------------------------------------------------


async def test_hotkey_style_empty_work_order(api: Api) -> None:
    status, answer = await api.call("POST", "/v1/work-orders", json={})
    assert status == 201
    data = answer["handoff"]
    assert data["snapshot"]["kind"] == "work_order"
    assert data["snapshot"]["direction"] == "12345->110"
    assert data["snapshot"]["created_by"] == {"kind": "agent", "id": "1001"}
    assert data["state"]["status"] == "created"
    # Durable and queued for the partner in the same transaction.
    assert api.store.get(data["id"]) is not None
    assert [
        i.handoff_id for i in api.store.outbox_pending(now=datetime(2100, 1, 1, tzinfo=UTC))
    ] == [data["id"]]


async def test_create_returns_location_and_keeps_chinese(api: Api) -> None:
    async with api.client.post(
        "/v1/work-orders",
        json=BODY,
        headers={"Authorization": f"Bearer {TOKENS['agent1'][0]}"},
    ) as resp:
        assert resp.status == 201
        raw = await resp.text()
        data = (await resp.json())["handoff"]
    assert resp.headers["Location"] == f"/v1/handoffs/{data['id']}"
    assert "酒吧门口有人打架" in raw  # not \u-escaped
    assert data["snapshot"]["matter"]["matter_class"] == "police_matter"
    assert data["snapshot"]["content"]["narrative"] == "市民称:\n有人持械。"
    assert data["snapshot"]["citizen"]["number"] == "13800138000"  # the creator sees it


async def test_create_refuses_contradicting_class_naming_the_field(api: Api) -> None:
    status, data = await api.call(
        "POST",
        "/v1/work-orders",
        json={"category": "dispute.family", "matter_class": "police_matter"},
    )
    assert status == 422
    assert [d["field"] for d in data["error"]["details"]] == ["matter_class"]


async def test_create_lists_every_bad_field(api: Api) -> None:
    status, data = await api.call(
        "POST",
        "/v1/work-orders",
        json={
            "work_order_no": "LJ-1\r\nAction: Hangup",
            "narrative": "ok\x00",
            "location": {"latitude": 95, "longitude": 100},
            "unknown": 1,
        },
    )
    assert status == 422
    fields = {d["field"] for d in data["error"]["details"]}
    assert {"work_order_no", "narrative", "location.latitude", "unknown"} <= fields


async def test_create_malformed_json_and_wrong_type(api: Api) -> None:
    headers = {
        "Authorization": f"Bearer {TOKENS['agent1'][0]}",
        "Content-Type": "application/json",
    }
    async with api.client.post("/v1/work-orders", data=b"{not json", headers=headers) as resp:
        assert resp.status == 400
        assert "malformed JSON" in (await resp.json())["error"]["reason"]
    headers["Content-Type"] = "text/plain"
    async with api.client.post("/v1/work-orders", data=b"{}", headers=headers) as resp:
        assert resp.status == 415


async def test_create_needs_an_agent_or_supervisor(api: Api) -> None:
    assert (await api.call("POST", "/v1/work-orders", who=None, json={}))[0] == 401
    assert (await api.call("POST", "/v1/work-orders", who="partner", json={}))[0] == 403
    assert (await api.call("POST", "/v1/work-orders", who="supervisor", json={}))[0] == 201


# -- read ------------------------------------------------------------------------------------


async def test_single_record_numbers_by_reader(api: Api) -> None:
    hid = (await api.create(BODY))["id"]
    expect = {
        "agent1": "13800138000",  # the creator
        "supervisor": "13800138000",
        "agent2": "138****8000",
        "partner": "138****8000",
    }
    for who, number in expect.items():
        status, data = await api.call("GET", f"/v1/handoffs/{hid}", who=who)
        assert status == 200
        assert data["snapshot"]["citizen"]["number"] == number, who
    # Not confidential: reads are not audited.
    record = api.store.get(hid)
    assert record is not None and [e.kind for e in record.events] == [EventKind.CREATED]


async def test_unknown_record_is_404(api: Api) -> None:
    status, data = await api.call("GET", "/v1/handoffs/h-00000000000000000000000000")
    assert status == 404 and "no handoff" in data["error"]["reason"]
    status, _ = await api.call(
        "POST", "/v1/handoffs/h-nope/events", who="partner", json={"kind": "acknowledged"}
    )
    assert status == 404


async def test_confidential_reads_are_audited_and_redacted(api: Api) -> None:
    hid = (await api.create({**BODY, "confidential": True}))["id"]
    status, mine = await api.call("GET", f"/v1/handoffs/{hid}", who="agent1")
    assert status == 200
    # Even the creating agent gets the masked number and redacted words.
    assert mine["snapshot"]["citizen"]["number"] == "138****8000"
    assert mine["snapshot"]["content"]["narrative"] == "[保密]"
    status, boss = await api.call("GET", f"/v1/handoffs/{hid}", who="supervisor")
    assert boss["snapshot"]["citizen"]["number"] == "13800138000"
    assert boss["snapshot"]["content"]["narrative"] == BODY["narrative"]
    await api.call("GET", "/v1/handoffs", who="partner")
    status, log = await api.call("GET", f"/v1/handoffs/{hid}/access", who="supervisor")
    assert status == 200
    assert [
        (r["principal"], r["role"], r["view"], r["full"], r["count"]) for r in log["reads"]
    ] == [
        ("1001", "agent", "record", False, 1),
        ("supervisor1", "supervisor", "record", True, 1),
        ("partner-110", "partner", "list", False, 1),
    ]
    assert (await api.call("GET", f"/v1/handoffs/{hid}/access", who="agent1"))[0] == 403
    # The reads are audited beside the record, not in it.
    record = api.store.get(hid)
    assert record is not None and [e.kind for e in record.events] == [EventKind.CREATED]


async def test_a_screen_polling_a_confidential_record_leaves_it_alone(api: Api) -> None:
    hid = (await api.create({**BODY, "confidential": True}))["id"]
    for _ in range(300):
        assert (await api.call("GET", f"/v1/handoffs/{hid}", who="agent2"))[0] == 200
    record = api.store.get(hid)
    assert record is not None and len(record.events) == 1  # the record's own story is untouched
    _, log = await api.call("GET", f"/v1/handoffs/{hid}/access", who="supervisor")
    # Every read is counted, in at most a row a minute (the clock moves 1 s a call here).
    assert sum(r["count"] for r in log["reads"]) == 300 and len(log["reads"]) <= 7


# -- append ----------------------------------------------------------------------------------


async def test_partner_signs_works_and_closes_an_outgoing_record(api: Api) -> None:
    created = await api.create(BODY)
    hid = created["id"]
    path = f"/v1/handoffs/{hid}/events"
    status, ev = await api.call("POST", path, who="partner", json={"kind": "acknowledged"})
    assert (
        status == 201 and ev["seq"] == 2 and ev["actor"] == {"kind": "partner", "id": "partner-110"}
    )
    status, _ = await api.call(
        "POST", path, who="partner", json={"kind": "status_changed", "status": "in_progress"}
    )
    assert status == 201
    status, _ = await api.call(
        "POST", path, who="agent2", json={"kind": "note", "text": "补充情况"}
    )
    assert status == 201
    status, _ = await api.call(
        "POST", path, who="partner", json={"kind": "closed", "outcome": "已出警,双方已调解"}
    )
    assert status == 201
    status, _ = await api.call(
        "POST", path, json={"kind": "follow_up", "satisfaction": "satisfied"}
    )
    assert status == 201
    status, data = await api.call("GET", f"/v1/handoffs/{hid}")
    assert data["state"]["status"] == "closed"
    assert data["state"]["outcome"] == "已出警,双方已调解"
    assert data["state"]["satisfaction"] == "satisfied"
    assert [e["seq"] for e in data["events"]] == [1, 2, 3, 4, 5, 6]
    # The snapshot is what it was at creation.
    assert data["snapshot"] == created["snapshot"]


async def test_return_needs_a_reason_naming_the_field(api: Api) -> None:
    hid = (await api.create(BODY))["id"]
    path = f"/v1/handoffs/{hid}/events"
    status, data = await api.call("POST", path, who="partner", json={"kind": "returned"})
    assert status == 422
    assert data["error"]["details"] == [
        {"field": "reason", "problem": "required for a returned event"}
    ]
    status, data = await api.call(
        "POST", path, who="partner", json={"kind": "acknowledged", "reason": "x"}
    )
    assert status == 422 and data["error"]["details"][0]["field"] == "reason"
    status, _ = await api.call(
        "POST", path, who="partner", json={"kind": "returned", "reason": "属12345受理范围"}
    )
    assert status == 201
    _, record = await api.call("GET", f"/v1/handoffs/{hid}")
    assert record["state"]["status"] == "returned"
    assert record["state"]["return_reason"] == "属12345受理范围"


async def test_events_cannot_rewrite_the_snapshot_or_fake_telephony(api: Api) -> None:
    hid = (await api.create(BODY))["id"]
    path = f"/v1/handoffs/{hid}/events"
    for body in (
        {"kind": "note", "text": "x", "snapshot": {"citizen": {"number": "110"}}},
        {"kind": "partner_answered"},
        {"kind": "created"},
        {"kind": "read_confidential"},
    ):
        status, _ = await api.call("POST", path, who="supervisor", json=body)
        assert status == 422, body
    record = api.store.get(hid)
    assert record is not None and len(record.events) == 1


async def test_wrong_role_and_wrong_state(api: Api) -> None:
    hid = (await api.create(BODY))["id"]
    path = f"/v1/handoffs/{hid}/events"
    status, data = await api.call("POST", path, who="agent1", json={"kind": "acknowledged"})
    assert status == 403 and "handling platform" in data["error"]["reason"]
    await api.call("POST", path, who="partner", json={"kind": "closed"})
    status, data = await api.call("POST", path, who="partner", json={"kind": "acknowledged"})
    assert status == 409 and "closed" in data["error"]["reason"]


async def test_agents_handle_incoming_records(api: Api) -> None:
    incoming = new_handoff(
        HandoffInput(category="dispute.labour"),
        handoff_id="h-01hx0000000000000000000009",
        kind=HandoffKind.WORK_ORDER,
        direction=Direction.TO_12345,
        target="12345",
        citizen_number="13800138000",
        created_by=Actor(kind="partner", id="partner-110"),
        catalog=load_catalog(),
        now=datetime(2024, 5, 1, tzinfo=UTC),
    )
    api.store.create(incoming)
    path = f"/v1/handoffs/{incoming.id}/events"
    assert (await api.call("POST", path, who="partner", json={"kind": "acknowledged"}))[0] == 403
    assert (await api.call("POST", path, who="agent2", json={"kind": "acknowledged"}))[0] == 201


# -- list ------------------------------------------------------------------------------------


async def test_list_masks_for_everyone_but_supervisors(api: Api) -> None:
    await api.create(BODY)
    for who, number in (
        ("agent1", "138****8000"),  # even the creator, in a list
        ("partner", "138****8000"),
        ("supervisor", "13800138000"),
    ):
        status, data = await api.call("GET", "/v1/handoffs", who=who)
        assert status == 200
        assert data["items"][0]["snapshot"]["citizen"]["number"] == number
        assert data["items"][0]["snapshot"]["citizen"]["callback"] != "13912345678" or (
            who == "supervisor"
        )


async def test_list_filters_and_pages(api: Api) -> None:
    for i in range(5):
        await api.create(
            {"category": "police.criminal", "jurisdiction": "huaping", "reason": str(i)}
        )
    await api.create({"category": "dispute.family", "jurisdiction": "ninglang"})
    _, data = await api.call("GET", "/v1/handoffs?class=police_matter&jurisdiction=huaping")
    assert len(data["items"]) == 5
    _, data = await api.call("GET", "/v1/handoffs?class=non_police_matter")
    assert len(data["items"]) == 1
    _, data = await api.call(
        "GET", "/v1/handoffs?kind=work_order&direction=12345->110&status=created"
    )
    assert len(data["items"]) == 6
    _, data = await api.call("GET", "/v1/handoffs?from=2100-01-01T00:00:00Z")
    assert data["items"] == []
    seen: list[str] = []
    url = "/v1/handoffs?limit=2&class=police_matter"
    while True:
        status, data = await api.call("GET", url)
        assert status == 200 and len(data["items"]) <= 2
        seen += [r["id"] for r in data["items"]]
        if not data["next_cursor"]:
            break
        url = f"/v1/handoffs?limit=2&class=police_matter&cursor={data['next_cursor']}"
    assert len(seen) == len(set(seen)) == 5
    reasons = [r["snapshot"]["matter"]["reason"] for r in data["items"]]
    assert reasons == ["0"]  # newest first, so the first created comes last


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=500", "limit"),
        ("limit=0", "limit"),
        ("class=police", "class"),
        ("status=done", "status"),
        ("from=yesterday", "from"),
        ("jurisdiction=kunming", "jurisdiction"),
        ("colour=red", "colour"),
        ("cursor=garbage", "cursor"),
    ],
)
async def test_list_bad_query_names_the_parameter(api: Api, query: str, field: str) -> None:
    status, data = await api.call("GET", f"/v1/handoffs?{query}")
    assert status == 422
    assert field in {d["field"] for d in data["error"]["details"]}


# -- route -----------------------------------------------------------------------------------


async def test_route_advises(api: Api) -> None:
    status, data = await api.call("POST", "/v1/route", json={"category": "police.criminal"})
    assert status == 200
    assert data["action"] == "three_way_to_110"
    assert data["alternatives"] == ["carry_transfer_to_110"]
    assert data["matter_class"] == "police_matter"
    status, data = await api.call(
        "POST",
        "/v1/route",
        who="partner",
        json={"category": "dispute.family", "received_by": "110", "violent_risk": True},
    )
    assert data["action"] == "police_dispatch_first_then_handover"
    assert data["police_dispatch_first"] is True


async def test_route_bad_input(api: Api) -> None:
    status, data = await api.call("POST", "/v1/route", json={})
    assert status == 422 and data["error"]["details"][0]["field"] == "category"
    status, data = await api.call(
        "POST", "/v1/route", json={"category": "dispute.family", "matter_class": "police_matter"}
    )
    assert status == 422 and data["error"]["details"][0]["field"] == "matter_class"
    status, _ = await api.call("POST", "/v1/route", who=None, json={})
    assert status == 401


async def test_routes_appear_in_the_openapi_document(api: Api) -> None:
    from hotline_bridge.web.openapi import openapi_document

    doc = openapi_document(api.client.app)  # type: ignore[arg-type]
    paths = doc["paths"]
    assert set(paths["/v1/handoffs"]) == {"get"}
    assert set(paths["/v1/work-orders"]) == {"post"}
    assert "post" in paths["/v1/handoffs/{handoff_id}/events"]
    assert "get" in paths["/v1/handoffs/{handoff_id}"]
    assert "post" in paths["/v1/route"]
    assert "NonVoiceWorkOrderInput" in doc["components"]["schemas"]
