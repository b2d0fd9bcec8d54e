"""The partner link between two sites: signatures, replay, idempotency, and an outbox that
delivers every handoff exactly once across a partner outage (real HTTP on loopback, two stores)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hotline_bridge.catalog import load_catalog
from hotline_bridge.config.settings import PartnerSettings
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
)
from hotline_bridge.handoffs.store import (
    HandoffFilter,
    HandoffStore,
    PageRequest,
)
from hotline_bridge.partners import api as partners_api
from hotline_bridge.partners.api import Receiver
from hotline_bridge.partners.link import PUSH_PATH, PartnerLink, PushOutcome, classify, push_body
from hotline_bridge.partners.signing import NonceCache, SignatureError, sign, verify
from hotline_bridge.web.http import MAX_BODY

KEY_12345 = "k-12345-to-110"
KEY_110 = "k-110-to-12345"
SECRET_12345 = "s" * 40
SECRET_110 = "t" * 40
CATALOG = load_catalog()
NOW = 1_800_000_000.0


def settings_of_12345(base_url: str) -> PartnerSettings:
    """The 12345 site's view of its partner (110)."""
    return PartnerSettings(
        site="110",
        base_url=base_url,
        key_id=KEY_12345,
        secret=SECRET_12345,
        accept_keys={KEY_110: SECRET_110},
        retry_initial_s=0.01,
        retry_max_s=0.05,
        poll_interval_s=0.01,
    )


def settings_of_110() -> PartnerSettings:
    return PartnerSettings(
        site="12345",
        base_url="http://127.0.0.1:9",
        key_id=KEY_110,
        secret=SECRET_110,
        accept_keys={KEY_12345: SECRET_12345},
    )


def record(n: int = 0) -> HandoffRecord:
    now = datetime.now(UTC)  # outbox rows are due from their creation time
    return new_handoff(
        HandoffInput(category="police.criminal", narrative=f"第{n}号 入室盗窃"),
        handoff_id=new_handoff_id(int(now.timestamp() * 1000) + n),
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_110,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=now,
    )


# -- signatures ------------------------------------------------------------------------------


def signed(body: bytes, *, secret: str = SECRET_12345, now: float = NOW) -> dict[str, str]:
    return sign("POST", PUSH_PATH, body, key_id=KEY_12345, secret=secret, now=now)


def check(body: bytes, headers: dict[str, str], nonces: NonceCache, now: float = NOW) -> None:
    verify(
        "POST",
        PUSH_PATH,
        body,
        headers,
        keys={KEY_12345: SECRET_12345},
        now=now,
        window_s=300,
        nonces=nonces,
    )


