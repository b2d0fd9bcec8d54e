"""The stream hub: numbered events per topic, a bounded replay, bounded subscriber queues.

A topic is one agent's stream (``agent:1001``) or the wallboard. Every event gets the next number
of the hub (the SSE ``id``), is kept in its topic's replay buffer (the last ``replay`` events) and
is offered to the topic's subscribers. A reconnecting console sends ``Last-Event-ID`` and gets
what it missed, or, if that is older than the buffer, one ``reset`` event telling it to reload
its state. A subscriber that does not keep up (its queue full) is dropped rather than let the
bridge buffer without bound: its console reconnects and replays. Pure asyncio, no I/O.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

REPLAY = 200  # events kept per topic for reconnects
QUEUE = 256  # events waiting per subscriber before it is dropped as too slow
MAX_SUBSCRIBERS = 8  # per topic: an agent's console tabs, a wallboard's screens


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    kind: str
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    topic: str
    queue: asyncio.Queue[StreamEvent | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE)
    )
    dropped: bool = False


class TooManySubscribers(Exception):
    pass


class StreamHub:
    def __init__(self, replay: int = REPLAY, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._ids = itertools.count(1)
        self._replay = replay
        self._max = max_subscribers
        self._buffers: dict[str, deque[StreamEvent]] = {}
        self._subs: dict[str, set[Subscription]] = {}
        self.dropped_slow = 0
        self.closed = False

    def publish(self, topic: str, kind: str, data: dict[str, Any]) -> StreamEvent:
        event = StreamEvent(next(self._ids), kind, data)
        self._buffers.setdefault(topic, deque(maxlen=self._replay)).append(event)
        for sub in list(self._subs.get(topic, ())):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(sub)
        return event

    def subscribe(
        self, topic: str, last_event_id: int | None = None
    ) -> tuple[Subscription, list[StreamEvent]]:
        """A new subscription and the events to send first (the replay after ``last_event_id``)."""
        if self.closed:
            raise TooManySubscribers("the service is stopping; reconnect")
        subs = self._subs.setdefault(topic, set())
        if len(subs) >= self._max:
            raise TooManySubscribers(f"{topic} already has {self._max} open streams")
        sub = Subscription(topic)
        subs.add(sub)
        return sub, self.missed(topic, last_event_id)

    def missed(self, topic: str, last_event_id: int | None) -> list[StreamEvent]:
        if last_event_id is None:
            return []
        buffer = list(self._buffers.get(topic, ()))
        newer = [e for e in buffer if e.id > last_event_id]
        oldest_kept = buffer[0].id if buffer else None
        if oldest_kept is not None and last_event_id < oldest_kept - 1:
            # Some of what it missed is gone: say so, then send what is left.
            reset = StreamEvent(last_event_id, "reset", {"reason": "missed more than the replay"})
            return [reset, *newer]
        return newer

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.topic]

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))

    def close(self) -> None:
        """End every open stream (the service is stopping): each writer closes its response
        and the browser reconnects, to whichever process serves it then. An open stream would
        otherwise hold the HTTP server's shutdown for its whole timeout."""
        self.closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                self._end(sub)

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self.dropped_slow += 1
        self._end(sub)

    def _end(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        # Wake its writer so it closes the response (the queue may be full: make room for it).
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)
