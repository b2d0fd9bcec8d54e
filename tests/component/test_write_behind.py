"""Writes nothing waits for, behind the loop: in order, all there once drained, on SQLite and
PostgreSQL; grouped in one transaction whose failed write is undone alone; a keeper's later
states and a recorder's notes take that path when it exists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.handoffs.model import Actor, EventKind, HandoffEvent
from hotline_bridge.handoffs.store import HandoffStore, StoreError
from hotline_bridge.handoffs.store.behind import TurnWrites, WriteBehind, write_group
from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore
from hotline_bridge.transfers import machine as tm
from hotline_bridge.transfers.machine import Transfer
from tests.component.test_store import make as make_record
from tests.plans import CARRY_PLAN


def note(i: int) -> HandoffEvent:
    return HandoffEvent(
        at=datetime(2026, 12, 4, 4, 0, i, tzinfo=UTC),
        actor=Actor.system(),
        kind=EventKind.CALL_PROGRESS,
        data={"what": f"step-{i}"},
    )


def appending(handoff_id: str, event: HandoffEvent) -> Callable[[HandoffStore], None]:
    def work(store: HandoffStore) -> None:
        store.append(handoff_id, event)

    return work


def test_queued_appends_land_in_order_once_drained(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = make_record()
    store.create(record)
    behind = WriteBehind(store)
    try:
        for i in range(50):
            assert behind.submit(appending(record.id, note(i)))
        assert behind.drain(10)
        got = store.get(record.id)
        assert got is not None
        assert [e.data.get("what") for e in got.events[1:]] == [f"step-{i}" for i in range(50)]
    finally:
        behind.close()


def test_a_failed_write_is_logged_and_the_next_ones_still_land(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = make_record()
    store.create(record)
    behind = WriteBehind(store)
    try:
        behind.submit(appending("no-such-record", note(0)))
        behind.submit(appending(record.id, note(1)))
        assert behind.drain(10)
        got = store.get(record.id)
        assert got is not None and got.events[-1].data["what"] == "step-1"
    finally:
        behind.close()


def test_a_keeper_s_later_states_go_behind_and_close_writes_what_is_queued(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    behind = WriteBehind(store)

    def later(work: Callable[[HandoffStore], None]) -> None:
        assert behind.submit(work)

    keeper = Keeper(store, "carry_transfer", Transfer, later=later)
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    keeper.keep(t)  # the first state: at once
    t2, _ = tm.step(t, tm.PartnerRinging(), now=2.0)
    keeper.moved(t2)  # later: behind
    behind.close()  # drains before it stops
    (back,) = Keeper(store, "carry_transfer", Transfer).live()
    assert back == t2


def test_a_group_is_one_transaction_whose_failed_write_is_undone_alone(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = make_record()
    store.create(record)
    write_group(
        store,
        [
            appending(record.id, note(1)),
            appending("no-such-record", note(2)),  # fails inside the group: its savepoint only
            appending(record.id, note(3)),
        ],
    )
    got = store.get(record.id)
    assert got is not None
    assert [e.data.get("what") for e in got.events[1:]] == ["step-1", "step-3"]
    assert [e.seq for e in got.events] == [1, 2, 3]


def test_a_group_whose_transaction_cannot_begin_is_written_one_by_one(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = make_record()
    store.create(record)

    class NoGroups:
        """The store, but its group transaction fails (as a busy or lost store's would)."""

        def batch(self) -> Any:
            raise StoreError("the record store is busy; try again")

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    write_group(
        cast(HandoffStore, NoGroups()),
        [appending(record.id, note(1)), appending(record.id, note(2))],
    )
    got = store.get(record.id)
    assert got is not None and [e.data.get("what") for e in got.events[1:]] == ["step-1", "step-2"]


async def test_turn_writes_wait_for_the_end_of_the_loop_turn_then_commit_together(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = make_record()
    store.create(record)
    turn = TurnWrites(store)
    for i in range(5):
        assert turn.submit(appending(record.id, note(i)))
    got = store.get(record.id)
    assert got is not None and len(got.events) == 1  # not yet: the turn is not over
    await asyncio.sleep(0)
    got = store.get(record.id)
    assert got is not None
    assert [e.data.get("what") for e in got.events[1:]] == [f"step-{i}" for i in range(5)]
    turn.submit(appending(record.id, note(9)))
    await turn.settle()  # a read that must see it does not wait for the turn
    got = store.get(record.id)
    assert got is not None and got.events[-1].data["what"] == "step-9"


def test_turn_writes_outside_a_loop_are_refused_so_the_caller_writes_now(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    assert TurnWrites(store).submit(lambda _store: None) is False


def test_a_postgres_group_makes_no_savepoints_and_a_failed_write_undoes_it(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SAVEPOINT + RELEASE would make each grouped write three round trips: there are none. The
    first failing write undoes the group, which is then written one write at a time."""
    store = PostgresHandoffStore(pg_dsn)
    try:
        record = make_record()
        store.create(record)
        trace = tmp_path / "libpq.trace"
        with trace.open("w") as f:
            store._db.pgconn.trace(f.fileno())
            write_group(store, [appending(record.id, note(i)) for i in range(1, 4)])
            sent_clean = trace.read_text()
            write_group(
                store,
                [
                    appending(record.id, note(4)),
                    appending("no-such-record", note(5)),
                    appending(record.id, note(6)),
                ],
            )
            store._db.pgconn.untrace()
        # What the bridge sent (libpq's trace: F lines are the client's messages).
        sent = [line for line in sent_clean.splitlines() if "\tF\t" in line]
        assert not [line for line in sent if "SAVEPOINT" in line]
        assert sum('"BEGIN"' in line for line in sent) == 1
        assert sum('"COMMIT"' in line for line in sent) == 1
        later = trace.read_text()[len(sent_clean) :]
        assert "SAVEPOINT" not in later and '"ROLLBACK"' in later  # the group, undone
        got = store.get(record.id)
        assert got is not None
        whats = [e.data.get("what") for e in got.events[1:]]
        assert whats == ["step-1", "step-2", "step-3", "step-4", "step-6"]
        assert [e.seq for e in got.events] == list(range(1, 7))
    finally:
        store.close()
