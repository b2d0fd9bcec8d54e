"""Durable storage of handoff records: the interface (``base``), the SQLite implementation
(``sqlite``, the default) and its schema migrations (``migrations``), the PostgreSQL one
(``postgres``, ``pg_migrations``; needs the ``postgres`` extra) and ``open_store``, which opens
the one the configuration names."""

from hotline_bridge.handoffs.store.base import (
    MAX_PAGE,
    OUTBOX_LEASE_S,
    AccessEntry,
    AccessRow,
    CallEntry,
    DuplicateHandoff,
    HandoffFilter,
    HandoffStore,
    MachineRow,
    OutboxItem,
    Page,
    PageRequest,
    StoreBusy,
    StoreError,
    UnknownHandoff,
)
from hotline_bridge.handoffs.store.migrations import MIGRATIONS, Migration, migrate, schema_versions
from hotline_bridge.handoffs.store.opening import open_store, store_name
from hotline_bridge.handoffs.store.sqlite import SqliteHandoffStore

__all__ = [
    "MAX_PAGE",
    "MIGRATIONS",
    "OUTBOX_LEASE_S",
    "AccessEntry",
    "AccessRow",
    "CallEntry",
    "DuplicateHandoff",
    "HandoffFilter",
    "HandoffStore",
    "MachineRow",
    "Migration",
    "OutboxItem",
    "Page",
    "PageRequest",
    "SqliteHandoffStore",
    "StoreBusy",
    "StoreError",
    "UnknownHandoff",
    "migrate",
    "open_store",
    "schema_versions",
    "store_name",
]
