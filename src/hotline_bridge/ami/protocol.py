"""One AMI TCP connection: framing, the pending-action table and in-order event dispatch.

This replaces panoramisk's ``AMIProtocol`` rather than subclassing it, because each of its parts
conflicts with what the bridge needs:

* ``data_received`` decodes every TCP chunk on its own with errors ignored, so a Chinese character
  split across two reads is lost; here bytes are framed first and each complete message decoded.
* it builds a full ``Message`` for every event before anyone can filter it; here the event name is
  read from the raw bytes and unwanted events are dropped before any decoding.
* it dispatches through ``Manager.dispatch``, which wraps coroutine handlers in ``ensure_future``
  (so one call's events can be handled out of order); here sync handlers run in arrival order.
* on connection loss ``close()`` moves unanswered actions to ``awaiting_actions`` and the Manager
  re-sends them after the next FullyBooted, which could repeat a transfer. Here the pending table
  belongs to the connection and dies with it: every pending action fails with AmiDisconnected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, cast

import structlog

from hotline_bridge.ami.actions import ActionResult, EdgeAction
from hotline_bridge.ami.errors import AmiDisconnected, AmiTimeout
from hotline_bridge.ami.messages import AmiEvent, AmiResponse, parse_lines

if TYPE_CHECKING:
    from hotline_bridge.ami.stats import AmiStats

log = structlog.get_logger(__name__)

_BANNER = b"Asterisk Call Manager/"
_EOM = b"\r\n\r\n"
_EVENT = b"Event: "
# A message larger than this means we are not talking to AMI (or it is broken): drop the link.
_MAX_BUFFER = 4 * 1024 * 1024
_INTERNAL = frozenset({b"fullybooted", b"shutdown"})
_SHUTTING_DOWN = "asterisk is shutting down"


class _Sink(Protocol):
    """What a connection needs from its owner (the AmiClient)."""

    stats: AmiStats

    def _deliver(self, event: AmiEvent) -> None: ...

    def _lost(self, conn: AmiConnection) -> None: ...


class AmiConnection(asyncio.Protocol):
    """An AMI session on one socket. Created by the client's supervisor for each connect."""

    def __init__(self, sink: _Sink, wanted: frozenset[bytes] | None) -> None:
        self._sink = sink
        self._stats = sink.stats
        self._wanted = wanted
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._pending: dict[str, EdgeAction] = {}
        self._list_ids: set[str] = set()
        self._closed = False
        loop = asyncio.get_running_loop()
        #: loop.time() of the last bytes read: the keep-alive's proof that the socket lives.
        self.last_received = loop.time()
        self._loop = loop
        self.version: str | None = None
        #: Resolves when Asterisk says FullyBooted (right after Login if it is already booted).
        self.booted: asyncio.Future[None] = loop.create_future()
        #: Resolves (never fails) when the connection is gone, with the reason.
        self.lost: asyncio.Future[str] = loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not isinstance-checked: uvloop's (event_loop = "uvloop") do not
        # inherit from asyncio's classes.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}" if exc else "connection closed by peer")

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        buffer = self._buffer + data if self._buffer else data
        if self.version is None:
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 256:
                    self.abort("no AMI banner")
                else:
                    self._buffer = buffer
                return
            if not buffer.startswith(_BANNER):
                self.abort("not an AMI server (bad banner)")
                return
            self.version = buffer[len(_BANNER) : end].decode("ascii", "replace")
            buffer = buffer[end + 2 :]
        frames = buffer.split(_EOM)
        self._buffer = frames.pop()
        if len(self._buffer) > _MAX_BUFFER:
            self.abort("AMI message too large")
            return
        for frame in frames:
            if self._closed:
                return
            if frame.startswith(b"\r\n"):
                # Tolerate a stray extra CRLF between messages.
                frame = frame.lstrip(b"\r\n")
            if frame:
                self._frame(frame)

    # -- incoming ---------------------------------------------------------------------------

    def _frame(self, frame: bytes) -> None:
        if frame.startswith(_EVENT):
            self._stats.events_received += 1
            end = frame.find(b"\r\n")
            raw_name = frame[7:] if end < 0 else frame[7:end]
            key = raw_name.lower()
            # While a list action is pending, any event may be one of its items (routed by
            # ActionID), so it must be parsed even if the filter would drop it.
            if not self._list_ids and key not in _INTERNAL:
                wanted = self._wanted
                if wanted is not None and key not in wanted:
                    self._stats.events_dropped += 1
                    return
                fields, multi = parse_lines(frame.decode("utf-8", "replace").split("\r\n"))
                self._sink._deliver(AmiEvent(raw_name.decode("utf-8", "replace"), fields, multi))
                return
        self._slow_frame(frame)

    def _slow_frame(self, frame: bytes) -> None:
        fields, multi = parse_lines(frame.decode("utf-8", "replace").split("\r\n"))
        # The first header says what the message is; events such as OriginateResponse also carry
        # a "Response:" field, so its mere presence proves nothing.
        first = next(iter(fields), "")
        if first == "Response":
            self._on_response(AmiResponse(fields, multi))
            return
        name = fields.get("Event")
        if first != "Event" or name is None:
            log.debug("ami.frame.unknown", first_header=first[:40])
            return
        event = AmiEvent(name, fields, multi)
        action_id = fields.get("ActionID")
        if action_id is not None and action_id in self._list_ids:
            action = self._pending.get(action_id)
            if action is not None and action.add_message(event):
                self._forget(action_id)
            return
        key = name.lower().encode()
        if key == b"fullybooted" and not self.booted.done():
            self.booted.set_result(None)
        if self._wanted is None or key in self._wanted:
            self._sink._deliver(event)
        elif key not in _INTERNAL:
            self._stats.events_dropped += 1
        if key == b"shutdown":
            # Asterisk is stopping or restarting: the session is as good as gone. Drop the link
            # now so pending actions fail at once instead of when the socket finally closes.
            self.abort(f"Asterisk shutdown (restart={event.get('Restart', '?')})")

    def _on_response(self, response: AmiResponse) -> None:
        action_id = response.action_id
        action = self._pending.get(action_id) if action_id else None
        if action is None:
            # Late answer to an action that already timed out (outcome was reported unknown).
            log.debug("ami.response.orphan", action_id=action_id)
            return
        if action.add_message(response):
            self._forget(action.action_id)
        if not response.success and response.message.lower().startswith(_SHUTTING_DOWN):
            # Seen on Asterisk 22: after `core restart now` it may keep the socket open for many
            # seconds (16 s once, while channels were torn down), refusing every action with this
            # message, and sends Event: Shutdown only at the very end. The session is useless:
            # leave `ready` now and let the supervisor reconnect (with backoff) instead.
            self.abort("Asterisk is shutting down")

    def _forget(self, action_id: str) -> None:
        self._pending.pop(action_id, None)
        self._list_ids.discard(action_id)

    # -- outgoing ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    async def request(self, action: EdgeAction, limit: float) -> ActionResult:
        """Write ``action`` and wait for its completion, at most ``limit`` seconds."""
        self.write_now([action])
        return await self.wait(action, asyncio.get_running_loop().time() + limit, limit)

    def write_now(self, actions: Sequence[EdgeAction]) -> None:
        """Register ``actions`` and write them in order with ONE ``write()``, synchronously.

        Asterisk runs one session's actions in the order received, so a batch (Setvar x N then
        BlindTransfer) keeps its order; one write means one send() and one wake-up of the
        session's thread instead of N. Every action written must then be awaited with
        :meth:`wait`, which also forgets it.
        """
        if self._closed or self._transport is None:
            raise AmiDisconnected("AMI connection is closed")
        for action in actions:
            self._pending[action.action_id] = action
            if action.multi:
                self._list_ids.add(action.action_id)
        self._transport.write(b"".join(action.encode() for action in actions))
        self._stats.actions_sent += len(actions)
        for action in actions:
            # Action name and ActionID only: field values may hold citizens' numbers.
            log.debug("ami.action.sent", action=action.name, action_id=action.action_id)

    async def wait(self, action: EdgeAction, deadline: float, limit: float) -> ActionResult:
        """The completion of an action written by :meth:`write_now`, until ``deadline``
        (event-loop time, = write time + ``limit``); AmiTimeout after it, AmiDisconnected if
        the link drops."""
        action_id = action.action_id
        try:
            async with asyncio.timeout_at(deadline):
                result: ActionResult = await action.future
            return result
        except TimeoutError:
            self._stats.actions_timed_out += 1
            log.warning("ami.action.timeout", action=action.name, action_id=action_id)
            raise AmiTimeout(
                f"{action.name} got no answer within {limit:g}s (outcome unknown)",
                action=action.name,
                action_id=action_id,
            ) from None
        finally:
            # Timed out, cancelled or done: the entry goes; a late answer is then an orphan.
            self._forget(action_id)

    def abort(self, reason: str) -> None:
        """Drop the link now: pending actions fail, nothing is flushed."""
        if self._transport is not None and not self._closed:
            log.warning("ami.connection.abort", reason=reason)
        self._fail(reason)
        if self._transport is not None:
            self._transport.abort()

    def close(self, farewell: bytes | None = None) -> None:
        """Close gracefully (optionally writing ``farewell`` first); pending actions fail."""
        transport = self._transport
        if transport is not None and not self._closed and farewell:
            transport.write(farewell)
        self._fail("closed by client")
        if transport is not None:
            transport.close()

    def _fail(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        # Owner first, so `connected` is already False when the failed callers resume.
        self._sink._lost(self)
        pending = list(self._pending.values())
        self._pending.clear()
        self._list_ids.clear()
        for action in pending:
            if not action.future.done():
                action.future.set_exception(
                    AmiDisconnected(f"{action.name} interrupted: {reason}; not re-sent")
                )
        if not self.booted.done():
            self.booted.set_exception(AmiDisconnected(reason))
            self.booted.exception()  # mark retrieved: nobody may be waiting for it
        if not self.lost.done():
            self.lost.set_result(reason)
