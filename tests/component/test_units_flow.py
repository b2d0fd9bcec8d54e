"""Handling units over HTTP and a real store: a matter from 110 is assigned (the suggestion, or an
override with a reason), the unit signs, reports progress and closes it (the close is queued for
110); a unit's 退回 puts it back in the queue; time limits are supervised by a scan whose clock
the test moves, and a second scanner over the same store (a restarted bridge) adds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    EventKind,
    HandoffKind,
    Status,
)
from hotline_bridge.handoffs.status import (
    fold,
)
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.units.api import UNITS, routes
from hotline_bridge.units.directory import load_directory
from hotline_bridge.units.service import UnitService
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares

CATALOG = load_catalog()
DIRECTORY = load_directory(known_categories=frozenset(CATALOG.categories))
WHO = {
    "agent": ("agent-token-1001-xxxxxxxx", Principal("1001", "agent", agent_id="1001")),
    "supervisor": ("supervisor-token-xxxxxxx", Principal("s1", "supervisor")),
    "yulong": ("unit-token-yulong-xxxxxxx", Principal("yulong-gov", "unit")),
    "market": ("unit-token-market-xxxxxxx", Principal("city-market", "unit")),
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 Beijing time

    def __call__(self) -> datetime:
        return self.now


class Api:
    def __init__(self, client: TestClient, store: SqliteHandoffStore, clock: Clock) -> None:
        self.client, self.store, self.clock = client, store, clock

    async def call(self, method: str, path: str, who: str | None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {WHO[who][0]}"} if who else {}
        async with self.client.request(method, path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    def received(self, category: str, jurisdiction: str = "yulong") -> str:
        """A matter 110 handed to 12345 (as the partner receiver would have stored it)."""
        record = new_handoff(
            HandoffInput(category=category, jurisdiction=jurisdiction, place="白沙镇"),
            handoff_id=new_handoff_id(),
            kind=HandoffKind.CARRY_TRANSFER,
            direction=Direction.TO_12345,
            target="12345",
            citizen_number="13800138000",
            created_by=Actor.agent("110-7"),
            catalog=CATALOG,
            now=self.clock.now,
        )
        self.store.create(record, outbox=False)
        return record.id

    def status(self, handoff_id: str) -> Status:
        record = self.store.get(handoff_id)
        assert record is not None
        return fold(record).status


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteHandoffStore(tmp_path / "h.sqlite3")
    clock = Clock()
    app = web.Application(middlewares=make_middlewares(TokenAuth(WHO.values())))
    app[MAX_BODY] = 64 * 1024
    app[UNITS] = UnitService(store, DIRECTORY, site=Platform.HOTLINE_12345, clock=clock)
    app.router.add_routes(routes())
    async with TestClient(TestServer(app)) as client:
        yield Api(client, store, clock)
    store.close()


async def test_assign_sign_progress_close(api: Api) -> None:
    hid = api.received("dispute.neighbour")
    status, queue = await api.call("GET", "/v1/work-queue", "agent")
    assert status == 200 and [m["id"] for m in queue["items"]] == [hid]
    assert queue["items"][0]["suggested"] == "yulong-gov"
    assert queue["items"][0]["citizen_number"] == "138****8000"  # a listing: masked

    status, answer = await api.call("POST", f"/v1/handoffs/{hid}/assign", "agent", {})
    assert status == 201, answer
    assert answer["unit"] == "yulong-gov" and answer["rule"].startswith("属地")
    # Monday + 5 working days: the end of Monday 9 November, Beijing time.
    assert answer["complete_by"] == "2026-11-09T16:00:00+00:00"
    assert api.status(hid) is Status.ASSIGNED

    status, work = await api.call("GET", "/v1/units/yulong-gov/work", "yulong")
    assert [m["id"] for m in work["items"]] == [hid]
    base = f"/v1/units/yulong-gov/work/{hid}"
    status, body = await api.call("POST", f"{base}/close", "yulong", {})
    assert status == 409 and "签收" in body["error"]["reason"]  # sign first
    assert (await api.call("POST", f"{base}/sign", "yulong", {}))[0] == 201
    assert api.status(hid) is Status.IN_PROGRESS
    status, _ = await api.call("POST", f"{base}/progress", "yulong", {"text": "已联系双方调解"})
    assert status == 201
    status, _ = await api.call("POST", f"{base}/close", "yulong", {"text": "调解成功"})
    assert status == 201
    record = api.store.get(hid)
    assert record is not None and fold(record).status is Status.CLOSED
    kinds = [e.kind for e in record.events]
    assert kinds[-4:] == [
        EventKind.ASSIGNED, EventKind.UNIT_ACKNOWLEDGED, EventKind.NOTE, EventKind.CLOSED,
    ]  # fmt: skip
    assert record.events[-1].actor.kind.value == "unit"
    # Only the close travels back to 110.
    pending = api.store.outbox_pending(now=datetime(2100, 1, 1, tzinfo=UTC))
    assert [(i.handoff_id, i.kind) for i in pending] == [(hid, "handoff.event")]


async def test_the_queue_reads_only_what_the_partner_sent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own open handoffs (to 110) are not asked of the store for the queue: it used to read
    and decode every open record of both directions on each ``GET /v1/work-queue``, on the event
    loop, and drop ours. Found by the API fuzz (the queue slowed as its hotkeys piled up)."""
    hid = api.received("dispute.neighbour")
    ours = new_handoff(
        HandoffInput(category="dispute.neighbour"),
        handoff_id=new_handoff_id(),
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_110,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=api.clock.now,
    )
    api.store.create(ours, outbox=False)
    asked: list[Any] = []
    real = api.store.list
    monkeypatch.setattr(api.store, "list", lambda f, p: asked.append(f) or real(f, p))
    status, queue = await api.call("GET", "/v1/work-queue", "agent")
    assert status == 200 and [m["id"] for m in queue["items"]] == [hid]
    assert asked and {f.direction for f in asked} == {Direction.TO_12345}


