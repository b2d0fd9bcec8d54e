"""Reads a hook waits for: on PostgreSQL from a worker thread with its own connection (the loop
goes on meanwhile), on SQLite inline; and the entry hook hands its call to the recorder while
its connection is still open, so the queue's events for the call find it in memory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from hotline_bridge.agi.hooks import AgiHooks
from hotline_bridge.agi.server import AgiServer
from hotline_bridge.handoffs.store import CallEntry, HandoffStore
from hotline_bridge.handoffs.store.aside import InlineReads, ReadAside
from tests.component.test_agi_server import (
    CATALOG,
    NOW,
    NUISANCE_CALLER,
    SETTINGS,
    assignments,
    env_block,
    fake_asterisk,
    handoff,
)


def _seen_from(seen: list[tuple[str, int]]) -> Callable[[HandoffStore], int]:
    def read(store: HandoffStore) -> int:
        seen.append((threading.current_thread().name, id(store)))
        return 7

    return read


async def test_read_aside_reads_on_its_own_thread_and_connection(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    record = handoff()
    store.create(record)
    reads = ReadAside(store)
    try:
        seen: list[tuple[str, int]] = []
        assert [await reads(_seen_from(seen)) for _ in range(3)] == [7, 7, 7]
        threads, conns = {t for t, _ in seen}, {c for _, c in seen}
        assert threads != {threading.current_thread().name}
        assert all(t.startswith("store-read-aside") for t in threads)
        # One connection of its own, opened once, not the loop's store.
        assert len(conns) == 1 and id(store) not in conns
        got = await reads(lambda s: s.get(record.id))
        assert got is not None and got.id == record.id
    finally:
        reads.close()


async def test_read_aside_passes_a_read_error_to_the_caller(
    open_store: Callable[[str], HandoffStore],
) -> None:
    reads = ReadAside(open_store("handoffs"))

    def broken(_store: HandoffStore) -> None:
        raise ValueError("no such thing")

    try:
        with pytest.raises(ValueError, match="no such thing"):
            await reads(broken)
        assert await reads(lambda s: s.get("h-none")) is None  # the thread goes on
    finally:
        reads.close()


async def test_inline_reads_stay_on_the_loop(open_store: Callable[[str], HandoffStore]) -> None:
    store = open_store("handoffs")
    seen: list[tuple[str, int]] = []
    assert await InlineReads(store)(_seen_from(seen)) == 7
    assert seen == [(threading.current_thread().name, id(store))]


async def test_the_entry_hook_counts_through_its_reads_and_logs_before_closing(
    open_store: Callable[[str], HandoffStore],
) -> None:
    store = open_store("handoffs")
    for _ in range(2):
        store.create(handoff(NUISANCE_CALLER, category="police.harassment"))
    reads = ReadAside(store)
    threads: list[str] = []

    async def read(work: Callable[[HandoffStore], Any]) -> Any:
        def traced(s: HandoffStore) -> Any:
            threads.append(threading.current_thread().name)
            return work(s)

        return await reads(traced)

    logged: list[tuple[str, int]] = []
    server: AgiServer | None = None

    def log_call(entry: CallEntry) -> None:
        # Still inside the request: its connection has not been closed yet.
        assert server is not None and server._app is not None
        logged.append((entry.call_id, len(server._app.active)))

    hooks = AgiHooks(SETTINGS, store, CATALOG, clock=lambda: NOW, log_call=log_call, read=read)
    server = AgiServer("127.0.0.1", 0, hooks.routes(), command_timeout_s=0.5, env_timeout_s=0.5)
    await server.start()
    try:
        block = env_block("entry", agi_callerid=NUISANCE_CALLER, agi_uniqueid="9.2")
        commands = await fake_asterisk(server.address[1], block)
        assert assignments(commands) == [("CALL_JURISDICTION", "gucheng"), ("CALL_NUISANCE", "yes")]
        assert threads and all(t.startswith("store-read-aside") for t in threads)
        assert logged == [("9.2", 1)]
    finally:
        await server.close()
        reads.close()
        await asyncio.sleep(0)
