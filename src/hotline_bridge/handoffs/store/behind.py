"""Writes nothing waits for: a hotkey's timeline notes and its machine's later states.

A hotkey's record and its machine's first state are written before any AMI action, on the loop:
the citizen's call must not move before they are durable. What follows (the timeline notes of
every machine move, the machine's later states, the call log) is written for the record and for
a restart, and no command waits for it. Those writes are grouped: many per commit.

- :class:`WriteBehind` (PostgreSQL): each commit there is a network round trip plus a WAL flush
  (about 1 ms, 5-20 ms at p99 on a busy disk: ``make bench-store``), and at 20 transfers a
  second there are some 200 such writes a second: written inline, they held the event loop for
  most of every second and the hotkeys queued behind them (``make bench``). They go to one
  worker thread with its own connection, FIFO (one record's events keep their order), and what
  is queued when it looks is written in one transaction.
- :class:`TurnWrites` (SQLite): the writes of one event-loop turn, committed together at the end
  of that turn (``call_soon``): one commit and one set of WAL frames instead of one per write.
  Under load a turn carries dozens of them; idle, one.

Inside a group on SQLite every write is a savepoint (``HandoffStore.batch``): one that fails is
logged and undone alone. On PostgreSQL a savepoint would cost two more round trips per write, so
there are none: the first write that fails undoes the group. If the group's transaction fails
or is undone, each of its writes is made again on its own. Reads
that must see them (``GET /v1/handoffs/...``) first wait for them (``settle``). A ``kill -9``
loses what was still queued: milliseconds of notes on PostgreSQL, at most one loop turn on SQLite
(the machine's state is rebuilt from the PBX by the restart's reconcile).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence

import structlog

from hotline_bridge.handoffs.store.base import HandoffStore

log = structlog.get_logger(__name__)

Work = Callable[[HandoffStore], None]

MAX_QUEUED = 50_000  # past this (a store far behind) writes are done inline again, never dropped
MAX_GROUP = 500  # writes per transaction: a long backlog still commits every few hundred


def write_group(store: HandoffStore, works: Sequence[Work]) -> None:
    """``works`` in one transaction, each undone alone if it fails; never raises."""
    if not works:
        return
    if len(works) > 1:
        try:
            with store.batch() as group:
                for work in works:
                    _write_one(store, work)
                    if group.failed:
                        break  # PostgreSQL: the group is undone at its end (GroupUndone)
            return
        except Exception as exc:
            # BEGIN or COMMIT failed, or a write undid the group: nothing of the group is in
            # the store. One by one, so what can still be written is.
            log.warning("grouped store writes undone; writing one by one", error=str(exc))
    for work in works:
        _write_one(store, work)


def _write_one(store: HandoffStore, work: Work) -> None:
    try:
        work(store)
    except Exception as exc:
        log.error("deferred store write failed", error=str(exc))


class _Mark:
    """A point in the queue: set once everything queued before it is committed."""

    def __init__(self) -> None:
        self.done = threading.Event()

    def __call__(self, store: HandoffStore) -> None:  # never run as a write
        raise AssertionError("a mark is not a write")


class WriteBehind:
    def __init__(self, store: HandoffStore, *, max_queued: int = MAX_QUEUED) -> None:
        self._source = store
        self._queue: queue.Queue[Work | None] = queue.Queue(max_queued)
        self._started = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-write-behind", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._failed is not None:
            raise self._failed

    def submit(self, work: Work) -> bool:
        """Queue ``work``; False if the queue is full (the caller then writes inline)."""
        try:
            self._queue.put_nowait(work)
        except queue.Full:
            return False
        return True

    def drain(self, timeout: float = 5.0) -> bool:
        """Block until everything queued before this call is written (False on timeout)."""
        mark = _Mark()
        try:
            self._queue.put(mark, timeout=timeout)
        except queue.Full:
            return False
        return mark.done.wait(timeout)

    async def settle(self) -> None:
        await asyncio.to_thread(self.drain)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close its connection."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("store write-behind: queue full at shutdown; writes lost")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            store = self._source.reopen()  # a connection belongs to the thread that opened it
        except BaseException as exc:
            self._failed = exc
            self._started.set()
            return
        self._started.set()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        work = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if work is None:
                        stopping = True
                        break
                    group.append(work)
                write_group(store, [w for w in group if not isinstance(w, _Mark)])
                for w in group:
                    if isinstance(w, _Mark):
                        w.done.set()
        finally:
            store.close()


class TurnWrites:
    """The writes of one event-loop turn, committed together when the turn ends (SQLite)."""

    def __init__(self, store: HandoffStore) -> None:
        self._store = store
        self._pending: list[Work] = []

    def submit(self, work: Work) -> bool:
        """Queue ``work`` for the end of this loop turn; False outside a running loop (the
        caller then writes it now)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._pending.append(work)
        if len(self._pending) == 1:
            loop.call_soon(self.drain)
        return True

    def drain(self) -> None:
        """Write what is queued now (a read that must see it, shutdown)."""
        while self._pending:
            works, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            write_group(self._store, works)

    async def settle(self) -> None:
        self.drain()

    def close(self) -> None:
        self.drain()