async def test_a_returned_matter_goes_back_to_the_queue_and_overriding_needs_a_reason(
    api: Api,
) -> None:
    hid = api.received("dispute.consumer")  # suggested: the market regulator, by function
    status, body = await api.call(
        "POST", f"/v1/handoffs/{hid}/assign", "agent", {"unit": "yulong-gov"}
    )
    assert status == 422 and body["error"]["details"][0]["field"] == "override_reason"
    status, answer = await api.call("POST", f"/v1/handoffs/{hid}/assign", "agent", {})
    assert answer["unit"] == "city-market"
    base = f"/v1/units/city-market/work/{hid}"
    assert (await api.call("POST", f"{base}/return", "market", {}))[0] == 422  # needs a reason
    status, _ = await api.call("POST", f"{base}/return", "market", {"text": "属县级管辖"})
    assert status == 201 and api.status(hid) is Status.UNIT_RETURNED
    _, queue = await api.call("GET", "/v1/work-queue", "supervisor")
    (item,) = queue["items"]
    assert item["id"] == hid and item["unit_return_reason"] == "属县级管辖"
    status, answer = await api.call(
        "POST",
        f"/v1/handoffs/{hid}/assign",
        "supervisor",
        {"unit": "yulong-gov", "override_reason": "市场监管局退回:属县级管辖"},
    )
    assert status == 201 and answer["unit"] == "yulong-gov"
    assert (await api.call("GET", "/v1/work-queue", "agent"))[1]["items"] == []


async def test_who_may_do_what(api: Api) -> None:
    hid = api.received("dispute.neighbour")
    assert (await api.call("POST", f"/v1/handoffs/{hid}/assign", None, {}))[0] == 401
    assert (await api.call("POST", f"/v1/handoffs/{hid}/assign", "yulong", {}))[0] == 403
    await api.call("POST", f"/v1/handoffs/{hid}/assign", "agent", {})
    # Another unit can neither see nor act on it; an agent cannot act as the unit.
    assert (await api.call("GET", "/v1/units/yulong-gov/work", "market"))[0] == 403
    base = f"/v1/units/yulong-gov/work/{hid}"
    assert (await api.call("POST", f"{base}/sign", "market", {}))[0] == 403
    assert (await api.call("POST", f"{base}/sign", "agent", {}))[0] == 403
    assert (await api.call("POST", f"/v1/units/city-market/work/{hid}/sign", "market", {}))[
        0
    ] == 404  # not its matter
    assert (await api.call("POST", f"{base}/dance", "yulong", {}))[0] == 404
    assert (await api.call("GET", "/v1/units/nobody/work", "supervisor"))[0] == 404
    status, _ = await api.call("POST", f"/v1/handoffs/{hid}/assign", "agent", {"unit": "x!"})
    assert status == 422
    # A matter 12345 sent to 110 is 110's to assign.
    record = new_handoff(
        HandoffInput(category="police.public_order"),
        handoff_id=new_handoff_id(),
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_110,
        target="110",
        citizen_number=None,
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=api.clock.now,
    )
    api.store.create(record, outbox=False)
    assert (await api.call("POST", f"/v1/handoffs/{record.id}/assign", "agent", {}))[0] == 409


async def test_supervision_flags_once_and_survives_a_restart(api: Api, tmp_path: Path) -> None:
    hid = api.received("help.utilities")  # sign within 2 h, done within 1 working day
    await api.call("POST", f"/v1/handoffs/{hid}/assign", "agent", {})
    service = UnitService(api.store, DIRECTORY, site=Platform.HOTLINE_12345, clock=api.clock)

    def kinds() -> list[str]:
        record = api.store.get(hid)
        assert record is not None
        return [e.kind.value for e in record.events if e.kind.value in (
            "due_soon", "overdue", "supervised")]  # fmt: skip

    # 09:00, sign by 11:00: utilities warn 4 h ahead, so the sign limit is near at once; the
    # completion limit (end of Tuesday) is not.
    assert [(f.kind.value, f.stage) for f in service.supervise()] == [("due_soon", "sign")]
    assert service.supervise() == []
    assert kinds() == ["due_soon"]
    api.clock.now += timedelta(hours=2, minutes=1)  # 11:01: not signed for
    flags = service.supervise()
    assert [(f.kind.value, f.stage) for f in flags] == [("overdue", "sign")]
    assert service.open_counts() == {"sign": 1, "complete": 0}
    # A restarted bridge: a new connection and a new service over the same file.
    again = SqliteHandoffStore(tmp_path / "h.sqlite3")
    try:
        restarted = UnitService(again, DIRECTORY, site=Platform.HOTLINE_12345, clock=api.clock)
        assert restarted.supervise() == []
    finally:
        again.close()
    assert kinds() == ["due_soon", "overdue", "supervised"]
    api.clock.now = datetime(2026, 11, 3, 16, 0, 1, tzinfo=UTC)  # past the end of Tuesday
    assert [(f.kind.value, f.stage) for f in service.supervise()] == [("overdue", "complete")]
    _, work = await api.call("GET", "/v1/units/yulong-gov/work", "supervisor")
    assert work["items"] == []  # utilities go to the housing bureau, not the county
    _, work = await api.call("GET", "/v1/units/city-housing/work", "supervisor")
    assert work["items"][0]["overdue"] == ["overdue:complete", "overdue:sign"]
