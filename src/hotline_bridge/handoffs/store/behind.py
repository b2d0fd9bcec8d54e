"""Writes nothing waits for, done in order on one worker thread with its own connection.

A hotkey's record and its machine's first state are written before any AMI action, on the loop:
the citizen's call must not move before they are durable. What follows (the timeline notes of
every machine move, the machine's later states) is written for the record and for a restart,
and no command waits for it. On PostgreSQL each of those commits is a network round trip plus
a WAL flush (about 1 ms, 5-20 ms at p99 on a busy disk: ``make bench-store``), and at 20
transfers a second there are some 200 of them a second: written inline, they held the event
loop for most of every second and the hotkeys queued behind them (``make bench``). Here they
leave the loop: FIFO, so one record's events keep their order.

Reads that must see them (``GET /v1/handoffs/...``) first wait for the queue to drain
(:meth:`WriteBehind.drain`). A write that fails is logged, as an inline one was. A ``kill -9``
loses what was still queued (milliseconds of notes; the machine's state is rebuilt from the
PBX by the restart's reconcile); the SQLite store, whose commits do not leave the box, keeps
writing inline and has no such window.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

from hotline_bridge.handoffs.store.base import HandoffStore

log = structlog.get_logger(__name__)

Work = Callable[[HandoffStore], None]

MAX_QUEUED = 50_000  # past this (a store far behind) writes are done inline again, never dropped


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
        done = threading.Event()
        try:
            self._queue.put(lambda _store: done.set(), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

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
            while True:
                work = self._queue.get()
                if work is None:
                    return
                try:
                    work(store)
                except Exception as exc:
                    log.error("deferred store write failed", error=str(exc))
        finally:
            store.close()
