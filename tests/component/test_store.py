"""The handoff store, on both backends (SQLite and a real PostgreSQL server, one per session):
CRUD, append-only, filters, pagination, outbox, migrations."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from lab.pgserver import PgServer

from hotline_bridge.catalog import MatterClass, load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    Direction,
    EventKind,
    HandoffKind,
    HandoffRecord,
    Status,
    event,
)
from hotline_bridge.handoffs.status import (
    fold,
)
from hotline_bridge.handoffs.store import (
    MIGRATIONS,
    AccessEntry,
    DuplicateHandoff,
    HandoffFilter,
    HandoffStore,
    MachineRow,
    PageRequest,
    SqliteHandoffStore,
    StoreError,
    UnknownHandoff,
    migrate,
    schema_versions,
)
from hotline_bridge.handoffs.store.pg_migrations import (
    PG_MIGRATIONS,
    pg_migrate,
    pg_schema_versions,
)
from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CATALOG = load_catalog()
PARTNER = Actor(kind=ActorKind.PARTNER, id="110-desk")


def make(
    n: int = 0,
    *,
    category: str | None = "police.criminal",
    direction: Direction = Direction.TO_110,
    kind: HandoffKind = HandoffKind.CARRY_TRANSFER,
    jurisdiction: Jurisdiction = Jurisdiction.GUCHENG,
    **extra: Any,
) -> HandoffRecord:
    now = T0 + timedelta(minutes=n)
    return new_handoff(
        HandoffInput(
            category=category, jurisdiction=jurisdiction, narrative=f"第{n}号:市民报警", **extra
        ),
        handoff_id=new_handoff_id(int(now.timestamp() * 1000)),
        kind=kind,
        direction=direction,
        target="110" if direction is Direction.TO_110 else "12345",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=now,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "handoffs.sqlite3"


class Backend:
    """One store database: ``open()`` connects to it again, ``raw(sql)`` runs SQL on it behind
    the store's back (as an operator with a SQL prompt could)."""

    def __init__(self, name: str, opener: Callable[[], HandoffStore], raw: Callable[[str], None]):
        self.name = name
        self.open = opener
        self.raw = raw


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, path: Path) -> Backend:
    if request.param == "sqlite":

        def sqlite_raw(sql: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql)

        return Backend("sqlite", lambda: SqliteHandoffStore(path), sqlite_raw)
    dsn: str = request.getfixturevalue("pg_dsn")

    def pg_raw(sql: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(sql.encode())

    return Backend("postgres", lambda: PostgresHandoffStore(dsn), pg_raw)


@pytest.fixture
def store(backend: Backend) -> Iterator[HandoffStore]:
    s = backend.open()
    yield s
    s.close()


def test_store_satisfies_the_protocol(path: Path, pg_dsn: str) -> None:
    for s in (SqliteHandoffStore(path), PostgresHandoffStore(pg_dsn)):
        as_protocol: HandoffStore = s
        assert as_protocol is s
        s.close()


def test_creates_parent_directory_and_uses_wal(path: Path) -> None:
    SqliteHandoffStore(path).close()
    assert path.is_file()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_get_round_trip_and_reopen(backend: Backend, store: HandoffStore) -> None:
    record = make()
    assert store.create(record) is True
    assert store.get(record.id) == record
    store.close()
    reopened = backend.open()
    try:
        got = reopened.get(record.id)
        assert got == record
        assert got is not None and got.snapshot.content.narrative == "第0号:市民报警"
    finally:
        reopened.close()


def test_get_unknown_is_none(store: HandoffStore) -> None:
    assert store.get("h-00000000000000000000000000") is None
    assert store.get("anything; DROP TABLE handoffs") is None


def test_create_same_record_twice_is_one_record(store: HandoffStore) -> None:
    record = make()
    assert store.create(record) is True
    assert store.create(record) is False
    assert len(store.outbox_pending(now=T0 + timedelta(days=1))) == 1
    assert len(store.list(HandoffFilter(), PageRequest()).items) == 1


def test_create_same_id_different_snapshot_is_refused(store: HandoffStore) -> None:
    record = make()
    store.create(record)
    other = make(category="dispute.family").model_copy(update={"id": record.id})
    with pytest.raises(DuplicateHandoff):
        store.create(other)
    assert store.get(record.id) == record


def test_append_numbers_events_and_moves_status(store: HandoffStore) -> None:
    record = make()
    store.create(record)
    e1 = store.append(record.id, event(EventKind.PUSHED, actor=Actor.system(), at=T0))
    e2 = store.append(record.id, event(EventKind.ACKNOWLEDGED, actor=PARTNER, at=T0))
    e3 = store.append(
        record.id, event(EventKind.NOTE, actor=PARTNER, at=T0, text="已派警\n正在处置")
    )
    assert (e1.seq, e2.seq, e3.seq) == (2, 3, 4)
    got = store.get(record.id)
    assert got is not None
    assert [e.seq for e in got.events] == [1, 2, 3, 4]
    assert got.snapshot == record.snapshot  # appends never touch the snapshot
    assert fold(got).status is Status.ACKNOWLEDGED
    assert got.events[-1].data["text"] == "已派警\n正在处置"
    # The denormalised status column agrees with the fold (the list filter relies on it).
    page = store.list(HandoffFilter(status=Status.ACKNOWLEDGED), PageRequest())
    assert [r.id for r in page.items] == [record.id]


def test_append_ignores_a_caller_supplied_seq(store: HandoffStore) -> None:
    record = make()
    store.create(record)
    ev = event(EventKind.NOTE, actor=PARTNER, at=T0, text="x").model_copy(update={"seq": 99})
    assert store.append(record.id, ev).seq == 2


def test_append_to_unknown_or_created_refused(store: HandoffStore) -> None:
    with pytest.raises(UnknownHandoff):
        store.append("h-00000000000000000000000000", event(EventKind.PUSHED, actor=PARTNER, at=T0))
    record = make()
    store.create(record)
    with pytest.raises(StoreError):
        store.append(record.id, event(EventKind.CREATED, actor=PARTNER, at=T0))


def test_database_refuses_rewrites(backend: Backend, store: HandoffStore) -> None:
    record = make()
    store.create(record)
    store.log_access(AccessEntry(record.id, "1001", "agent", "record", True, T0))
    rewrites = [
        "UPDATE handoff_events SET body = '{}'",
        "DELETE FROM handoff_events",
        "UPDATE handoffs SET snapshot = '{}'",
        "UPDATE handoffs SET matter_class = 'neither_platform'",
        "DELETE FROM handoffs",
        "DELETE FROM access_log",
    ]
    if backend.name == "postgres":  # SQLite has no TRUNCATE
        rewrites += ["TRUNCATE handoff_events CASCADE", "TRUNCATE handoffs CASCADE",
                     "TRUNCATE access_log"]  # fmt: skip
    for sql in rewrites:
        with pytest.raises(Exception, match=r"append-only|frozen|kept") as caught:
            backend.raw(sql)
        assert isinstance(caught.value, sqlite3.DatabaseError | psycopg.Error)
    assert store.get(record.id) == record
    assert len(store.access_log(record.id)) == 1
    # What may move does: the status columns, on append.
    store.append(record.id, event(EventKind.CLOSED, actor=PARTNER, at=T0))
    assert store.list(HandoffFilter(status=Status.CLOSED), PageRequest()).items


# -- list ------------------------------------------------------------------------------------


def test_list_filters(store: HandoffStore) -> None:
    a = make(0, category="police.criminal", jurisdiction=Jurisdiction.YULONG)
    b = make(1, category="dispute.family", direction=Direction.TO_12345)
    c = make(2, category=None, kind=HandoffKind.WORK_ORDER, jurisdiction=Jurisdiction.NINGLANG)
    d = make(3, category="neither.petition", kind=HandoffKind.THREE_WAY)
    for r in (a, b, c, d):
        store.create(r)
    store.append(d.id, event(EventKind.CLOSED, actor=PARTNER, at=T0))

    def ids(**kw: Any) -> list[str]:
        return [r.id for r in store.list(HandoffFilter(**kw), PageRequest()).items]

    assert ids() == [d.id, c.id, b.id, a.id]  # newest first
    assert ids(matter_class=MatterClass.POLICE_MATTER) == [a.id]
    assert ids(matter_class=MatterClass.NON_POLICE_MATTER) == [b.id]
    assert ids(direction=Direction.TO_12345) == [b.id]
    assert ids(kind=HandoffKind.WORK_ORDER) == [c.id]
    assert ids(jurisdiction=Jurisdiction.NINGLANG) == [c.id]
    assert ids(status=Status.CLOSED) == [d.id]
    assert ids(status=Status.CREATED) == [c.id, b.id, a.id]
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [c.id, b.id]
    assert ids(since=T0 + timedelta(minutes=1), kind=HandoffKind.CARRY_TRANSFER) == [b.id]
    # Events come with listed records.
    closed = store.list(HandoffFilter(status=Status.CLOSED), PageRequest()).items[0]
    assert [e.kind for e in closed.events] == [EventKind.CREATED, EventKind.CLOSED]


def test_pagination_walks_every_record_once(store: HandoffStore) -> None:
    records = [make(i) for i in range(450)]
    for r in records:
        store.create(r, outbox=False)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = store.list(HandoffFilter(), PageRequest(limit=200, cursor=cursor))
        seen += [r.id for r in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3
    assert seen == [r.id for r in reversed(records)]


def test_pagination_with_same_timestamps_uses_id_as_tiebreak(store: HandoffStore) -> None:
    same = [make(0).model_copy(update={"id": new_handoff_id()}) for _ in range(5)]
    for r in same:
        store.create(r, outbox=False)
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(HandoffFilter(), PageRequest(limit=2, cursor=cursor))
        seen += [r.id for r in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(seen) == sorted(r.id for r in same) and len(seen) == 5


def test_exact_page_has_no_next_cursor(store: HandoffStore) -> None:
    for i in range(3):
        store.create(make(i))
    assert store.list(HandoffFilter(), PageRequest(limit=3)).next_cursor is None


@pytest.mark.parametrize("limit", [0, 201, -1])
def test_page_limit_bounds(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        PageRequest(limit=limit)


@pytest.mark.parametrize("cursor", ["garbage", "", "W10", "WyJ4IiwgMV0"])
def test_malformed_cursor_is_a_value_error(store: HandoffStore, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.list(HandoffFilter(), PageRequest(cursor=cursor))


# -- outbox ----------------------------------------------------------------------------------


def test_outbox_row_is_written_with_the_record(store: HandoffStore) -> None:
    record = make()
    store.create(record, outbox=True)
    [item] = store.outbox_pending(now=T0)
    assert item.handoff_id == record.id and item.kind == "handoff.created"
    assert HandoffRecord.model_validate_json(item.payload) == record
    assert item.attempts == 0 and item.delivered_at is None
    store.create(make(1), outbox=False)
    assert len(store.outbox_pending(now=T0 + timedelta(hours=1))) == 1


def test_a_machine_is_kept_in_the_record_s_transaction(store: HandoffStore) -> None:
    record = make()
    first = MachineRow("carry_transfer", "t-1", '{"state": "requested"}', False)
    assert store.create(record, machine=first) is True
    assert store.machines("carry_transfer", done=False) == [("t-1", '{"state": "requested"}')]
    # A replay writes no second record but still keeps the machine it carries.
    again = MachineRow("carry_transfer", "t-1", '{"state": "ringing"}', False)
    assert store.create(record, machine=again) is False
    assert store.machines("carry_transfer", done=False) == [("t-1", '{"state": "ringing"}')]
    # A refused record keeps no machine.
    other = make(category="dispute.family").model_copy(update={"id": record.id})
    with pytest.raises(DuplicateHandoff):
        store.create(other, machine=MachineRow("carry_transfer", "t-2", "{}", False))
    assert [i for i, _ in store.machines("carry_transfer", done=False)] == ["t-1"]


def test_outbox_and_record_share_one_transaction(
    store: HandoffStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = make()

    def boom(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_outbox", boom)
    with pytest.raises(RuntimeError):
        store.create(record, outbox=True)
    monkeypatch.undo()
    # Neither the record nor its events nor an outbox row survived the failed transaction.
    assert store.get(record.id) is None
    assert store.outbox_pending(now=T0 + timedelta(days=1)) == []
    assert store.create(record) is True


def test_outbox_retry_and_delivery(store: HandoffStore) -> None:
    store.create(make())
    [item] = store.outbox_pending(now=T0)
    store.outbox_mark_failed(item.id, T0 + timedelta(seconds=30))
    assert store.outbox_pending(now=T0 + timedelta(seconds=29)) == []
    [again] = store.outbox_pending(now=T0 + timedelta(seconds=30))
    assert again.attempts == 1 and again.next_attempt_at == T0 + timedelta(seconds=30)
    store.outbox_mark_delivered(item.id, now=T0 + timedelta(seconds=31))
    assert store.outbox_pending(now=T0 + timedelta(days=1)) == []


def test_append_may_queue_the_event_for_the_partner(store: HandoffStore) -> None:
    record = make()
    store.create(record, outbox=False)
    store.append(
        record.id, event(EventKind.RETURNED, actor=PARTNER, at=T0, reason="退回"), outbox=True
    )
    [item] = store.outbox_pending(now=T0)
    assert item.kind == "handoff.event"
    payload = json.loads(item.payload)
    assert payload["handoff_id"] == record.id
    assert payload["event"]["seq"] == 2 and payload["event"]["data"]["reason"] == "退回"


def test_outbox_pending_respects_limit(store: HandoffStore) -> None:
    for i in range(5):
        store.create(make(i))
    assert [i.id for i in store.outbox_pending(2, now=T0 + timedelta(days=1))] == [1, 2]


# -- migrations ------------------------------------------------------------------------------


def test_migrations_are_idempotent(path: Path) -> None:
    record = make()
    store = SqliteHandoffStore(path)
    store.create(record)
    store.close()
    for _ in range(3):
        s = SqliteHandoffStore(path)
        assert s.get(record.id) == record
        s.close()
    with sqlite3.connect(path, isolation_level=None) as db:
        assert schema_versions(db) == [m.version for m in MIGRATIONS]
        assert migrate(db) == []


def test_old_database_is_upgraded(path: Path) -> None:
    s = SqliteHandoffStore(path, migrations=MIGRATIONS[:1])
    s.create(make())
    s.close()
    with sqlite3.connect(path, isolation_level=None) as db:
        assert schema_versions(db) == [1]
        assert migrate(db) == [m.version for m in MIGRATIONS[1:]]
        assert schema_versions(db) == [m.version for m in MIGRATIONS]


def test_newer_database_is_refused(path: Path) -> None:
    SqliteHandoffStore(path).close()
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')")
    with pytest.raises(StoreError, match="99"):
        SqliteHandoffStore(path)


def test_full_synchronous_mode_is_available(tmp_path: Path) -> None:
    s = SqliteHandoffStore(tmp_path / "full.sqlite3", synchronous="FULL")
    try:
        s.create(make())
        assert len(s.list(HandoffFilter(), PageRequest()).items) == 1
    finally:
        s.close()


def test_pg_migrations_are_idempotent_and_upgrade(pg_dsn: str) -> None:
    old = PostgresHandoffStore(pg_dsn, migrations=PG_MIGRATIONS[:1])
    record = make()
    old.create(record)
    old.close()
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        assert pg_schema_versions(db) == [1]
    for _ in range(2):
        s = PostgresHandoffStore(pg_dsn)
        assert s.get(record.id) == record
        s.close()
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        assert pg_schema_versions(db) == [m.version for m in PG_MIGRATIONS]
        assert pg_migrate(db) == []


def test_pg_newer_database_is_refused(pg_dsn: str) -> None:
    PostgresHandoffStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2030-01-01')")
    with pytest.raises(StoreError, match="99"):
        PostgresHandoffStore(pg_dsn)


def test_pg_unreachable_server_is_a_store_error(pg_server: PgServer) -> None:
    dsn = pg_server.dsn("postgres").replace(str(pg_server.port), "1")
    with pytest.raises(StoreError, match="unreachable"):
        PostgresHandoffStore(dsn)
