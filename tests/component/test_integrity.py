"""Integrity findings of the production review (issue 10), each proven here: what the partner may
append, whose a received record is, replays across a restart and from the future, junk that used
to raise 500s, the store's file permissions, the three-way caller ID."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hotline_bridge.conferences import machine as cm
from hotline_bridge.conferences.machine import presentable_number
from hotline_bridge.core.commands import CommandResult
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.model import (
    Actor,
    EventKind,
    HandoffEvent,
)
from hotline_bridge.handoffs.store import SqliteHandoffStore, StoreError
from hotline_bridge.partners import api as partners_api
from hotline_bridge.partners.api import Receiver
from hotline_bridge.partners.link import PUSH_PATH
from hotline_bridge.partners.signing import sign
from hotline_bridge.runtime.interpreter import to_action
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares
from tests.component.test_partner_link import (
    KEY_12345,
    NOW,
    SECRET_12345,
    push_of,
    record,
    settings_of_110,
)
from tests.plans import THREE_WAY_PLAN


def signed(body: bytes, now: float = NOW) -> dict[str, str]:
    return sign("POST", PUSH_PATH, body, key_id=KEY_12345, secret=SECRET_12345, now=now)


def event_push(handoff_id: str, kind: EventKind, seq: int = 7, **data: str) -> bytes:
    ev = HandoffEvent(
        seq=seq, at=datetime.now(UTC), actor=Actor.agent("1001"), kind=kind, data=data
    )
    return json.dumps(
        {
            "kind": "handoff.event",
            "handoff_id": handoff_id,
            "payload": {"handoff_id": handoff_id, "event": ev.model_dump(mode="json")},
        }
    ).encode()


@pytest.fixture
def stores(tmp_path: Path) -> Any:
    a, b = SqliteHandoffStore(tmp_path / "12345.db"), SqliteHandoffStore(tmp_path / "110.db")
    yield a, b
    a.close()
    b.close()


def test_a_partner_may_not_append_an_audit_or_internal_event(stores: Any) -> None:
    store_12345, store_110 = stores
    rec = record()
    store_12345.create(rec, outbox=True)
    receiver = Receiver(settings_of_110(), store_110, clock=lambda: NOW)
    (body,) = push_of(store_12345)
    assert receiver.receive(body, signed(body))[0] == 201
    # The record is 12345's (it sent it): 110 handles it, but only 12345 adds its own audit,
    # assignment or time-limit events; and 12345 may only note or urge on it.
    for kind, data in (
        (EventKind.READ_CONFIDENTIAL, {"view": "record"}),
        (EventKind.ACKNOWLEDGED, {}),  # 签收 is the handler's (110's), not the sender's
        (EventKind.DUE_SOON, {"stage": "sign", "due": "2026-12-02T00:00:00+00:00"}),
    ):
        forged = event_push(rec.id, kind, **data)
        status, answer = receiver.receive(forged, signed(forged))
        assert status == 422 and "may not record" in answer["reason"], kind
    note = event_push(rec.id, EventKind.SUPERVISED, seq=9, text="请尽快处置")
    assert receiver.receive(note, signed(note))[0] == 201
    got = store_110.get(rec.id)
    assert got is not None
    assert [e.kind for e in got.events][-1] is EventKind.SUPERVISED
    assert got.events[-1].actor.id == "12345:agent:1001"


def test_a_received_records_author_is_not_our_agent_of_the_same_id(stores: Any) -> None:
    store_12345, store_110 = stores
    rec = record()  # created by 12345's agent 1001
    store_12345.create(rec, outbox=True)
    (body,) = push_of(store_12345)
    Receiver(settings_of_110(), store_110, clock=lambda: NOW).receive(body, signed(body))
    got = store_110.get(rec.id)
    assert got is not None
    our_1001 = Principal("1001", "agent", agent_id="1001")
    assert not views.is_creator(our_1001, got)
    number = views.record_view(got, our_1001)["snapshot"]["citizen"]["number"]
    assert number is None or "*" in number  # not shown in full as if ours


def test_a_replay_is_refused_after_a_restart_and_from_the_future(stores: Any) -> None:
    store_12345, store_110 = stores
    store_12345.create(record(), outbox=True)
    (body,) = push_of(store_12345)
    headers = signed(body)
    assert (
        Receiver(settings_of_110(), store_110, clock=lambda: NOW).receive(body, headers)[0] == 201
    )
    restarted = Receiver(settings_of_110(), store_110, clock=lambda: NOW + 5)
    status, answer = restarted.receive(body, headers)
    assert status == 401 and "replayed" in answer["reason"]
    ahead = signed(body, now=NOW + 120)  # a clock two minutes fast
    status, answer = restarted.receive(body, ahead)
    assert status == 401 and "future" in answer["reason"]


@pytest.fixture
async def client(stores: Any) -> Any:
    _, store_110 = stores
    principal = Principal("1001", "agent", agent_id="1001")
    app = web.Application(
        middlewares=make_middlewares(TokenAuth([("agent-token-1001-xxxxxxxx", principal)]))
    )
    app[MAX_BODY] = 1 << 20
    app[partners_api.RECEIVER] = Receiver(settings_of_110(), store_110)
    app.router.add_post(PUSH_PATH, partners_api.receive_push)
    from pydantic import BaseModel

    from hotline_bridge.web.http import read_model

    class Body(BaseModel):
        x: Any = None

    async def echo(request: web.Request) -> web.Response:
        await read_model(request, Body)
        return web.json_response({})

    app.router.add_post("/echo", echo)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        # A current timestamp, so the signature itself gets compared.
        {"X-Hotline-Key-Id": KEY_12345, "X-Hotline-Timestamp": str(int(time.time())),
         "X-Hotline-Nonce": "n", "X-Hotline-Signature": "sé" * 32},
        {"X-Hotline-Key-Id": KEY_12345, "X-Hotline-Timestamp": "9" * 5000,
         "X-Hotline-Nonce": "n", "X-Hotline-Signature": "00"},
        {"X-Hotline-Key-Id": "k\u00ff", "X-Hotline-Timestamp": "1", "X-Hotline-Nonce": "n",
         "X-Hotline-Signature": "00"},
    ],
)  # fmt: skip
async def test_junk_signature_headers_are_4xx_not_500(client: Any, headers: dict[str, str]) -> None:
    async with client.post(PUSH_PATH, data=b"{}", headers=headers) as resp:
        assert resp.status == 401, await resp.text()


async def test_a_non_ascii_token_and_deeply_nested_json_are_4xx_not_500(client: Any) -> None:
    async with client.post("/echo", data=b"{}", headers={
            "Authorization": "Bearer tok\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
            "Content-Type": "application/json"}) as resp:  # fmt: skip
        assert resp.status < 500
    nested = b"[" * 100_000 + b"]" * 100_000
    headers = {
        "Authorization": "Bearer agent-token-1001-xxxxxxxx",
        "Content-Type": "application/json",
    }
    async with client.post("/echo", data=nested, headers=headers) as resp:
        assert resp.status == 400 and "nested too deeply" in (await resp.json())["error"]["reason"]


def test_the_store_is_private_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "handoffs.sqlite3"
    store = SqliteHandoffStore(path)
    store.create(record(), outbox=True)  # WAL and SHM exist now
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    store.close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert modes["handoffs.sqlite3"] == 0o600
    assert all(m & 0o077 == 0 for m in modes.values()), modes
    os.chmod(path, 0o644)
    with pytest.raises(StoreError, match="readable by others"):
        SqliteHandoffStore(path)


@pytest.mark.parametrize(
    ("number", "presented"),
    [("13800138000", "13800138000"), ("+8613800138000", "+8613800138000"),
     ("anonymous", ""), ('138" <sip:evil@x>', ""), ("", ""), ("12", "")],
)  # fmt: skip
def test_the_three_way_partner_leg_presents_only_a_real_number(number: str, presented: str) -> None:
    assert presentable_number(number) == presented
    plan = replace(THREE_WAY_PLAN, call=replace(THREE_WAY_PLAN.call, citizen_number=number))
    conf, commands = cm.start(plan, 0.0)
    (redirect,) = [c for c in commands if type(c).__name__ == "Redirect"]
    # The citizen and the agent are in the room: the partner leg is originated now.
    _, (originate,) = cm.step(conf, CommandResult(redirect, True), 1.0)
    action, fields = to_action(originate)
    assert action == "Originate"
    if presented:
        assert fields["CallerID"] == f'"{presented}" <{presented}>'
    else:
        assert "CallerID" not in fields  # withheld, never passed on raw


def test_a_locked_store_answers_busy_at_once_instead_of_freezing_the_loop(tmp_path: Path) -> None:
    import sqlite3

    from hotline_bridge.handoffs.store import StoreBusy

    store = SqliteHandoffStore(tmp_path / "h.db")
    rec = record()
    store.create(rec, outbox=False)
    holder = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer keeps the lock
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="busy") as err:
            store.append(rec.id, event_of(rec.id))
        assert err.value.status == 503  # a person's request gets a 503 with the reason
        assert time.monotonic() - started < 2.0  # bounded (250 ms), not SQLite's usual 5 s
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.append(rec.id, event_of(rec.id))  # and it writes again once the lock is gone
    store.close()


def event_of(handoff_id: str) -> HandoffEvent:
    return HandoffEvent(at=datetime.now(UTC), actor=Actor.system(), kind=EventKind.NOTE,
                        data={"text": "x"})  # fmt: skip
