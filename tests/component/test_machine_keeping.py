"""Machines kept in the store: exact round trips, finished ones kept an hour then pruned, and a
row that no longer decodes is skipped (and left for a person), never a crash at start."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from hotline_bridge.conferences import machine as cm
from hotline_bridge.conferences.machine import Conference
from hotline_bridge.core import reminder as wm
from hotline_bridge.core.reminder import Reminder
from hotline_bridge.handoffs.machines import KEEP_FINISHED_S, PRUNE_EVERY_S, Keeper
from hotline_bridge.handoffs.store import HandoffStore, SqliteHandoffStore
from hotline_bridge.transfers import machine as tm
from hotline_bridge.transfers.machine import Transfer
from tests.plans import CARRY_PLAN, THREE_WAY_PLAN
from tests.unit.test_reminder_machine import C1, T0, started


@pytest.fixture
def store(open_store: Callable[[str], HandoffStore]) -> HandoffStore:
    return open_store("handoffs")  # on SQLite and on PostgreSQL


def keeper(store: HandoffStore, kind: str, type_: Any) -> Keeper[Any]:
    return Keeper(store, kind, type_)


def test_a_transfer_survives_the_round_trip_exactly(store: HandoffStore) -> None:
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    t, _ = tm.step(t, tm.PartnerRinging(), now=2.0)
    k = keeper(store, "carry_transfer", Transfer)
    k.keep(t)
    (back,) = keeper(store, "carry_transfer", Transfer).live()
    assert back == t and back.due_at == t.due_at


def test_a_conference_and_a_reminder_survive_the_round_trip(store: HandoffStore) -> None:
    c, _ = cm.start(THREE_WAY_PLAN, now=1.0)
    r, _ = wm.step(started(), wm.AttemptFailed(C1, "3"), T0 + 20)
    keeper(store, "three_way", Conference).keep(c)
    keeper(store, "duty_reminder", Reminder).keep(r)
    assert keeper(store, "three_way", Conference).live() == [c]
    (back,) = keeper(store, "duty_reminder", Reminder).live()
    assert back == r and back.state is wm.ReminderState.RETRY_WAIT and back.due_at == r.due_at


def test_a_later_state_replaces_the_earlier_and_a_terminal_one_is_finished(
    store: HandoffStore,
) -> None:
    k = keeper(store, "carry_transfer", Transfer)
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    k.keep(t)
    ringing, _ = tm.step(t, tm.PartnerRinging(), now=2.0)
    k.moved(ringing)
    assert k.live() == [ringing] and k.finished(10) == []
    answered, _ = tm.step(ringing, tm.PartnerResult("ANSWER"), now=3.0)
    k.moved(answered)
    assert k.live() == [] and k.finished(10) == [answered]


def test_finished_machines_are_pruned_after_an_hour_live_ones_never(
    store: HandoffStore,
) -> None:
    k = keeper(store, "carry_transfer", Transfer)
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    answered, _ = tm.step(t, tm.PartnerResult("ANSWER"), now=3.0)
    k.keep(answered)
    live, _ = tm.start(replace(CARRY_PLAN, transfer_id="t-2"), now=1.0)
    k.keep(live)
    now = time.time()
    k.prune(now)  # finished a moment ago: kept
    assert k.finished(10) == [answered]
    k.prune(now + KEEP_FINISHED_S + PRUNE_EVERY_S + 1)
    assert k.finished(10) == [] and k.live() == [live]  # a live machine is never pruned


def test_finished_keeps_only_the_most_recent(store: HandoffStore) -> None:
    k = keeper(store, "carry_transfer", Transfer)
    for n in range(5):
        t, _ = tm.start(replace(CARRY_PLAN, transfer_id=f"t-{n}"), now=1.0)
        k.keep(tm.step(t, tm.PartnerResult("ANSWER"), now=2.0)[0])
    assert [t.id for t in k.finished(2)] == ["t-3", "t-4"]


def test_an_unreadable_row_is_skipped_and_kept(store: HandoffStore) -> None:
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    k = keeper(store, "carry_transfer", Transfer)
    k.keep(t)
    store.keep_machine("carry_transfer", "t-old", '{"written": "by another version"}', done=False)
    assert k.live() == [t]
    assert [i for i, _ in store.machines("carry_transfer", done=False)] == ["t-1", "t-old"]


def test_kinds_do_not_mix(store: HandoffStore) -> None:
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    keeper(store, "carry_transfer", Transfer).keep(t)
    assert keeper(store, "three_way", Conference).live() == []


def test_a_store_of_migration_6_keeps_its_live_machines(tmp_path: Path) -> None:
    import sqlite3

    from hotline_bridge.handoffs.store.migrations import MIGRATIONS, migrate

    path = tmp_path / "old.sqlite3"
    SqliteHandoffStore(path, migrations=MIGRATIONS[:6]).close()
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    raw = keeper(mock.MagicMock(), "carry_transfer", Transfer).encode(t)
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute(
            "INSERT INTO inflight (kind, id, state, updated_at) VALUES (?, ?, ?, ?)",
            ("carry_transfer", t.id, raw, "2026-12-03T00:00:00.000000Z"),
        )
        assert migrate(db) == [7, 8]
    store = SqliteHandoffStore(path)
    try:
        assert keeper(store, "carry_transfer", Transfer).live() == [t]
    finally:
        store.close()
