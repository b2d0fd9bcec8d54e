"""The PostgreSQL schema, one numbered migration at a time; ``migrate`` applies what a database
lacks. The same tables as the SQLite schema (``migrations``), at its latest version, with the
append-only guards as triggers: an event row is never updated or deleted, a record's snapshot
never rewritten nor the record deleted, an access-log row never deleted.

Times are kept as the same fixed-width UTC text as in SQLite (text order is time order), so the
list cursor and every caller see the same values from either backend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hotline_bridge.handoffs.store.base import StoreError
from hotline_bridge.handoffs.store.migrations import Migration

if TYPE_CHECKING:
    import psycopg

PG_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "handoffs, events, outbox, call log, nonces, access log, machines",
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
            )""",
            "CREATE INDEX handoffs_by_time ON handoffs (created_at DESC, id DESC)",
            "CREATE INDEX handoffs_by_status ON handoffs (status, created_at DESC)",
            "CREATE INDEX handoffs_by_class ON handoffs (matter_class, created_at DESC)",
            # The nuisance rule's count (see the SQLite schema); queries spell it as CITIZEN_NUMBER.
            "CREATE INDEX handoffs_by_citizen ON handoffs "
            "(((snapshot::jsonb) -> 'citizen' ->> 'number'), created_at)",
            """CREATE TABLE handoff_events (
                handoff_id TEXT NOT NULL REFERENCES handoffs (id),
                seq INTEGER NOT NULL,
                at TEXT NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (handoff_id, seq)
            )""",
            """CREATE TABLE outbox (
                id BIGSERIAL PRIMARY KEY,
                handoff_id TEXT NOT NULL REFERENCES handoffs (id),
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                delivered_at TEXT,
                claimed_until TEXT
            )""",
            "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL",
            "CREATE INDEX outbox_by_handoff ON outbox (handoff_id, id) WHERE delivered_at IS NULL",
            """CREATE TABLE calls (
                call_id TEXT PRIMARY KEY,
                arrived_at TEXT NOT NULL,
                kind TEXT NOT NULL,
                jurisdiction TEXT NOT NULL,
                caller TEXT,
                dialled TEXT,
                endpoint TEXT,
                nuisance BOOLEAN NOT NULL DEFAULT FALSE,
                handoff_id TEXT,
                urgency TEXT
            )""",
            "CREATE INDEX calls_by_time ON calls (arrived_at)",
            """CREATE TABLE partner_nonces (
                nonce TEXT PRIMARY KEY,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX partner_nonces_by_expiry ON partner_nonces (expires_at)",
            """CREATE TABLE access_log (
                handoff_id TEXT NOT NULL,
                principal TEXT NOT NULL,
                role TEXT NOT NULL,
                view TEXT NOT NULL,
                full_view BOOLEAN NOT NULL,
                minute TEXT NOT NULL,
                first_at TEXT NOT NULL,
                last_at TEXT NOT NULL,
                reads INTEGER NOT NULL,
                PRIMARY KEY (handoff_id, principal, view, full_view, minute)
            )""",
            """CREATE TABLE machines (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                state TEXT NOT NULL,
                done BOOLEAN NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            )""",
            "CREATE INDEX machines_by_kind_done ON machines (kind, done, updated_at)",
        ),
    ),
    Migration(
        2,
        "append-only guards",
        (
            # One function raising its trigger's argument: the message says which guard refused.
            """CREATE FUNCTION hotline_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION '%', TG_ARGV[0]
                     USING ERRCODE = 'integrity_constraint_violation';
               END $$""",
            "CREATE TRIGGER handoff_events_no_update BEFORE UPDATE OR DELETE ON handoff_events "
            "FOR EACH ROW EXECUTE FUNCTION hotline_refuse('handoff events are append-only')",
            "CREATE TRIGGER handoff_events_no_truncate BEFORE TRUNCATE ON handoff_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION hotline_refuse('handoff events are append-only')",
            "CREATE TRIGGER handoffs_snapshot_frozen BEFORE UPDATE OF id, created_at, kind, "
            "direction, matter_class, jurisdiction, snapshot ON handoffs "
            "FOR EACH ROW EXECUTE FUNCTION hotline_refuse('a handoff snapshot is frozen')",
            "CREATE TRIGGER handoffs_no_delete BEFORE DELETE ON handoffs "
            "FOR EACH ROW EXECUTE FUNCTION hotline_refuse('handoff records are kept')",
            "CREATE TRIGGER handoffs_no_truncate BEFORE TRUNCATE ON handoffs "
            "FOR EACH STATEMENT EXECUTE FUNCTION hotline_refuse('handoff records are kept')",
            "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION hotline_refuse('the access log is append-only')",
            "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION hotline_refuse('the access log is append-only')",
        ),
    ),
)
CITIZEN_NUMBER = "((snapshot::jsonb) -> 'citizen' ->> 'number')"

# Replicas starting together take this advisory lock, so one of them migrates and the others
# then find nothing to do (the number is arbitrary, fixed for this schema).
_MIGRATION_LOCK = 0x4B0_12345


def pg_migrate(
    conn: psycopg.Connection[tuple[object, ...]], migrations: Sequence[Migration] = PG_MIGRATIONS
) -> list[int]:
    """Apply the migrations this database lacks, each in its own transaction. Idempotent.

    Returns the versions applied. Refuses a database written by a newer version of the bridge.
    ``conn`` is in autocommit mode."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    known = max((m.version for m in migrations), default=0)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            newest = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            if newest is not None and newest[0] is not None and int(str(newest[0])) > known:
                raise StoreError(
                    f"database schema version {newest[0]} is newer than this bridge knows "
                    f"({known}); upgrade the bridge"
                )
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done is not None:
                continue
            for statement in migration.statements:
                conn.execute(statement.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (
                    migration.version,
                    migration.name,
                    datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                ),
            )
        applied.append(migration.version)
    return applied


def pg_schema_versions(conn: psycopg.Connection[tuple[object, ...]]) -> list[int]:
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(str(v)) for (v,) in rows]
