"""The leases table in the shared store: an atomic claim (SQLite: one ``BEGIN IMMEDIATE``
transaction, so replicas in other processes on the same store file see one order of claims).
Wall-clock seconds: replicas of one node run on hosts whose clocks agree (NTP), as for records.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hotline_bridge.handoffs.store.sqlite import private_file
from hotline_bridge.runtime.lease import Lease, grant

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    node TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_at REAL NOT NULL,
    epoch INTEGER NOT NULL
)
"""


class SqliteLeases:
    def __init__(self, path: Path, timeout_s: float = 1.0) -> None:
        private_file(path)  # the store's file: the lease may be the first to create it
        self._db = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def claim(self, node: str, me: str, url: str, ttl_s: float, now: float) -> Lease:
        """Take or renew the lease if it is free, lapsed or ours; the lease as it now stands."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self._read(node)
            new = grant(current, node, me, url, ttl_s, now)
            if new != current:
                db.execute(
                    "INSERT INTO leases (node, holder, url, expires_at, epoch) VALUES (?,?,?,?,?)"
                    " ON CONFLICT(node) DO UPDATE SET holder=excluded.holder, url=excluded.url,"
                    " expires_at=excluded.expires_at, epoch=excluded.epoch",
                    (new.node, new.holder, new.url, new.expires_at, new.epoch),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def get(self, node: str) -> Lease | None:
        return self._read(node)

    def release(self, node: str, me: str) -> None:
        """Give the lease up at a clean stop, so a standby need not wait for it to lapse."""
        self._db.execute(
            "UPDATE leases SET expires_at = 0 WHERE node = ? AND holder = ?", (node, me)
        )

    def _read(self, node: str) -> Lease | None:
        row = self._db.execute(
            "SELECT node, holder, url, expires_at, epoch FROM leases WHERE node = ?", (node,)
        ).fetchone()
        return Lease(*row) if row else None

    def close(self) -> None:
        self._db.close()
