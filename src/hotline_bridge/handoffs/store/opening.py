"""Opens the store the configuration names: PostgreSQL with ``[store] dsn``, else the SQLite file
``[bridge].store_path``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from hotline_bridge.config.settings import Settings
from hotline_bridge.handoffs.store.base import HandoffStore, StoreError
from hotline_bridge.handoffs.store.lease import Decision, Lease, SqliteLeases
from hotline_bridge.handoffs.store.sqlite import SqliteHandoffStore


class Leases(Protocol):
    def acquire(self, resource: str, asker: str, ttl: timedelta, url: str = "") -> Decision: ...

    def release(self, resource: str, asker: str) -> None: ...

    def snapshot(self, resources: list[str]) -> tuple[datetime, dict[str, Lease | None]]: ...

    def close(self) -> None: ...


def open_store(settings: Settings) -> HandoffStore:
    """A new connection to this site's store; the caller closes it."""
    if settings.store.dsn is None:
        return SqliteHandoffStore(settings.bridge.store_path)
    try:
        # psycopg is the optional ``postgres`` extra: imported only when a DSN asks for it.
        from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore
    except ImportError:
        raise StoreError(
            "[store] dsn needs psycopg: pip install 'hotline-bridge[postgres]'"
        ) from None
    return PostgresHandoffStore(settings.store.dsn.get_secret_value())


def store_name(settings: Settings) -> str:
    """The store as logs and errors may name it (never the DSN: it may carry a password)."""
    return (
        "PostgreSQL ([store] dsn)"
        if settings.store.dsn is not None
        else str(settings.bridge.store_path)
    )


def open_leases(settings: Settings) -> Leases:
    """The leases of the store the configuration names (the replicas' PBX ownership)."""
    if settings.store.dsn is None:
        return SqliteLeases(settings.bridge.store_path)
    try:
        from hotline_bridge.handoffs.store.lease import PostgresLeases
    except ImportError:  # pragma: no cover - the module imports psycopg lazily
        raise StoreError(
            "[store] dsn needs psycopg: pip install 'hotline-bridge[postgres]'"
        ) from None
    return PostgresLeases(settings.store.dsn.get_secret_value())
