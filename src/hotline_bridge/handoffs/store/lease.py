"""Leases: which bridge replica owns a resource (a PBX's AMI link) for now (issue 14 §2).

The decision is pure (``decide``: the lease as it stands, who asks, the time -> the lease after
and whether the asker holds it); ``PostgresLeases`` is the thin edge that reads the row under
``FOR UPDATE``, decides with the database's clock (so replicas' clocks do not matter) and writes
the answer; ``SqliteLeases`` does the same in one ``BEGIN IMMEDIATE`` transaction on the SQLite
store's file (replicas on one host). The lease names where its holder takes requests (``url``):
the standbys forward there. A holder renews well before ``expires_at``; a holder that stops
renewing (killed, cut off) loses the lease when it expires, and the next asker takes it with
``epoch + 1``: the epoch fences a former owner's late writes (a write carries the epoch it was
made under)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hotline_bridge.handoffs.store.sqlite import private_file


@dataclass(frozen=True, slots=True)
class Lease:
    resource: str
    holder: str
    expires_at: datetime
    epoch: int  # +1 each time the lease changes hands
    url: str = ""  # where the holder takes requests (its API base URL)


@dataclass(frozen=True, slots=True)
class Decision:
    lease: Lease  # the lease after the request (unchanged if refused)
    granted: bool  # the asker holds it now
    changed_hands: bool  # the asker took it from another (or first took it)


def decide(
    current: Lease | None,
    *,
    resource: str,
    asker: str,
    now: datetime,
    ttl: timedelta,
    url: str = "",
) -> Decision:
    """Grant (or renew) the lease to ``asker`` if nobody holds it, it is the asker's, or it has
    expired; otherwise refuse and leave it as it is."""
    if ttl <= timedelta(0):
        raise ValueError("a lease lasts a positive time")
    if current is None:
        return Decision(Lease(resource, asker, now + ttl, 1, url), True, True)
    if current.holder == asker and current.expires_at > now:
        return Decision(Lease(resource, asker, now + ttl, current.epoch, url), True, False)
    if current.expires_at <= now:
        return Decision(Lease(resource, asker, now + ttl, current.epoch + 1, url), True, True)
    return Decision(current, False, False)


def owner_url(lease: Lease | None, now: datetime) -> str | None:
    """Where to forward a request: the holder's URL while the lease runs, else nobody."""
    if lease is None or lease.expires_at <= now:
        return None
    return lease.url or None


def release(current: Lease | None, *, asker: str, now: datetime) -> Lease | None:
    """The lease after its holder gives it up (expired at once); another's lease is untouched."""
    if current is None or current.holder != asker:
        return current
    return Lease(
        current.resource, current.holder, min(current.expires_at, now), current.epoch, current.url
    )


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS leases (resource TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires_at TIMESTAMPTZ NOT NULL, epoch BIGINT NOT NULL, url TEXT NOT NULL DEFAULT '')"
)

_SCHEMA_LOCK = 0x1EA5E_12345  # arbitrary, fixed: serialises the table's creation


