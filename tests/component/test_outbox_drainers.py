"""Several drainers of one outbox (bridge replicas sharing a store): a claimed row goes to one
drainer until it is delivered, failed or its claim lapses; one handoff's rows keep their order;
and two drainers racing on a real PostgreSQL server (and two partner links over real HTTP) push
every row exactly once: none doubled, none lost."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestServer

from hotline_bridge.handoffs.model import Actor, EventKind, event
from hotline_bridge.handoffs.store import HandoffFilter, HandoffStore, PageRequest
from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore
from hotline_bridge.partners.link import PartnerLink, PushOutcome
from tests.component.test_partner_link import (  # noqa: F401 (fixtures)
    partner_110,
    record,
    settings_of_12345,
    store_110,
)

LATER = timedelta(days=1)


def test_a_claimed_row_goes_to_one_drainer_until_released(
    open_store: Callable[[str], HandoffStore],
) -> None:
    a, b = open_store("shared"), open_store("shared")  # two connections, one store
    rec = record(1)
    a.create(rec, outbox=True)
    now = datetime.now(UTC) + timedelta(seconds=1)
    [item] = a.outbox_claim(now=now, lease_s=60)
    assert item.handoff_id == rec.id
    assert b.outbox_claim(now=now) == []  # claimed by a
    assert len(b.outbox_pending(now=now)) == 1  # still undelivered: never lost
    # a dies without an answer: its claim lapses and b takes the row.
    [again] = b.outbox_claim(now=now + timedelta(seconds=61))
    assert again.id == item.id
    # A failed push frees the row for its next attempt, whoever drains it.
    b.outbox_mark_failed(again.id, now + timedelta(seconds=70))
    assert a.outbox_claim(now=now + timedelta(seconds=69)) == []
    [third] = a.outbox_claim(now=now + timedelta(seconds=70))
    assert third.attempts == 1
    a.outbox_mark_delivered(third.id)
    assert b.outbox_claim(now=now + LATER) == [] and a.outbox_backlog() == (0, None)


def test_a_handoffs_later_row_waits_for_its_earlier_one(
    open_store: Callable[[str], HandoffStore],
) -> None:
    a, b = open_store("shared"), open_store("shared")
    rec, other = record(1), record(2)
    a.create(rec, outbox=True)
    at = rec.snapshot.created_at
    a.append(rec.id, event(EventKind.NOTE, actor=Actor.system(), at=at, text="x"), outbox=True)
    a.create(other, outbox=True)
    now = datetime.now(UTC) + timedelta(seconds=1)
    # a takes rec's record and its event together (one handoff, in order) ...
    first, second = a.outbox_claim(1, now=now)
    assert (first.kind, second.kind) == ("handoff.created", "handoff.event")
    assert first.handoff_id == second.handoff_id == rec.id
    # ... so b can never push rec's event first: it gets only the other record.
    [only] = b.outbox_claim(now=now)
    assert only.handoff_id == other.id
    # rec's record fails: a pushes nothing more of rec this round, and lets all of rec go.
    a.outbox_mark_failed(first.id, now + timedelta(seconds=30))
    assert b.outbox_claim(now=now) == []  # the event waits behind its record's retry
    again, event_row = b.outbox_claim(now=now + timedelta(seconds=30))
    assert (again.id, event_row.id) == (first.id, second.id)


def test_two_drainers_race_on_postgres_and_push_each_row_once(pg_dsn: str) -> None:
    """Two replicas' drainers (own connections, own threads) claim from one outbox while a
    third writes to it: every row pushed exactly once, each handoff's rows in order."""
    writer = PostgresHandoffStore(pg_dsn)
    records = [record(n) for n in range(120)]
    pushed: dict[str, list[int]] = {"a": [], "b": []}
    order: dict[str, list[int]] = {}
    lock = threading.Lock()
    writing_done = threading.Event()
    start = threading.Barrier(3)

    def write() -> None:
        start.wait()
        try:
            for rec in records:
                writer.create(rec, outbox=True)
                at = rec.snapshot.created_at
                for text in ("one", "two"):
                    note = event(EventKind.NOTE, actor=Actor.system(), at=at, text=text)
                    writer.append(rec.id, note, outbox=True)
        finally:
            writing_done.set()  # the drainers stop even if the writer failed

    def drain(name: str) -> None:
        store = PostgresHandoffStore(pg_dsn)
        rng = random.Random(name)
        start.wait()
        try:
            idle = 0
            while idle < 3:
                items = store.outbox_claim(rng.randint(1, 7), now=datetime.now(UTC) + LATER)
                if not items:
                    idle = idle + 1 if writing_done.is_set() else 0
                    writing_done.wait(0.005)
                    continue
                idle = 0
                for item in items:
                    with lock:  # "the push": what the partner would receive
                        pushed[name].append(item.id)
                        order.setdefault(item.handoff_id, []).append(item.id)
                    store.outbox_mark_delivered(item.id)
        finally:
            store.close()

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=drain, args=(n,)) for n in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        all_ids = pushed["a"] + pushed["b"]
        assert len(all_ids) == 3 * len(records)  # none lost ...
        assert len(set(all_ids)) == len(all_ids)  # ... none doubled
        assert writer.outbox_backlog() == (0, None)
        assert all(ids == sorted(ids) and len(ids) == 3 for ids in order.values())
        assert pushed["a"] and pushed["b"]  # both replicas really drained
    finally:
        writer.close()


async def test_two_partner_links_share_one_outbox_without_doubling(
    open_store: Callable[[str], HandoffStore],
    store_110: HandoffStore,  # noqa: F811
    partner_110: TestServer,  # noqa: F811
) -> None:
    """Two replicas' partner links (each its own store connection) drain one outbox to the
    partner over real HTTP while it is written: each handoff delivered once, by one of them."""
    await partner_110.start_server()
    url = f"http://127.0.0.1:{partner_110.port}"
    writer = open_store("12345")
    outcomes: dict[str, list[PushOutcome]] = {"a": [], "b": []}
    links = [
        PartnerLink(settings_of_12345(url), open_store("12345"), outcomes[n].append)
        for n in ("a", "b")
    ]
    for link in links:
        await link.start()
    try:
        records = [record(n) for n in range(30)]
        for rec in records:
            writer.create(rec, outbox=True)
            for link in links:
                link.kick()
            await asyncio.sleep(0)
        for _ in range(500):
            if writer.outbox_backlog()[0] == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        for link in links:
            await link.close()
    assert writer.outbox_backlog() == (0, None)
    delivered = outcomes["a"] + outcomes["b"]
    # A doubled push would be answered 200 (a duplicate) and counted here too.
    assert delivered.count(PushOutcome.DELIVERED) == len(records)  # none doubled
    page = store_110.list(HandoffFilter(), PageRequest(limit=200))
    assert sorted(r.id for r in page.items) == sorted(r.id for r in records)  # none lost
