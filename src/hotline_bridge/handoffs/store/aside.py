"""Reads a FastAGI hook waits for, kept off the event loop on PostgreSQL.

The entry hook counts the caller's past records (the nuisance flag) for every citizen call, and
the receiving hook looks a pushed record up. On SQLite that is an in-process index lookup, tens of
microseconds: done inline (:class:`InlineReads`). On PostgreSQL it is a round trip to the
server; inline, the loop waits for it, and with it every hotkey and AMI event behind it (the
bench's PostgreSQL phase: a tenth of the loop's busy time was the hooks' reads). There the hook
awaits the read from one worker thread with its own connection (:class:`ReadAside`), while the
loop goes on. The hook's own deadline still bounds how long the dialplan waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from hotline_bridge.handoffs.store.base import HandoffStore

_T = TypeVar("_T")


class StoreReads(Protocol):
    async def __call__(self, read: Callable[[HandoffStore], _T]) -> _T: ...


class InlineReads:
    """Reads on the loop, on the store itself (SQLite: local and cheap)."""

    def __init__(self, store: HandoffStore) -> None:
        self._store = store

    async def __call__(self, read: Callable[[HandoffStore], _T]) -> _T:
        return read(self._store)

    def close(self) -> None:
        pass


class ReadAside:
    """Reads on one worker thread and its own connection (a connection belongs to the thread
    that opened it), opened at the first read and replaced by the store if the server drops it.
    One thread: reads queue in order; a slow one is bounded by the store's statement timeout
    and each hook's deadline. Only that thread touches the connection, closing included."""

    def __init__(self, store: HandoffStore) -> None:
        self._source = store
        self._conn: HandoffStore | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read-aside")

    async def __call__(self, read: Callable[[HandoffStore], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, read)

    def _run(self, read: Callable[[HandoffStore], _T]) -> _T:
        if self._conn is None:
            self._conn = self._source.reopen()
        return read(self._conn)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._pool.submit(self._close_conn).result(timeout)
        except RuntimeError:  # closed already
            pass
        self._pool.shutdown(wait=True, cancel_futures=True)