class PostgresLeases:
    """Leases in a PostgreSQL database (the same one as the store), one connection."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._db: Any = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        # CREATE TABLE IF NOT EXISTS is not safe against itself: replicas starting together
        # on a fresh database collide in the catalog (a unique violation on pg_type). One at a
        # time, under an advisory lock; the others then find the table.
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            self._db.execute(_SCHEMA)

    def acquire(self, resource: str, asker: str, ttl: timedelta, url: str = "") -> Decision:
        with self._db.transaction():
            # Serialise askers on a resource with no row yet, then lock the row itself.
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (resource,))
            now = self._db.execute("SELECT clock_timestamp()").fetchone()[0]
            row = self._db.execute(
                "SELECT holder, expires_at, epoch, url FROM leases WHERE resource = %s FOR UPDATE",
                (resource,),
            ).fetchone()
            current = Lease(resource, row[0], row[1], int(row[2]), row[3]) if row else None
            d = decide(current, resource=resource, asker=asker, now=now, ttl=ttl, url=url)
            if d.granted:
                self._db.execute(
                    "INSERT INTO leases (resource, holder, expires_at, epoch, url) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (resource) DO UPDATE SET "
                    "holder = excluded.holder, expires_at = excluded.expires_at, "
                    "epoch = excluded.epoch, url = excluded.url",
                    (resource, d.lease.holder, d.lease.expires_at, d.lease.epoch, url),
                )
            return d

    def release(self, resource: str, asker: str) -> None:
        with self._db.transaction():
            now = self._db.execute("SELECT clock_timestamp()").fetchone()[0]
            row = self._db.execute(
                "SELECT holder, expires_at, epoch, url FROM leases WHERE resource = %s FOR UPDATE",
                (resource,),
            ).fetchone()
            current = Lease(resource, row[0], row[1], int(row[2]), row[3]) if row else None
            after = release(current, asker=asker, now=now)
            if after is not None and after != current:
                self._db.execute(
                    "UPDATE leases SET expires_at = %s WHERE resource = %s",
                    (after.expires_at, resource),
                )

    def snapshot(self, resources: list[str]) -> tuple[datetime, dict[str, Lease | None]]:
        """The database's time and the named leases as they stand (None: never taken)."""
        now = self._db.execute("SELECT clock_timestamp()").fetchone()[0]
        rows = self._db.execute(
            "SELECT resource, holder, expires_at, epoch, url FROM leases WHERE resource = ANY(%s)",
            (resources,),
        ).fetchall()
        found = {r[0]: Lease(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows}
        return now, {name: found.get(name) for name in resources}

    def close(self) -> None:
        self._db.close()


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS leases (resource TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires_at TEXT NOT NULL, epoch INTEGER NOT NULL, url TEXT NOT NULL DEFAULT '')"
)


class SqliteLeases:
    """Leases in the SQLite store's file: replicas on one host share it. Wall-clock time: on one
    host the replicas read the same clock."""

    def __init__(self, path: Path, timeout_s: float = 1.0) -> None:
        private_file(path)  # the store's file: the lease may be the first to create it
        # Used from one task at a time, from whichever worker thread runs it.
        self._db = sqlite3.connect(
            str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SQLITE_SCHEMA)

    def acquire(self, resource: str, asker: str, ttl: timedelta, url: str = "") -> Decision:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self.get(resource)
            d = decide(current, resource=resource, asker=asker, now=_now(), ttl=ttl, url=url)
            if d.granted:
                self._write(d.lease)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return d

    def release(self, resource: str, asker: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self.get(resource)
            after = release(current, asker=asker, now=_now())
            if after is not None and after != current:
                self._write(after)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def snapshot(self, resources: list[str]) -> tuple[datetime, dict[str, Lease | None]]:
        """The time and the named leases as they stand (None: never taken)."""
        return _now(), {name: self.get(name) for name in resources}

    def get(self, resource: str) -> Lease | None:
        row = self._db.execute(
            "SELECT holder, expires_at, epoch, url FROM leases WHERE resource = ?", (resource,)
        ).fetchone()
        if row is None:
            return None
        return Lease(resource, row[0], datetime.fromisoformat(row[1]), int(row[2]), row[3])

    def _write(self, lease: Lease) -> None:
        self._db.execute(
            "INSERT INTO leases (resource, holder, expires_at, epoch, url) VALUES (?,?,?,?,?)"
            " ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder,"
            " expires_at = excluded.expires_at, epoch = excluded.epoch, url = excluded.url",
            (lease.resource, lease.holder, lease.expires_at.isoformat(), lease.epoch, lease.url),
        )

    def close(self) -> None:
        self._db.close()


def _now() -> datetime:
    return datetime.now(UTC)
