"""Durable storage of handoff records: the interface (``base``), the SQLite implementation
(``sqlite``, the default) and its schema migrations (``migrations``)."""

from hotline_bridge.handoffs.store.base import (
    MAX_PAGE,
    AccessEntry,
    AccessRow,
    CallEntry,
    DuplicateHandoff,
    HandoffFilter,
    HandoffStore,
    OutboxItem,
    Page,
    PageRequest,
    StoreBusy,
    StoreError,
    UnknownHandoff,
)
from hotline_bridge.handoffs.store.migrations import MIGRATIONS, Migration, migrate, schema_versions
from hotline_bridge.handoffs.store.sqlite import SqliteHandoffStore

__all__ = [
    "MAX_PAGE",
    "MIGRATIONS",
    "AccessEntry",
    "AccessRow",
    "CallEntry",
    "DuplicateHandoff",
    "HandoffFilter",
    "HandoffStore",
    "Migration",
    "OutboxItem",
    "Page",
    "PageRequest",
    "SqliteHandoffStore",
    "StoreBusy",
    "StoreError",
    "UnknownHandoff",
    "migrate",
    "schema_versions",
]