def test_a_signed_request_verifies_once() -> None:
    nonces = NonceCache()
    headers = signed(b"{}")
    check(b"{}", headers, nonces)
    with pytest.raises(SignatureError, match="replayed"):
        check(b"{}", headers, nonces)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: ({}, b), "unsigned"),
        (lambda h, b: ({**h, "X-Hotline-Key-Id": "nobody"}, b), "unknown key"),
        (lambda h, b: (h, b + b" "), "bad signature"),
        (lambda h, b: (signed(b, secret="x" * 40), b), "bad signature"),
        (lambda h, b: (signed(b, now=NOW - 301), b), "outside the replay window"),
        (lambda h, b: (signed(b, now=NOW + 31), b), "timestamp in the future"),
        (lambda h, b: ({**h, "X-Hotline-Timestamp": "12a"}, b), "malformed"),
    ],
)
def test_bad_signatures_are_refused(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    headers, body = mutate(signed(b'{"a":1}'), b'{"a":1}')
    with pytest.raises(SignatureError, match=reason):
        check(body, headers, NonceCache())


def test_a_forged_request_does_not_burn_the_nonce() -> None:
    nonces = NonceCache()
    good = signed(b"{}")
    with pytest.raises(SignatureError):
        check(b"{}", {**good, "X-Hotline-Signature": "0" * 64}, nonces)
    check(b"{}", good, nonces)  # the genuine request still goes through


def test_push_outcomes_by_status() -> None:
    assert classify(201) is PushOutcome.DELIVERED and classify(200) is PushOutcome.DELIVERED
    assert classify(409) is PushOutcome.FAILED and classify(503) is PushOutcome.FAILED
    assert classify(401) is PushOutcome.REJECTED and classify(422) is PushOutcome.REJECTED


# -- the receiver ------------------------------------------------------------------------------


@pytest.fixture
def store_110(open_store: Callable[[str], HandoffStore]) -> HandoffStore:
    return open_store("110")  # on SQLite and on PostgreSQL


@pytest.fixture
def store_12345(open_store: Callable[[str], HandoffStore]) -> HandoffStore:
    return open_store("12345")


def push_of(store: HandoffStore) -> list[bytes]:
    return [push_body(i) for i in store.outbox_pending(100, now=datetime.now(UTC))]


def test_the_same_push_twice_is_one_record(
    store_12345: HandoffStore, store_110: HandoffStore
) -> None:
    rec = record()
    store_12345.create(rec, outbox=True)
    (body,) = push_of(store_12345)
    receiver = Receiver(settings_of_110(), store_110, clock=lambda: NOW)
    assert receiver.receive(body, signed(body))[0] == 201
    status, answer = receiver.receive(body, signed(body))  # a retry after a lost answer
    assert status == 200 and answer["duplicate"] is True
    got = store_110.get(rec.id)
    assert got is not None and got.snapshot.matter == rec.snapshot.matter
    # Stored as 12345's: its author is 12345's agent, not our agent of the same id.
    assert got.snapshot.created_by.model_dump() == {"kind": "partner", "id": "12345:agent:1001"}
    assert store_110.outbox_pending(10, now=datetime.now(UTC)) == []  # never bounced back


def test_events_are_deduplicated_and_wait_for_their_record(
    store_12345: HandoffStore, store_110: HandoffStore
) -> None:
    rec = record()
    store_110.create(rec, outbox=False)  # the 110 side has it; the 12345 side does not yet
    ack = HandoffEvent(
        at=datetime.now(UTC),
        actor=Actor.agent("2001"),
        kind=EventKind.ACKNOWLEDGED,
    )
    stored = store_110.append(rec.id, ack, outbox=True)
    (item,) = store_110.outbox_pending(10, now=datetime.now(UTC))
    body = push_body(item)
    back = Receiver(settings_of_12345("http://127.0.0.1:9"), store_12345, clock=lambda: NOW)
    headers = sign("POST", PUSH_PATH, body, key_id=KEY_110, secret=SECRET_110, now=NOW)
    assert back.receive(body, headers)[0] == 409  # record not there: the sender retries
    store_12345.create(rec, outbox=False)
    headers = sign("POST", PUSH_PATH, body, key_id=KEY_110, secret=SECRET_110, now=NOW)
    assert back.receive(body, headers)[0] == 201
    headers = sign("POST", PUSH_PATH, body, key_id=KEY_110, secret=SECRET_110, now=NOW)
    assert back.receive(body, headers) == (200, {"handoff_id": rec.id, "duplicate": True})
    got = store_12345.get(rec.id)
    assert got is not None
    acks = [e for e in got.events if e.kind is EventKind.ACKNOWLEDGED]
    assert len(acks) == 1
    assert acks[0].actor.kind.value == "partner" and acks[0].actor.id == "110:agent:2001"
    assert acks[0].data["partner_seq"] == str(stored.seq)


def test_wrongly_addressed_or_mismatched_pushes_are_refused(store_110: HandoffStore) -> None:
    rec = record()
    receiver = Receiver(settings_of_110(), store_110, clock=lambda: NOW)
    body = json.dumps(
        {
            "kind": "handoff.created",
            "handoff_id": "h-" + "0" * 26,
            "payload": json.loads(rec.model_dump_json()),
        }
    ).encode()
    assert receiver.receive(body, signed(body))[0] == 422
    body = b'{"kind": "handoff.deleted", "handoff_id": "x", "payload": {}}'
    assert receiver.receive(body, signed(body))[0] == 422
    assert receiver.receive(body, {})[0] == 401


# -- the outbox across a partner outage -----------------------------------------------------------


@pytest.fixture
async def partner_110(store_110: HandoffStore) -> AsyncIterator[TestServer]:
    app = web.Application()
    app[MAX_BODY] = 1 << 20
    app[partners_api.RECEIVER] = Receiver(settings_of_110(), store_110)
    app.router.add_post(PUSH_PATH, partners_api.receive_push)
    server = TestServer(app, host="127.0.0.1")
    yield server
    await server.close()


async def test_partner_down_then_up_every_handoff_delivered_exactly_once(
    store_12345: HandoffStore, store_110: HandoffStore, partner_110: TestServer
) -> None:
    await partner_110.start_server()
    port = partner_110.port
    await partner_110.close()  # the 110 site is down
    outcomes: list[PushOutcome] = []
    link = PartnerLink(settings_of_12345(f"http://127.0.0.1:{port}"), store_12345, outcomes.append)
    await link.start()
    try:
        records = [record(n) for n in range(20)]
        for rec in records:
            store_12345.create(rec, outbox=True)
        await asyncio.sleep(0.3)
        assert PushOutcome.DELIVERED not in outcomes and PushOutcome.FAILED in outcomes
        assert store_12345.outbox_backlog()[0] == 20  # queued, none lost

        # The partner comes back on the same port; the outbox drains by itself.
        revived = TestServer(partner_110.app, host="127.0.0.1", port=port)
        await revived.start_server()
        try:
            for _ in range(200):
                if store_12345.outbox_backlog()[0] == 0:
                    break
                await asyncio.sleep(0.02)
        finally:
            await revived.close()
    finally:
        await link.close()
    assert store_12345.outbox_backlog() == (0, None)
    page = store_110.list(HandoffFilter(), PageRequest(limit=200))
    assert sorted(r.id for r in page.items) == sorted(r.id for r in records)  # none lost
    assert outcomes.count(PushOutcome.DELIVERED) == 20  # none doubled


async def test_a_push_claimed_by_a_drainer_that_died_is_pushed_again_within_seconds(
    store_12345: HandoffStore, store_110: HandoffStore, partner_110: TestServer
) -> None:
    """kill -9 between a push and its mark leaves the row claimed: the restarted bridge (or
    another replica) pushes it once the claim lapses, a few push timeouts later, not minutes."""
    from hotline_bridge.partners.link import CLAIM_MARGIN_S, CLAIM_PUSHES

    await partner_110.start_server()
    settings = settings_of_12345(f"http://127.0.0.1:{partner_110.port}")
    rec = record(1)
    store_12345.create(rec, outbox=True)
    t0 = datetime.now(UTC).timestamp()
    dead = PartnerLink(settings, store_12345, clock=lambda: t0)
    lease_s = CLAIM_PUSHES * settings.push_timeout_s + CLAIM_MARGIN_S
    assert lease_s <= 60
    # What the dead drainer did before it died: claimed the row for its lease, never marked it.
    (claimed,) = store_12345.outbox_claim(1, now=datetime.fromtimestamp(t0, UTC), lease_s=lease_s)
    assert claimed.handoff_id == rec.id
    del dead

    early = PartnerLink(settings, store_12345, clock=lambda: t0 + lease_s - 1)
    late = PartnerLink(settings, store_12345, clock=lambda: t0 + lease_s + 1)
    await early.start()
    try:
        await asyncio.sleep(0.3)  # its rounds find the row still claimed
        assert early.delivered == 0 and store_12345.outbox_backlog()[0] == 1
        await late.start()
        try:
            for _ in range(200):  # bounded polling, no timed assertion
                if store_12345.outbox_backlog()[0] == 0:
                    break
                await asyncio.sleep(0.02)
        finally:
            await late.close()
    finally:
        await early.close()
    assert (early.delivered, late.delivered) == (0, 1)  # pushed again once the claim lapsed
    assert store_12345.outbox_backlog() == (0, None)
    assert store_110.get(rec.id) is not None
