"""Leases: which bridge replica owns a resource (a PBX's AMI link) for now, for issue 14 §2.

The decision is pure (``decide``: the lease as it stands, who asks, the time -> the lease after
and whether the asker holds it); ``PostgresLeases`` is the thin edge that reads the row under
``FOR UPDATE``, decides with the database's clock (so replicas' clocks do not matter) and writes
the answer. A holder renews well before ``expires_at``; a holder that stops renewing (killed,
cut off) loses the lease when it expires, and the next asker takes it with ``epoch + 1``: the
epoch fences a former owner's late writes (a write carries the epoch it was made under)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class Lease:
    resource: str
    holder: str
    expires_at: datetime
    epoch: int  # +1 each time the lease changes hands


@dataclass(frozen=True, slots=True)
class Decision:
    lease: Lease  # the lease after the request (unchanged if refused)
    granted: bool  # the asker holds it now
    changed_hands: bool  # the asker took it from another (or first took it)


def decide(
    current: Lease | None, *, resource: str, asker: str, now: datetime, ttl: timedelta
) -> Decision:
    """Grant (or renew) the lease to ``asker`` if nobody holds it, it is the asker's, or it has
    expired; otherwise refuse and leave it as it is."""
    if ttl <= timedelta(0):
        raise ValueError("a lease lasts a positive time")
    if current is None:
        return Decision(Lease(resource, asker, now + ttl, 1), True, True)
    if current.holder == asker and current.expires_at > now:
        return Decision(Lease(resource, asker, now + ttl, current.epoch), True, False)
    if current.expires_at <= now:
        return Decision(Lease(resource, asker, now + ttl, current.epoch + 1), True, True)
    return Decision(current, False, False)


def release(current: Lease | None, *, asker: str, now: datetime) -> Lease | None:
    """The lease after its holder gives it up (expired at once); another's lease is untouched."""
    if current is None or current.holder != asker:
        return current
    return Lease(current.resource, current.holder, min(current.expires_at, now), current.epoch)


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS leases (resource TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires_at TIMESTAMPTZ NOT NULL, epoch BIGINT NOT NULL)"
)


class PostgresLeases:
    """Leases in a PostgreSQL database (the same one as the store), one connection."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._db: Any = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        self._db.execute(_SCHEMA)

    def acquire(self, resource: str, asker: str, ttl: timedelta) -> Decision:
        with self._db.transaction():
            # Serialise askers on a resource with no row yet, then lock the row itself.
            self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (resource,))
            now = self._db.execute("SELECT clock_timestamp()").fetchone()[0]
            row = self._db.execute(
                "SELECT holder, expires_at, epoch FROM leases WHERE resource = %s FOR UPDATE",
                (resource,),
            ).fetchone()
            current = Lease(resource, row[0], row[1], int(row[2])) if row else None
            d = decide(current, resource=resource, asker=asker, now=now, ttl=ttl)
            if d.granted:
                self._db.execute(
                    "INSERT INTO leases (resource, holder, expires_at, epoch) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (resource) DO UPDATE SET "
                    "holder = excluded.holder, expires_at = excluded.expires_at, "
                    "epoch = excluded.epoch",
                    (resource, d.lease.holder, d.lease.expires_at, d.lease.epoch),
                )
            return d

    def release(self, resource: str, asker: str) -> None:
        with self._db.transaction():
            now = self._db.execute("SELECT clock_timestamp()").fetchone()[0]
            row = self._db.execute(
                "SELECT holder, expires_at, epoch FROM leases WHERE resource = %s FOR UPDATE",
                (resource,),
            ).fetchone()
            current = Lease(resource, row[0], row[1], int(row[2])) if row else None
            after = release(current, asker=asker, now=now)
            if after is not None and after != current:
                self._db.execute(
                    "UPDATE leases SET expires_at = %s WHERE resource = %s",
                    (after.expires_at, resource),
                )

    def close(self) -> None:
        self._db.close()
