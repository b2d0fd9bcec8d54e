"""The SQLite implementation of the ``HandoffStore`` interface (``store.base``), the default.

The API is synchronous on purpose: it is called inline on the event loop, and each call is one
short transaction (tens of microseconds on a local disk), which is cheaper and simpler than a
thread hop. The PostgreSQL implementation (``postgres``) satisfies the same Protocol and is picked
at start-up by ``[store] dsn`` (``opening.open_store``); callers never see SQL.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A commit appends the
transaction to the WAL with ``write()`` before ``create``/``append`` return, so the data is in the
kernel's page cache and survives the *process* dying at any instant (``kill -9``, a crash, an
OOM kill); only losing the *machine* (power, kernel panic) before the next WAL checkpoint's fsync
can lose the latest commits. Pass ``synchronous="FULL"`` to fsync every commit when the disk
and the deployment call for that.

Append-only is enforced by the database itself (triggers), not just by this module's API: an
event row can never be updated or deleted, and a snapshot never rewritten.

Outbox: ``create(..., outbox=True)`` writes an outbox row in the same transaction as the record,
so a later partner link that drains the outbox can never miss a committed handoff, nor send one
that was rolled back.

Call log (migration 3): ``open_call`` writes one row per call that reached the dialplan's AGI
hooks (``hotline_bridge.agi``): when it arrived, from which number and trunk, its jurisdiction
and nuisance flag, and for a call handed over by the partner the handoff id and urgency. It is
keyed by the Asterisk Uniqueid of the citizen's channel, the same id a handoff record keeps in
``refs.call_id``, so a call's timeline is its call row plus the records that point at it.
``count_citizen_records`` counts a number's records by category through an expression index on
the snapshot's citizen number (no second copy of the number is kept for it).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import structlog

from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.model import (
    EventKind,
    HandoffEvent,
    HandoffRecord,
    HandoffSnapshot,
    Status,
)
from hotline_bridge.handoffs.status import (
    next_status,
)
from hotline_bridge.handoffs.store.base import (
    OUTBOX_LEASE_S,
    AccessEntry,
    AccessRow,
    CallEntry,
    DuplicateHandoff,
    Group,
    HandoffFilter,
    MachineRow,
    OutboxItem,
    Page,
    PageRequest,
    StoreBusy,
    StoreError,
    UnknownHandoff,
)
from hotline_bridge.handoffs.store.migrations import _CITIZEN_NUMBER, MIGRATIONS, Migration, migrate

log = structlog.get_logger(__name__)

_INSERT_EVENT = (
    "INSERT INTO handoff_events (handoff_id, seq, at, kind, body) VALUES (?, ?, ?, ?, ?)"
)


# The longest a call may wait for another connection's write lock. The store is called on the
# event loop: SQLite's usual 5 s would freeze every hotkey meanwhile. Writers are the loop and
# short worker-thread scans (units, reports), each a transaction of microseconds to a few
# milliseconds, so 250 ms is ample; past it the call fails with a StoreError (an answer, not a
# frozen service) and the caller's own rules apply (a scan retries, a hotkey is refused, 503).
BUSY_TIMEOUT_MS = 250


class SqliteHandoffStore:
    """The default store: one SQLite file (created with its directory if missing)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        if str(path) != ":memory:":
            private_file(path)
        # isolation_level=None: no implicit transactions; every write below says BEGIN itself.
        self._db = sqlite3.connect(path, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            migrate(self._db, migrations)
        except BaseException:
            self._db.close()
            raise

    def reopen(self) -> SqliteHandoffStore:
        if str(self.path) == ":memory:":
            raise StoreError("an in-memory store cannot be opened twice")
        return SqliteHandoffStore(self.path)

    def close(self) -> None:
        self._db.close()

    def leave_checkpoints(self) -> None:
        """This connection stops checkpointing the WAL itself (a :class:`Checkpointer` does it
        on its own thread): a checkpoint fsyncs the database file, which on a busy disk held
        the event loop for as long as the disk took."""
        self._db.execute("PRAGMA wal_autocheckpoint=0")

    def create(
        self, record: HandoffRecord, *, outbox: bool = True, machine: MachineRow | None = None
    ) -> bool:
        snap = record.snapshot
        snapshot_json = snap.model_dump_json()
        last = record.events[-1]
        state = Status.CREATED
        for ev in record.events:
            state = next_status(state, ev.kind, ev.data)
        with _Tx(self._db):
            row = self._db.execute(
                "SELECT snapshot FROM handoffs WHERE id = ?", (record.id,)
            ).fetchone()
            if row is not None:
                if HandoffSnapshot.model_validate_json(row[0]) == snap:
                    if machine is not None:
                        self._keep(machine)
                    return False
                raise DuplicateHandoff(f"handoff {record.id} exists with a different snapshot")
            self._db.execute(
                "INSERT INTO handoffs (id, created_at, kind, direction, matter_class, "
                "jurisdiction, status, last_seq, updated_at, snapshot) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    _ts(snap.created_at),
                    snap.kind.value,
                    snap.direction.value,
                    snap.matter.matter_class.value if snap.matter.matter_class else None,
                    snap.matter.jurisdiction.value,
                    state.value,
                    last.seq,
                    _ts(last.at),
                    snapshot_json,
                ),
            )
            self._db.executemany(
                _INSERT_EVENT,
                [
                    (record.id, e.seq, _ts(e.at), e.kind.value, e.model_dump_json())
                    for e in record.events
                ],
            )
            if outbox:
                self._outbox(
                    record.id, "handoff.created", record.model_dump_json(), snap.created_at
                )
            if machine is not None:
                self._keep(machine)
        return True

    def get(self, handoff_id: str) -> HandoffRecord | None:
        row = self._db.execute(
            "SELECT snapshot FROM handoffs WHERE id = ?", (handoff_id,)
        ).fetchone()
        if row is None:
            return None
        bodies = self._db.execute(
            "SELECT body FROM handoff_events WHERE handoff_id = ? ORDER BY seq", (handoff_id,)
        ).fetchall()
        return _record(handoff_id, row[0], [b for (b,) in bodies])

    def append(self, handoff_id: str, event: HandoffEvent, *, outbox: bool = False) -> HandoffEvent:
        if event.kind is EventKind.CREATED:
            raise StoreError("a 'created' event is written by create() only")
        with _Tx(self._db):
            row = self._db.execute(
                "SELECT status, last_seq FROM handoffs WHERE id = ?", (handoff_id,)
            ).fetchone()
            if row is None:
                raise UnknownHandoff(f"no handoff {handoff_id}")
            status, seq = next_status(Status(row[0]), event.kind, event.data), row[1] + 1
            numbered = event.model_copy(update={"seq": seq})
            body = numbered.model_dump_json()
            self._db.execute(
                _INSERT_EVENT,
                (handoff_id, seq, _ts(event.at), event.kind.value, body),
            )
            self._db.execute(
                "UPDATE handoffs SET status = ?, last_seq = ?, updated_at = ? WHERE id = ?",
                (status.value, seq, _ts(event.at), handoff_id),
            )
            if outbox:
                payload = json.dumps(
                    {"handoff_id": handoff_id, "event": json.loads(body)}, ensure_ascii=False
                )
                self._outbox(handoff_id, "handoff.event", payload, event.at)
        return numbered

    def list(self, filters: HandoffFilter, page: PageRequest) -> Page:
        where: list[str] = []
        args: list[str | int] = []
        for column, value in (
            ("matter_class", filters.matter_class),
            ("direction", filters.direction),
            ("status", filters.status),
            ("jurisdiction", filters.jurisdiction),
            ("kind", filters.kind),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value.value)
        if filters.since is not None:
            where.append("created_at >= ?")
            args.append(_ts(filters.since))
        if filters.until is not None:
            where.append("created_at < ?")
            args.append(_ts(filters.until))
        if page.cursor is not None:
            where.append("(created_at, id) < (?, ?)")
            args.extend(_decode_cursor(page.cursor))
        sql = "SELECT id, created_at, snapshot FROM handoffs"
        if where:
            sql += " WHERE " + " AND ".join(where)  # only fixed column names are interpolated
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, page.limit + 1)).fetchall()
        more = len(rows) > page.limit
        rows = rows[: page.limit]
        events: dict[str, list[str]] = {r[0]: [] for r in rows}
        if rows:
            marks = ",".join("?" * len(rows))
            for handoff_id, body in self._db.execute(
                f"SELECT handoff_id, body FROM handoff_events WHERE handoff_id IN ({marks}) "  # noqa: S608
                "ORDER BY handoff_id, seq",
                list(events),
            ):
                events[handoff_id].append(body)
        items = tuple(_record(r[0], r[2], events[r[0]]) for r in rows)
        cursor = _encode_cursor(rows[-1][1], rows[-1][0]) if more and rows else None
        return Page(items, cursor)

    # -- outbox ----------------------------------------------------------------------------

    def _outbox(self, handoff_id: str, kind: str, payload: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO outbox (handoff_id, kind, payload, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (handoff_id, kind, payload, _ts(at), _ts(at)),
        )

    def outbox_pending(
        self, limit: int = 100, *, now: datetime | None = None
    ) -> builtins.list[OutboxItem]:
        rows = self._db.execute(
            "SELECT id, handoff_id, kind, payload, created_at, attempts, next_attempt_at, "
            "delivered_at FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? "
            "ORDER BY id LIMIT ?",
            (_ts(now or datetime.now(UTC)), limit),
        ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], _dt(r[4]), r[5], _dt(r[6]), None) for r in rows]

    def outbox_claim(
        self, limit: int = 100, *, now: datetime | None = None, lease_s: float = OUTBOX_LEASE_S
    ) -> builtins.list[OutboxItem]:
        at = now or datetime.now(UTC)
        with _Tx(self._db):  # BEGIN IMMEDIATE: one claimer at a time per file
            # A handoff's rows are claimed together, when its head (oldest undelivered row) is
            # due and unclaimed, so its pushes stay in order whoever drains (as on PostgreSQL).
            rows = self._db.execute(
                "WITH heads AS (SELECT MIN(id) AS id FROM outbox WHERE delivered_at IS NULL "
                "GROUP BY handoff_id), "
                "won AS (SELECT o.handoff_id FROM outbox o JOIN heads h ON h.id = o.id "
                "WHERE o.next_attempt_at <= ?1 "
                "AND (o.claimed_until IS NULL OR o.claimed_until <= ?1) ORDER BY o.id LIMIT ?2) "
                "SELECT id, handoff_id, kind, payload, created_at, attempts, next_attempt_at "
                "FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?1 "
                "AND handoff_id IN (SELECT handoff_id FROM won) ORDER BY id",
                (_ts(at), limit),
            ).fetchall()
            self._db.executemany(
                "UPDATE outbox SET claimed_until = ? WHERE id = ?",
                [(_ts(at + timedelta(seconds=lease_s)), r[0]) for r in rows],
            )
        return [OutboxItem(r[0], r[1], r[2], r[3], _dt(r[4]), r[5], _dt(r[6]), None) for r in rows]

    def outbox_mark_delivered(self, item_id: int, *, now: datetime | None = None) -> None:
        self._db.execute(
            "UPDATE outbox SET delivered_at = ?, claimed_until = NULL "
            "WHERE id = ? AND delivered_at IS NULL",
            (_ts(now or datetime.now(UTC)), item_id),
        )

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        count, oldest = self._db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL"
        ).fetchone()
        return int(count), _dt(oldest) if oldest is not None else None

    def outbox_mark_failed(self, item_id: int, next_attempt_at: datetime) -> None:
        with _Tx(self._db):
            self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ? AND delivered_at IS NULL",
                (_ts(next_attempt_at), item_id),
            )
            # The drainer pushes nothing more of this handoff this round: release it all.
            self._db.execute(
                "UPDATE outbox SET claimed_until = NULL WHERE delivered_at IS NULL "
                "AND handoff_id = (SELECT handoff_id FROM outbox WHERE id = ?)",
                (item_id,),
            )

    # -- citizens and the call log ---------------------------------------------------------

    def count_citizen_records(
        self, number: str, *, categories: Collection[str], since: datetime
    ) -> int:
        wanted = sorted(set(categories))
        if not number or not wanted:
            return 0
        marks = ",".join("?" * len(wanted))
        (count,) = self._db.execute(
            f"SELECT COUNT(*) FROM handoffs WHERE {_CITIZEN_NUMBER} = ? AND created_at >= ? "  # noqa: S608
            f"AND json_extract(snapshot, '$.matter.category') IN ({marks})",
            (number, _ts(since), *wanted),
        ).fetchone()
        return int(count)

    def open_call(self, entry: CallEntry) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO calls (call_id, arrived_at, kind, jurisdiction, caller, "
            "dialled, endpoint, nuisance, handoff_id, urgency) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.call_id,
                _ts(entry.arrived_at),
                entry.kind,
                entry.jurisdiction.value,
                entry.caller,
                entry.dialled,
                entry.endpoint,
                int(entry.nuisance),
                entry.handoff_id,
                entry.urgency,
            ),
        )
        return cursor.rowcount == 1

    def remember_nonce(self, nonce: str, expires_at: float, now: float) -> bool:
        with _Tx(self._db):
            self._db.execute("DELETE FROM partner_nonces WHERE expires_at < ?", (now,))
            cur = self._db.execute(
                "INSERT OR IGNORE INTO partner_nonces (nonce, expires_at) VALUES (?, ?)",
                (nonce, expires_at),
            )
        return bool(cur.rowcount == 1)

    def log_access(self, entry: AccessEntry) -> None:
        at = _ts(entry.at)
        with _Tx(self._db):
            self._db.execute(
                "INSERT INTO access_log (handoff_id, principal, role, view, full_view, minute, "
                "first_at, last_at, reads) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) "
                "ON CONFLICT (handoff_id, principal, view, full_view, minute) "
                "DO UPDATE SET reads = reads + 1, last_at = excluded.last_at",
                (entry.handoff_id, entry.principal, entry.role, entry.view, int(entry.full),
                 at[:16], at, at),
            )  # fmt: skip

    def access_log(self, handoff_id: str) -> builtins.list[AccessRow]:
        rows = self._db.execute(
            "SELECT principal, role, view, full_view, first_at, last_at, reads FROM access_log "
            "WHERE handoff_id = ? ORDER BY first_at, principal",
            (handoff_id,),
        ).fetchall()
        return [
            AccessRow(r[0], r[1], r[2], bool(r[3]), _dt(r[4]), _dt(r[5]), int(r[6])) for r in rows
        ]

    @contextmanager
    def batch(self) -> Iterator[Group]:
        # One commit (one set of WAL frames) for many small writes: the recorder's deferred
        # notes and machine states of one event-loop turn. Each write inside is a savepoint
        # (in process, cheap): one that fails is undone alone and the group never fails.
        if self._db.in_transaction:
            yield Group()
            return
        with _Tx(self._db):
            yield Group()

    def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None:
        with _Tx(self._db):
            self._keep(MachineRow(kind, item_id, state, done))

    def _keep(self, machine: MachineRow) -> None:
        """Upsert a machine's state, inside the caller's transaction."""
        self._db.execute(
            "INSERT INTO machines (kind, id, state, done, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, "
            "done = excluded.done, updated_at = excluded.updated_at",
            (machine.kind, machine.id, machine.state, int(machine.done), _ts(datetime.now(UTC))),
        )

    def machines(
        self, kind: str, *, done: bool, limit: int | None = None
    ) -> builtins.list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT id, state FROM machines WHERE kind = ? AND done = ? "
            "ORDER BY updated_at DESC, id DESC LIMIT ?",
            (kind, int(done), -1 if limit is None else limit),
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in reversed(rows)]

    def prune_machines(self, kind: str, finished_before: datetime) -> int:
        with _Tx(self._db):
            cur = self._db.execute(
                "DELETE FROM machines WHERE kind = ? AND done = 1 AND updated_at < ?",
                (kind, _ts(finished_before)),
            )
        return int(cur.rowcount)

    def get_call(self, call_id: str) -> CallEntry | None:
        row = self._db.execute(
            "SELECT call_id, arrived_at, kind, jurisdiction, caller, dialled, endpoint, nuisance, "
            "handoff_id, urgency FROM calls WHERE call_id = ?",
            (call_id,),
        ).fetchone()
        if row is None:
            return None
        return CallEntry(
            call_id=row[0],
            arrived_at=_dt(row[1]),
            kind=row[2],
            jurisdiction=Jurisdiction(row[3]),
            caller=row[4],
            dialled=row[5],
            endpoint=row[6],
            nuisance=bool(row[7]),
            handoff_id=row[8],
            urgency=row[9],
        )


