"""The PostgreSQL implementation of the ``HandoffStore`` interface, for several bridge replicas
sharing one store (``[store] dsn``); SQLite stays the default for one box.

psycopg 3, synchronous, one connection per store object: the interface is synchronous and called
inline on the event loop, and each call is one short transaction over loopback or a LAN (a few
hundred microseconds; ``make bench-store`` measures it), so an async driver would change every
caller for no gain. A worker thread opens its own connection with ``reopen()``. Each call that
would wait on another transaction's row lock gives up after ``LOCK_TIMEOUT_MS`` with
``StoreBusy``, as the SQLite store's busy timeout does, and no statement runs longer than
``STATEMENT_TIMEOUT_MS``: the loop is never held long.

Durability: a commit returns once PostgreSQL has flushed its WAL (``synchronous_commit`` as the
server is configured). Append-only is enforced by the database (triggers, ``pg_migrations``).

Outbox: ``outbox_claim`` takes due rows with ``SELECT … FOR UPDATE SKIP LOCKED`` and marks them
claimed for a lease, so several replicas drain one outbox without pushing a row twice.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.model import (
    EventKind,
    HandoffEvent,
    HandoffRecord,
    HandoffSnapshot,
    Status,
)
from hotline_bridge.handoffs.status import next_status
from hotline_bridge.handoffs.store.base import (
    OUTBOX_LEASE_S,
    AccessEntry,
    AccessRow,
    CallEntry,
    DuplicateHandoff,
    Group,
    GroupUndone,
    HandoffFilter,
    MachineRow,
    OutboxItem,
    Page,
    PageRequest,
    StoreBusy,
    StoreError,
    UnknownHandoff,
)
from hotline_bridge.handoffs.store.migrations import Migration
from hotline_bridge.handoffs.store.pg_migrations import CITIZEN_NUMBER, PG_MIGRATIONS, pg_migrate
from hotline_bridge.handoffs.store.sqlite import (
    _decode_cursor,
    _dt,
    _encode_cursor,
    _record,
    _ts,
)

LOCK_TIMEOUT_MS = 250
STATEMENT_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5

_APPEND = (
    "WITH e AS (INSERT INTO handoff_events (handoff_id, seq, at, kind, body) "
    "VALUES (%(id)s, %(seq)s, %(at)s, %(kind)s, %(body)s)), "
    "o AS (INSERT INTO outbox (handoff_id, kind, payload, created_at, next_attempt_at) "
    "SELECT %(id)s, %(o_kind)s, %(o_payload)s, %(o_at)s, %(o_at)s WHERE %(outbox)s) "
    "UPDATE handoffs SET status = %(status)s, last_seq = %(seq)s, updated_at = %(at)s "
    "WHERE id = %(id)s"
)
_CREATE = (
    "WITH h AS (INSERT INTO handoffs (id, created_at, kind, direction, matter_class, "
    "jurisdiction, status, last_seq, updated_at, snapshot) VALUES (%(id)s, %(created_at)s, "
    "%(kind)s, %(direction)s, %(matter_class)s, %(jurisdiction)s, %(status)s, %(last_seq)s, "
    "%(updated_at)s, %(snapshot)s) ON CONFLICT (id) DO NOTHING RETURNING id), "
    "e AS (INSERT INTO handoff_events (handoff_id, seq, at, kind, body) "
    "SELECT h.id, x.seq, x.at, x.kind, x.body FROM h, unnest(%(seqs)s::int[], %(ats)s::text[], "
    "%(kinds)s::text[], %(bodies)s::text[]) AS x (seq, at, kind, body)), "
    "o AS (INSERT INTO outbox (handoff_id, kind, payload, created_at, next_attempt_at) "
    "SELECT h.id, %(o_kind)s, %(o_payload)s, %(o_at)s, %(o_at)s FROM h WHERE %(outbox)s), "
    "m AS (INSERT INTO machines (kind, id, state, done, updated_at) "
    "SELECT %(m_kind)s, %(m_id)s, %(m_state)s, %(m_done)s, %(m_at)s FROM h WHERE %(machine)s "
    "ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, done = excluded.done, "
    "updated_at = excluded.updated_at) "
    "SELECT count(*) FROM h"
)
_KEEP_MACHINE = (
    "INSERT INTO machines (kind, id, state, done, updated_at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, id) DO UPDATE SET "
    "state = excluded.state, done = excluded.done, updated_at = excluded.updated_at"
)
_T = TypeVar("_T")
Row = tuple[Any, ...]


class PostgresHandoffStore:
    """Records in a PostgreSQL database (migrated on open)."""

    def __init__(self, dsn: str, *, migrations: Sequence[Migration] = PG_MIGRATIONS) -> None:
        self._dsn = dsn
        self._migrations = migrations
        self._group: Group | None = None
        self._db = self._connect()
        try:
            with _errors():
                pg_migrate(self._db, migrations)
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> psycopg.Connection[Row]:
        with _errors():
            return psycopg.connect(
                self._dsn,
                autocommit=True,  # every write below opens its own transaction
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="hotline-bridge",
                options=f"-c lock_timeout={LOCK_TIMEOUT_MS} "
                f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )

    def _conn(self) -> psycopg.Connection[Row]:
        # A connection the server or network dropped is replaced on the next call: that call
        # still fails (StoreError), the ones after it work again.
        if self._db.closed:
            self._db = self._connect()
        return self._db

    def reopen(self) -> PostgresHandoffStore:
        return PostgresHandoffStore(self._dsn, migrations=self._migrations)

    def close(self) -> None:
        self._db.close()

    def _run(self, work: Callable[[psycopg.Connection[Row]], _T], *, tx: bool = True) -> _T:
        db = self._conn()
        group = self._group
        if group is not None:
            # Inside a batch: no savepoint per write (SAVEPOINT and RELEASE would make one
            # round trip three). A failed statement aborts the transaction, so the first
            # failure fails the group; batch() then rolls it all back (GroupUndone).
            if group.failed:
                raise GroupUndone("an earlier write of this group failed")
            try:
                with _errors():
                    return work(db)
            except BaseException:
                group.failed = True
                raise
        with _errors():
            if not tx:
                return work(db)
            with db.transaction():
                return work(db)

    @contextmanager
    def batch(self) -> Iterator[Group]:
        # One commit (one WAL flush, the expensive part of a write) for the write-behind
        # thread's queued notes and machine states.
        if self._group is not None:
            yield self._group
            return
        db = self._conn()
        group = Group()
        with _errors():
            self._group = group
            try:
                with db.transaction():
                    yield group
                    if group.failed:
                        raise GroupUndone("a write of this group failed: the group is undone")
            finally:
                self._group = None

    # -- records ---------------------------------------------------------------------------

    def create(
        self, record: HandoffRecord, *, outbox: bool = True, machine: MachineRow | None = None
    ) -> bool:
        snap = record.snapshot
        snapshot_json = snap.model_dump_json()
        last = record.events[-1]
        state = Status.CREATED
        for ev in record.events:
            state = next_status(state, ev.kind, ev.data)

        # One statement (atomic on its own, autocommit): one round trip and one WAL flush for
        # the record, its events, its outbox row and its machine's first state; those are
        # written only if the record was (a replay of the same create keeps only the machine).
        queued = (
            self._outbox(record.id, "handoff.created", record.model_dump_json(), snap.created_at)
            if outbox
            else None
        )
        params: dict[str, object] = {
            "id": record.id,
            "created_at": _ts(snap.created_at),
            "kind": snap.kind.value,
            "direction": snap.direction.value,
            "matter_class": snap.matter.matter_class.value if snap.matter.matter_class else None,
            "jurisdiction": snap.matter.jurisdiction.value,
            "status": state.value,
            "last_seq": last.seq,
            "updated_at": _ts(last.at),
            "snapshot": snapshot_json,
            "seqs": [e.seq for e in record.events],
            "ats": [_ts(e.at) for e in record.events],
            "kinds": [e.kind.value for e in record.events],
            "bodies": [e.model_dump_json() for e in record.events],
            "outbox": queued is not None,
            "o_kind": queued[0] if queued else None,
            "o_payload": queued[1] if queued else None,
            "o_at": queued[2] if queued else None,
            "machine": machine is not None,
            "m_kind": machine.kind if machine else None,
            "m_id": machine.id if machine else None,
            "m_state": machine.state if machine else None,
            "m_done": machine.done if machine else None,
            "m_at": _ts(datetime.now(UTC)) if machine else None,
        }

        def work(db: psycopg.Connection[Row]) -> bool:
            row = db.execute(_CREATE, params).fetchone()
            if row is not None and row[0] == 1:
                return True
            old = db.execute("SELECT snapshot FROM handoffs WHERE id = %s", (record.id,)).fetchone()
            if old is not None and HandoffSnapshot.model_validate_json(old[0]) == snap:
                if machine is not None:
                    db.execute(_KEEP_MACHINE, _machine_params(machine))
                return False
            raise DuplicateHandoff(f"handoff {record.id} exists with a different snapshot")

        return self._run(work, tx=False)

    def get(self, handoff_id: str) -> HandoffRecord | None:
        def work(db: psycopg.Connection[Row]) -> HandoffRecord | None:
            row = db.execute(
                "SELECT snapshot FROM handoffs WHERE id = %s", (handoff_id,)
            ).fetchone()
            if row is None:
                return None
            bodies = db.execute(
                "SELECT body FROM handoff_events WHERE handoff_id = %s ORDER BY seq",
                (handoff_id,),
            ).fetchall()
            return _record(handoff_id, row[0], [b for (b,) in bodies])

        return self._run(work)  # one snapshot for the record and its events

    def append(self, handoff_id: str, event: HandoffEvent, *, outbox: bool = False) -> HandoffEvent:
        if event.kind is EventKind.CREATED:
            raise StoreError("a 'created' event is written by create() only")

        def work(db: psycopg.Connection[Row]) -> HandoffEvent:
            # FOR UPDATE: two replicas appending to one record take turns, so seq never repeats.
            row = db.execute(
                "SELECT status, last_seq FROM handoffs WHERE id = %s FOR UPDATE", (handoff_id,)
            ).fetchone()
            if row is None:
                raise UnknownHandoff(f"no handoff {handoff_id}")
            status, seq = next_status(Status(row[0]), event.kind, event.data), row[1] + 1
            numbered = event.model_copy(update={"seq": seq})
            body = numbered.model_dump_json()
            queued: tuple[str, str, str] | None = None
            if outbox:
                payload = json.dumps(
                    {"handoff_id": handoff_id, "event": json.loads(body)}, ensure_ascii=False
                )
                queued = self._outbox(handoff_id, "handoff.event", payload, event.at)
            # The event, the status move and the outbox row in one statement (one round trip;
            # measured faster than psycopg's pipeline mode for this).
            db.execute(
                _APPEND,
                {
                    "id": handoff_id,
                    "seq": seq,
                    "at": _ts(event.at),
                    "kind": event.kind.value,
                    "body": body,
                    "status": status.value,
                    "outbox": queued is not None,
                    "o_kind": queued[0] if queued else None,
                    "o_payload": queued[1] if queued else None,
                    "o_at": queued[2] if queued else None,
                },
            )
            return numbered

        return self._run(work)

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
                where.append(f"{column} = %s")
                args.append(value.value)
        if filters.since is not None:
            where.append("created_at >= %s")
            args.append(_ts(filters.since))
        if filters.until is not None:
            where.append("created_at < %s")
            args.append(_ts(filters.until))
        if page.cursor is not None:
            where.append("(created_at, id) < (%s, %s)")
            args.extend(_decode_cursor(page.cursor))
        sql = "SELECT id, created_at, snapshot FROM handoffs"
        if where:
            sql += " WHERE " + " AND ".join(where)  # only fixed column names are interpolated
        sql += " ORDER BY created_at DESC, id DESC LIMIT %s"

        def work(db: psycopg.Connection[Row]) -> Page:
            rows = db.execute(sql.encode(), (*args, page.limit + 1)).fetchall()
            more = len(rows) > page.limit
            rows = rows[: page.limit]
            events: dict[str, builtins.list[str]] = {r[0]: [] for r in rows}
            if rows:
                for handoff_id, body in db.execute(
                    "SELECT handoff_id, body FROM handoff_events WHERE handoff_id = ANY(%s) "
                    "ORDER BY handoff_id, seq",
                    (builtins.list(events),),
                ):
                    events[handoff_id].append(body)
            items = tuple(_record(r[0], r[2], events[r[0]]) for r in rows)
            cursor = _encode_cursor(rows[-1][1], rows[-1][0]) if more and rows else None
            return Page(items, cursor)

        return self._run(work)

    # -- outbox ----------------------------------------------------------------------------

    def _outbox(
        self, handoff_id: str, kind: str, payload: str, at: datetime
    ) -> tuple[str, str, str]:
        """The outbox row a write queues for the partner (written in that write's transaction)."""
        del handoff_id  # the row's handoff is the record's own
        return kind, payload, _ts(at)

    def outbox_pending(
        self, limit: int = 100, *, now: datetime | None = None
    ) -> builtins.list[OutboxItem]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT id, handoff_id, kind, payload, created_at, attempts, next_attempt_at "
                "FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= %s "
                "ORDER BY id LIMIT %s",
                (_ts(now or datetime.now(UTC)), limit),
            ).fetchall(),
            tx=False,
        )
        return [_item(r) for r in rows]

    def outbox_claim(
        self, limit: int = 100, *, now: datetime | None = None, lease_s: float = OUTBOX_LEASE_S
    ) -> builtins.list[OutboxItem]:
        at = _ts(now or datetime.now(UTC))
        until = _ts((now or datetime.now(UTC)) + timedelta(seconds=lease_s))
        # A handoff's rows are claimed together, by whoever locks its head (its oldest
        # undelivered row): so one handoff's pushes stay in order whichever replica makes them.
        # SKIP LOCKED passes over heads another drainer is claiming right now; the claim
        # conditions are on the locked row itself, so they are checked again on its newest
        # version if that drainer committed meanwhile (a head it just claimed is not taken).
        rows = self._run(
            lambda db: db.execute(
                "WITH heads AS (SELECT DISTINCT ON (handoff_id) id FROM outbox "
                "WHERE delivered_at IS NULL ORDER BY handoff_id, id), "
                "won AS (SELECT o.handoff_id FROM outbox o JOIN heads h ON h.id = o.id "
                "WHERE o.delivered_at IS NULL AND o.next_attempt_at <= %(at)s "
                "AND (o.claimed_until IS NULL OR o.claimed_until <= %(at)s) "
                "ORDER BY o.id LIMIT %(limit)s FOR UPDATE OF o SKIP LOCKED) "
                "UPDATE outbox SET claimed_until = %(until)s FROM won "
                "WHERE outbox.handoff_id = won.handoff_id AND outbox.delivered_at IS NULL "
                "AND outbox.next_attempt_at <= %(at)s "
                "RETURNING outbox.id, outbox.handoff_id, kind, payload, created_at, attempts, "
                "next_attempt_at",
                {"at": at, "until": until, "limit": limit},
            ).fetchall()
        )
        return sorted((_item(r) for r in rows), key=lambda i: i.id)

    def outbox_mark_delivered(self, item_id: int, *, now: datetime | None = None) -> None:
        self._run(
            lambda db: db.execute(
                "UPDATE outbox SET delivered_at = %s, claimed_until = NULL "
                "WHERE id = %s AND delivered_at IS NULL",
                (_ts(now or datetime.now(UTC)), item_id),
            ),
            tx=False,
        )

    def outbox_mark_failed(self, item_id: int, next_attempt_at: datetime) -> None:
        self._run(
            lambda db: db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = %s "
                "WHERE id = %s AND delivered_at IS NULL",
                (_ts(next_attempt_at), item_id),
            ).execute(
                # The drainer pushes nothing more of this handoff this round: release it all.
                "UPDATE outbox SET claimed_until = NULL WHERE delivered_at IS NULL "
                "AND handoff_id = (SELECT handoff_id FROM outbox WHERE id = %s)",
                (item_id,),
            )
        )

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        row = self._run(
            lambda db: db.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone(),
            tx=False,
        )
        assert row is not None
        return int(row[0]), _dt(row[1]) if row[1] is not None else None

    # -- citizens and the call log ---------------------------------------------------------

    def count_citizen_records(
        self, number: str, *, categories: Collection[str], since: datetime
    ) -> int:
        wanted = sorted(set(categories))
        if not number or not wanted:
            return 0
        row = self._run(
            lambda db: db.execute(
                f"SELECT COUNT(*) FROM handoffs WHERE {CITIZEN_NUMBER} = %s "  # noqa: S608
                "AND created_at >= %s "
                "AND ((snapshot::jsonb) -> 'matter' ->> 'category') = ANY(%s)",
                (number, _ts(since), wanted),
            ).fetchone(),
            tx=False,
        )
        assert row is not None
        return int(row[0])

    def open_call(self, entry: CallEntry) -> bool:
        cur = self._run(
            lambda db: db.execute(
                "INSERT INTO calls (call_id, arrived_at, kind, jurisdiction, caller, "
                "dialled, endpoint, nuisance, handoff_id, urgency) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    entry.call_id,
                    _ts(entry.arrived_at),
                    entry.kind,
                    entry.jurisdiction.value,
                    entry.caller,
                    entry.dialled,
                    entry.endpoint,
                    entry.nuisance,
                    entry.handoff_id,
                    entry.urgency,
                ),
            ),
            tx=False,
        )
        return cur.rowcount == 1

    def get_call(self, call_id: str) -> CallEntry | None:
        row = self._run(
            lambda db: db.execute(
                "SELECT call_id, arrived_at, kind, jurisdiction, caller, dialled, endpoint, "
                "nuisance, handoff_id, urgency FROM calls WHERE call_id = %s",
                (call_id,),
            ).fetchone(),
            tx=False,
        )
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

    def remember_nonce(self, nonce: str, expires_at: float, now: float) -> bool:
        def work(db: psycopg.Connection[Row]) -> bool:
            db.execute("DELETE FROM partner_nonces WHERE expires_at < %s", (now,))
            cur = db.execute(
                "INSERT INTO partner_nonces (nonce, expires_at) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (nonce, expires_at),
            )
            return cur.rowcount == 1

        return self._run(work)

    def log_access(self, entry: AccessEntry) -> None:
        at = _ts(entry.at)
        self._run(
            lambda db: db.execute(
                "INSERT INTO access_log (handoff_id, principal, role, view, full_view, minute, "
                "first_at, last_at, reads) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1) "
                "ON CONFLICT (handoff_id, principal, view, full_view, minute) "
                "DO UPDATE SET reads = access_log.reads + 1, last_at = excluded.last_at",
                (entry.handoff_id, entry.principal, entry.role, entry.view, entry.full,
                 at[:16], at, at),
            ),
            tx=False,
        )  # fmt: skip

    def access_log(self, handoff_id: str) -> builtins.list[AccessRow]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT principal, role, view, full_view, first_at, last_at, reads "
                "FROM access_log WHERE handoff_id = %s ORDER BY first_at, principal",
                (handoff_id,),
            ).fetchall(),
            tx=False,
        )
        return [
            AccessRow(r[0], r[1], r[2], bool(r[3]), _dt(r[4]), _dt(r[5]), int(r[6])) for r in rows
        ]

    # -- machines in flight ----------------------------------------------------------------

    def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None:
        params = _machine_params(MachineRow(kind, item_id, state, done))
        self._run(lambda db: db.execute(_KEEP_MACHINE, params), tx=False)

    def machines(
        self, kind: str, *, done: bool, limit: int | None = None
    ) -> builtins.list[tuple[str, str]]:
        rows = self._run(
            lambda db: db.execute(
                "SELECT id, state FROM machines WHERE kind = %s AND done = %s "
                "ORDER BY updated_at DESC, id DESC LIMIT %s",
                (kind, done, limit),  # LIMIT NULL is no limit
            ).fetchall(),
            tx=False,
        )
        return [(str(r[0]), str(r[1])) for r in reversed(rows)]

    def prune_machines(self, kind: str, finished_before: datetime) -> int:
        cur = self._run(
            lambda db: db.execute(
                "DELETE FROM machines WHERE kind = %s AND done AND updated_at < %s",
                (kind, _ts(finished_before)),
            ),
            tx=False,
        )
        return int(cur.rowcount)


def _item(r: Row) -> OutboxItem:
    return OutboxItem(r[0], r[1], r[2], r[3], _dt(r[4]), r[5], _dt(r[6]), None)


@contextmanager
def _errors() -> Iterator[None]:
    """psycopg's errors as the store's own: a lock or statement timeout is ``StoreBusy`` (503,
    retry later, as SQLite's busy timeout), anything else from the database a ``StoreError``.
    The store's own errors (DuplicateHandoff, UnknownHandoff) pass through unchanged."""
    try:
        yield
    except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled):
        raise StoreBusy("the record store is busy; try again") from None
    except psycopg.OperationalError as exc:
        raise StoreError(f"the record store is unreachable: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise StoreError(f"the record store refused: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _machine_params(machine: MachineRow) -> tuple[str, str, str, bool, str]:
    return (machine.kind, machine.id, machine.state, machine.done, _ts(datetime.now(UTC)))
