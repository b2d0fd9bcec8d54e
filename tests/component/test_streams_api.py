"""The live streams through the real app: tickets, per-agent authorization, SSE frames from AMI
queue events, a screen pop from the call log, replay after a reconnect, the wallboard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import bridge_settings

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import CallEntry, SqliteHandoffStore
from hotline_bridge.runtime.app import Runtime, build
from hotline_bridge.streams.api import STREAMS, TICKETS
from hotline_bridge.streams.tickets import Tickets

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
A1001 = {"Authorization": "Bearer sandbox-token-agent-1001"}
A1002 = {"Authorization": "Bearer sandbox-token-agent-1002"}
SUPERVISOR = {"Authorization": "Bearer sandbox-token-supervisor-1"}


@dataclass
class App:
    client: TestClient[Any, Any]
    runtime: Runtime
    store: SqliteHandoffStore


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = bridge_settings(TOPOLOGY)
    store = SqliteHandoffStore(tmp_path / "handoffs.sqlite3")
    recorder = StoreRecorder(
        store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:8345"
    )
    runtime = build(settings, recorder)
    runtime.app.cleanup_ctx.clear()
    runtime.app[TICKETS] = Tickets(ttl_s=1.0)
    async with TestClient(TestServer(runtime.app)) as client:
        yield App(client, runtime, store)
    store.close()


def queue_event(
    name: str, uid: str, agent_chan: str = "PJSIP/agent1001-00000002"
) -> dict[str, str]:
    return {
        "Event": name,
        "Uniqueid": uid,
        "DestChannel": agent_chan,
        "CallerIDNum": "13800138000",
        "Queue": "hotline-12345",
        "HoldTime": "3",
        "TalkTime": "40",
        "Reason": "caller",
    }


async def ticket(app: App, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    resp = await app.client.post(path, headers=headers)
    return resp.status, await resp.json()


async def frames(resp: ClientResponse, count: int) -> list[tuple[int, str, Any]]:
    """The next ``count`` events of an open stream (comments and ``retry`` skipped)."""
    out: list[tuple[int, str, Any]] = []
    while len(out) < count:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        fields = dict(
            line.split(": ", 1) for line in block.decode().strip().split("\n") if ": " in line
        )
        if "event" in fields:
            out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out


async def test_tickets_are_per_agent(app: App) -> None:
    assert (await ticket(app, "/v1/agents/1001/events/ticket", A1001))[0] == 201
    assert (await ticket(app, "/v1/agents/1001/events/ticket", A1002))[0] == 403
    assert (await ticket(app, "/v1/agents/1001/events/ticket", {}))[0] == 401
    assert (await ticket(app, "/v1/agents/1001/events/ticket", SUPERVISOR))[0] == 201
    assert (await ticket(app, "/v1/wallboard/ticket", A1001))[0] == 403
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    # 1001's ticket does not open 1002's stream; no ticket, a forged one: 401.
    resp = await app.client.get(f"/v1/agents/1002/events?ticket={body['ticket']}")
    assert resp.status == 403
    assert (await app.client.get("/v1/agents/1001/events")).status == 401
    assert (await app.client.get("/v1/agents/1001/events?ticket=x.y")).status == 401
    assert (await app.client.get(f"{body['url']}&last_event_id=abc")).status == 422


async def test_an_expired_ticket_is_refused(app: App) -> None:
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    await asyncio.sleep(1.1)
    resp = await app.client.get(body["url"])
    assert resp.status == 401
    assert "expired" in (await resp.json())["error"]["reason"]


async def test_queue_events_reach_the_agents_stream_with_a_screen_pop(app: App) -> None:
    # A call handed over by 110 with its record: the receiving hook logged it in the call log.
    from tests.component.test_partner_link import record

    rec = record(1)
    app.store.create(rec, outbox=False)
    app.store.open_call(
        CallEntry(
            call_id="1.7",
            arrived_at=datetime.now(UTC),
            kind="from_partner",
            caller="13800138000",
            handoff_id=rec.id,
            urgency="urgent",
        )
    )
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    resp = await app.client.get(body["url"])
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    switchboard = app.runtime.switchboard
    switchboard.on_event(queue_event("AgentCalled", "1.7"))
    switchboard.on_event(queue_event("AgentCalled", "1.9", "PJSIP/agent1002-00000005"))
    switchboard.on_event(queue_event("AgentConnect", "1.7"))
    switchboard.on_event(queue_event("AgentComplete", "1.7"))
    got = await frames(resp, 4)
    assert [k for _, k, _ in got] == ["call_offered", "screen_pop", "call_answered", "call_ended"]
    offered, pop = got[0][2], got[1][2]
    assert offered["call_id"] == "1.7" and offered["citizen_number"] == "13800138000"
    assert pop["record"]["id"] == rec.id and pop["urgency"] == "urgent"
    assert got[2][2]["hold_s"] == 3 and got[3][2]["talk_s"] == 40
    resp.close()


async def test_a_reconnect_replays_what_was_missed(app: App) -> None:
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    resp = await app.client.get(body["url"])
    app.runtime.switchboard.on_event(queue_event("AgentCalled", "2.1"))
    ((seen, _, _),) = await frames(resp, 1)
    resp.close()
    # Missed while disconnected:
    app.runtime.switchboard.on_event(queue_event("AgentConnect", "2.1"))
    app.runtime.switchboard.on_event(queue_event("AgentComplete", "2.1"))
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    resp = await app.client.get(body["url"], headers={"Last-Event-ID": str(seen)})
    got = await frames(resp, 2)
    assert [k for _, k, _ in got] == ["call_answered", "call_ended"]
    assert all(i > seen for i, _, _ in got)
    resp.close()


async def test_a_stopping_service_ends_its_open_streams_at_once(app: App) -> None:
    """Else an open stream holds the HTTP server's shutdown (a restart, a PBX handed back)."""
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    resp = await app.client.get(body["url"])
    assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == b"retry: 2000\n\n"
    app.runtime.app[STREAMS].hub.close()
    assert await asyncio.wait_for(resp.content.read(), 2) == b""  # ended, not a heartbeat later
    _, body = await ticket(app, "/v1/agents/1001/events/ticket", A1001)
    assert (await app.client.get(body["url"])).status == 503  # reconnect elsewhere


async def test_the_wallboard_starts_with_every_agent_then_follows_them(app: App) -> None:
    _, body = await ticket(app, "/v1/wallboard/ticket", SUPERVISOR)
    resp = await app.client.get(body["url"])
    ((_, kind, snapshot),) = await frames(resp, 1)
    assert kind == "snapshot"
    assert {a["agent_id"] for a in snapshot["agents"]} >= {"1001", "1002"}
    assert all(a["state"] == "idle" for a in snapshot["agents"])
    app.runtime.switchboard.on_event(queue_event("AgentCalled", "3.1"))
    ((_, kind, state),) = await frames(resp, 1)
    assert kind == "agent_state" and state == {
        "agent_id": "1001",
        "state": "ringing",
        "since": state["since"],
        "call_id": "3.1",
    }
    resp.close()