def private_file(path: Path) -> None:
    """The store holds citizens' numbers and words: its directory is created 0700, its file
    0600 (SQLite gives the -wal and -shm files the database's own mode), and a store others
    can read is refused rather than used."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise StoreError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
        return
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on any exception); inside a
    :meth:`SqliteHandoffStore.batch`, a savepoint, so one write failing undoes only itself."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._nested = False

    def __enter__(self) -> None:
        if self._db.in_transaction:
            self._nested = True
            self._db.execute("SAVEPOINT write")
            return
        # IMMEDIATE takes the write lock up front, so reading last_seq and inserting seq+1 is
        # atomic even if another process shares the file.
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy("the record store is busy; try again") from None
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._nested:
            if exc_type is not None:
                self._db.execute("ROLLBACK TO write")
            self._db.execute("RELEASE write")
            return
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _record(handoff_id: str, snapshot: str, events: Sequence[str]) -> HandoffRecord:
    return HandoffRecord(
        id=handoff_id,
        snapshot=HandoffSnapshot.model_validate_json(snapshot),
        events=tuple(HandoffEvent.model_validate_json(b) for b in events),
    )


def _ts(value: datetime) -> str:
    # Fixed width, UTC, so text order is time order (the list index relies on it). isoformat
    # with a fixed timespec is strftime's "%Y-%m-%dT%H:%M:%S.%f" at a third of the cost (a few
    # of these per store write).
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dt(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _encode_cursor(created_at: str, handoff_id: str) -> str:
    raw = json.dumps([created_at, handoff_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, handoff_id = json.loads(raw)
        _dt(created_at)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("malformed cursor") from None
    if not isinstance(handoff_id, str):
        raise ValueError("malformed cursor")
    return created_at, handoff_id


class Checkpointer:
    """Checkpoints one SQLite file's WAL every ``every_s`` on its own thread and connection
    (``PRAGMA wal_checkpoint(PASSIVE)``: never waits for a writer or a reader, so the loop's
    commits go on meanwhile), for a store whose connection ``leave_checkpoints()``."""

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self._path = path
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            while not self._stop.wait(self._every_s):
                self._checkpoint(db)
            self._checkpoint(db)  # what the last second wrote, before the store closes
        finally:
            db.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.error("WAL checkpoint failed", error=str(exc))
