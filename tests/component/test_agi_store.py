"""The store's side of the hooks: counting a number's records by category, and the call log."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    HandoffKind,
    HandoffRecord,
)
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import (
    MIGRATIONS,
    CallEntry,
    HandoffStore,
    SqliteHandoffStore,
    migrate,
)
from hotline_bridge.handoffs.store.pg_migrations import CITIZEN_NUMBER

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
CATALOG = load_catalog()
HARASSMENT = ("police.harassment",)


def make(number: str | None, category: str | None, days: int = 0) -> HandoffRecord:
    now = T0 + timedelta(days=days)
    return new_handoff(
        HandoffInput(category=category),
        handoff_id=new_handoff_id(int(now.timestamp() * 1000)),
        kind=HandoffKind.WORK_ORDER,
        direction=Direction.TO_110,
        target="110",
        citizen_number=number,
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=now,
    )


@pytest.fixture
def store(open_store: Callable[[str], HandoffStore]) -> HandoffStore:
    return open_store("h")  # on SQLite and on PostgreSQL


def test_count_citizen_records_by_number_category_and_time(store: HandoffStore) -> None:
    for days in (0, 10, 20):
        store.create(make("13700137000", "police.harassment", days))
    store.create(make("13700137000", "police.criminal", 5))  # another category
    store.create(make("13800138000", "police.harassment", 5))  # another number
    store.create(make(None, "police.harassment", 5))  # no number

    def count(number: str, since_days: int, categories: tuple[str, ...] = HARASSMENT) -> int:
        since = T0 + timedelta(days=since_days)
        return store.count_citizen_records(number, categories=categories, since=since)

    assert count("13700137000", 0) == 3
    assert count("13700137000", 1) == 2  # created at or after `since`
    assert count("13700137000", 21) == 0
    assert count("13700137000", 0, ("police.harassment", "police.criminal")) == 4
    assert count("13800138000", 0) == 1
    assert count("13900139000", 0) == 0
    assert count("13700137000", 0, ()) == 0
    assert count("", 0) == 0


def test_the_count_uses_the_citizen_index(store: HandoffStore) -> None:
    db: Any = store._db  # type: ignore[attr-defined]
    if isinstance(store, SqliteHandoffStore):
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM handoffs "
            "WHERE json_extract(snapshot, '$.citizen.number') = ? AND created_at >= ?",
            ("1", "2026"),
        ).fetchall()
    else:
        # An empty table is scanned whatever the indexes: ask whether the index *can* answer.
        with db.transaction():
            db.execute("SET LOCAL enable_seqscan = off")
            plan = db.execute(
                f"EXPLAIN SELECT COUNT(*) FROM handoffs WHERE {CITIZEN_NUMBER} = %s "  # noqa: S608
                "AND created_at >= %s",
                ("1", "2026"),
            ).fetchall()
    assert "handoffs_by_citizen" in str(plan), plan


def test_open_call_once_per_call_id(store: HandoffStore) -> None:
    entry = CallEntry(
        call_id="1764432000.42",
        arrived_at=T0,
        kind="citizen",
        jurisdiction=Jurisdiction.YULONG,
        caller="13800138000",
        dialled="12345",
        endpoint="carrier",
        nuisance=True,
    )
    assert store.open_call(entry) is True
    assert store.open_call(entry) is False  # a retried hook does not log the call twice
    assert store.get_call("1764432000.42") == entry
    assert store.get_call("nope") is None
    partner = CallEntry(
        call_id="1764432000.43",
        arrived_at=T0,
        kind="from_partner",
        handoff_id="h-01m8m3h46eseknac2jvyq5j6te",
        urgency="urgent",
    )
    store.open_call(partner)
    assert store.get_call("1764432000.43") == partner


def test_an_older_store_gains_the_call_log_and_the_index(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = SqliteHandoffStore(path, migrations=MIGRATIONS[:2])
    old.create(make("13700137000", "police.harassment"))
    old.close()
    with sqlite3.connect(path, isolation_level=None) as db:
        assert migrate(db) == [3, 4, 5, 6, 7, 8]
    s = SqliteHandoffStore(path)
    try:
        assert s.count_citizen_records("13700137000", categories=HARASSMENT, since=T0) == 1
        assert s.open_call(CallEntry(call_id="1.1", arrived_at=T0, kind="citizen"))
    finally:
        s.close()


def test_the_recorder_remembers_the_calls_it_logs(store: HandoffStore) -> None:
    """The hotkey routes by the jurisdiction the entry hook logged without reading it back;
    a call logged elsewhere (another replica, before a restart) is read from the call log."""
    recorder = StoreRecorder(store, CATALOG, site=Platform.HOTLINE_12345, public_url="http://x")
    entry = CallEntry(
        call_id="1.1", arrived_at=T0, kind="citizen", jurisdiction=Jurisdiction.YULONG
    )
    recorder.log_call(entry)
    assert store.get_call("1.1") == entry  # written (inline: this recorder has no write-behind)
    recorder.log_call(replace(entry, jurisdiction=Jurisdiction.GUCHENG))  # the first one wins
    assert recorder.jurisdiction("1.1") == "yulong"
    store.open_call(replace(entry, call_id="2.2", jurisdiction=Jurisdiction.HUAPING))
    assert recorder.jurisdiction("2.2") == "huaping"
    assert recorder.jurisdiction("3.3") == "unknown"
    # The consoles' entry facts: the logged entry from memory (the first), others from the log.
    assert recorder.call_entry("1.1") == entry
    assert recorder.call_entry("2.2") == store.get_call("2.2")
    assert recorder.call_entry("3.3") is None
