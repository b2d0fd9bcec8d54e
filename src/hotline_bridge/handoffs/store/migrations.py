"""The SQLite schema, one numbered migration at a time; ``migrate`` applies what a file lacks."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hotline_bridge.handoffs.store.base import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "handoffs, events, outbox",
        (
            """CREATE TABLE handoffs (
                id TEXT PRIMARY KEY,
                created_at TEXT NOT NULL,
                kind TEXT NOT NULL,
                direction TEXT NOT NULL,
                matter_class TEXT,
                jurisdiction TEXT NOT NULL,
                status TEXT NOT NULL,
                last_seq INTEGER NOT NULL,
                updated_at TEXT NOT NULL,
                snapshot TEXT NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX handoffs_by_time ON handoffs (created_at DESC, id DESC)",
            "CREATE INDEX handoffs_by_status ON handoffs (status, created_at DESC)",
            "CREATE INDEX handoffs_by_class ON handoffs (matter_class, created_at DESC)",
            """CREATE TABLE handoff_events (
                handoff_id TEXT NOT NULL REFERENCES handoffs (id),
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (handoff_id, seq)
            ) WITHOUT ROWID""",
            """CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                handoff_id TEXT NOT NULL REFERENCES handoffs (id),
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                delivered_at TEXT
            )""",
            "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL",
        ),
    ),
    Migration(
        2,
        "append-only guards",
        (
            """CREATE TRIGGER handoff_events_no_update BEFORE UPDATE ON handoff_events
               BEGIN SELECT RAISE(ABORT, 'handoff events are append-only'); END""",
            """CREATE TRIGGER handoff_events_no_delete BEFORE DELETE ON handoff_events
               BEGIN SELECT RAISE(ABORT, 'handoff events are append-only'); END""",
            """CREATE TRIGGER handoffs_snapshot_frozen
               BEFORE UPDATE OF id, created_at, kind, direction, matter_class, jurisdiction,
                                snapshot ON handoffs
               BEGIN SELECT RAISE(ABORT, 'a handoff snapshot is frozen'); END""",
            """CREATE TRIGGER handoffs_no_delete BEFORE DELETE ON handoffs
               BEGIN SELECT RAISE(ABORT, 'handoff records are kept'); END""",
        ),
    ),
    Migration(
        3,
        "call log, records by citizen number",
        (
            """CREATE TABLE calls (
                call_id TEXT PRIMARY KEY,
                arrived_at TEXT NOT NULL,
                kind TEXT NOT NULL,
                jurisdiction TEXT NOT NULL,
                caller TEXT,
                dialled TEXT,
                endpoint TEXT,
                nuisance INTEGER NOT NULL DEFAULT 0,
                handoff_id TEXT,
                urgency TEXT
            ) WITHOUT ROWID""",
            "CREATE INDEX calls_by_time ON calls (arrived_at)",
            # The nuisance rule asks "how many records of these categories has this number had
            # lately": an expression index answers it without a second copy of the number.
            # A query uses it only if it spells the expression exactly so (_CITIZEN_NUMBER).
            "CREATE INDEX handoffs_by_citizen ON handoffs "
            "(json_extract(snapshot, '$.citizen.number'), created_at)",
        ),
    ),
    Migration(
        4,
        "partner nonces seen, kept until their request's time window closes",
        (
            """CREATE TABLE partner_nonces (
                nonce TEXT PRIMARY KEY,
                expires_at REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX partner_nonces_by_expiry ON partner_nonces (expires_at)",
        ),
    ),
    Migration(
        5,
        "confidential-read access log, one row per reader, record, view and minute",
        (
            """CREATE TABLE access_log (
                handoff_id TEXT NOT NULL,
                principal TEXT NOT NULL,
                role TEXT NOT NULL,
                view TEXT NOT NULL,
                full_view INTEGER NOT NULL,
                minute TEXT NOT NULL,
                first_at TEXT NOT NULL,
                last_at TEXT NOT NULL,
                reads INTEGER NOT NULL,
                PRIMARY KEY (handoff_id, principal, view, full_view, minute)
            ) WITHOUT ROWID""",
            # Append-only but for the count and last time of the current minute's row.
            "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
            "BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END",
        ),
    ),
    Migration(
        6,
        "machines in flight (transfers, three-way calls, duty reminders) kept across restarts",
        (
            """CREATE TABLE inflight (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                state TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        7,
        "state machines kept live and finished (finished ones answer GET after a restart)",
        (
            # One row per machine: its whole state as JSON, replaced on every move. A restart
            # takes the live ones back and reconciles them with the PBX, and answers GET for the
            # recently finished ones; finished rows are pruned after an hour.
            """CREATE TABLE machines (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                state TEXT NOT NULL,
                done INTEGER NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            ) WITHOUT ROWID""",
            "CREATE INDEX machines_by_kind_done ON machines (kind, done, updated_at)",
            # Migration 6 kept only the live ones.
            "INSERT INTO machines (kind, id, state, done, updated_at) "
            "SELECT kind, id, state, 0, updated_at FROM inflight",
            "DROP TABLE inflight",
        ),
    ),
    Migration(
        8,
        "outbox claims, so that two drainers never push the same row at once",
        (
            # A drainer claims due rows until this time; a drainer that dies leaves its claim to
            # lapse, and the rows are due again (at least once, never twice while it lives).
            "ALTER TABLE outbox ADD COLUMN claimed_until TEXT",
        ),
    ),
)
_CITIZEN_NUMBER = "json_extract(snapshot, '$.citizen.number')"


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations this database lacks, each in its own transaction. Idempotent.

    Returns the versions applied. Refuses a database written by a newer version of the bridge.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    known = max((m.version for m in migrations), default=0)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(done, default=0)
            if newest > known:
                raise StoreError(
                    f"the store is at schema version {newest}; this bridge knows up to {known}"
                )
            if migration.version in done:
                conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (
                    migration.version,
                    migration.name,
                    datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                ),
            )
            conn.execute("COMMIT")
            applied.append(migration.version)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied


def schema_versions(conn: sqlite3.Connection) -> list[int]:
    return [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
