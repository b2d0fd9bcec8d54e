"""A raw AMI client for load tools: pipelined actions, events to a callback, nothing kept.

``lab.ami.AmiSession`` keeps every event for tests to look back at; under a drill's thousands of
events per second that history (and its per-event wake-ups) would cost more than what is
measured. This one hands each event to ``on_event`` as it is parsed and forgets it, writes a
batch of actions with ONE ``write()`` (Asterisk runs a session's actions in order, as the
bridge's interpreter relies on), and can record the raw bytes it reads, to replay them later
(the event-ingestion micro-benchmark).

    ami = await LoadAmi.connect(host, port, user, secret, events="call", on_event=handle)
    replies = ami.send_many([("Setvar", {...}), ("BlindTransfer", {...})])
    last = await replies[-1]
    items = await ami.list_action("CoreShowChannels")
    await ami.close()

Every parsed message is a plain ``dict`` (repeated keys keep their first value) with ``_t`` =
``time.time()`` when its bytes were read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Message = dict[str, Any]
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class LoadAmiError(RuntimeError):
    pass


class LoadAmi(asyncio.Protocol):
    def __init__(
        self, on_event: Callable[[Message], None] | None, record: IO[bytes] | None
    ) -> None:
        self._on_event = on_event
        self._record = record
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._banner = False
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._lists: dict[str, list[Message]] = {}
        self._list_done: dict[str, asyncio.Future[list[Message]]] = {}
        self._raw_outputs: dict[str, list[str]] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self.events = 0

    # -- connection ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: str = "off",
        on_event: Callable[[Message], None] | None = None,
        record: Path | None = None,
        timeout: float = 5.0,
    ) -> LoadAmi:
        loop = asyncio.get_running_loop()
        rec = record.open("wb") if record is not None else None
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_event, rec), host, port), timeout
        )
        resp = await asyncio.wait_for(
            proto.send("Login", Username=username, Secret=secret, Events=events), timeout
        )
        if resp.get("Response") != "Success":
            await proto.close()
            raise LoadAmiError(f"AMI login as {username} refused: {resp.get('Message')}")
        return proto

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(Exception):
                self._transport.write(b"Action: Logoff\r\n\r\n")
            self._transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.closed), 2)
        if self._record is not None:
            self._record.close()
            self._record = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        err = LoadAmiError(f"AMI connection lost: {exc or 'closed'}")
        futures: list[asyncio.Future[Any]] = [*self._pending.values(), *self._list_done.values()]
        for fut in futures:
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        self._list_done.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- reading -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self._record is not None:
            self._record.write(data)
        buf = self._buffer + data
        if not self._banner:
            end = buf.find(b"\r\n")
            if end < 0:
                self._buffer = buf
                return
            self._banner = True
            buf = buf[end + 2 :]
        frames = buf.split(b"\r\n\r\n")
        self._buffer = frames.pop()
        for frame in frames:
            if frame:
                self._message(frame, now)

    def _message(self, frame: bytes, now: float) -> None:
        msg: Message = {"_t": now}
        lines = frame.decode("utf-8", "replace").split("\r\n")
        for line in lines:
            key, sep, value = line.partition(": ")
            if sep and key not in msg:
                msg[key] = value
        action_id = msg.get("ActionID")
        if action_id in self._raw_outputs:
            self._raw_outputs[action_id] = [ln[8:] for ln in lines if ln.startswith("Output: ")]
        if "Response" in msg and action_id in self._pending:
            fut = self._pending.pop(action_id)
            if not fut.done():
                fut.set_result(msg)
            return
        if "Event" not in msg:
            return
        if action_id is not None and action_id in self._list_done:
            if msg.get("EventList") == "Complete" or str(msg["Event"]).endswith("Complete"):
                done = self._list_done.pop(action_id)
                if not done.done():
                    done.set_result(self._lists.pop(action_id, []))
            else:
                self._lists[action_id].append(msg)
            return
        self.events += 1
        if self._on_event is not None:
            self._on_event(msg)

    # -- actions -------------------------------------------------------------------------------

    def _encode(self, name: str, fields: dict[str, Any], action_id: str) -> bytes:
        parts = [f"Action: {name}\r\nActionID: {action_id}\r\n"]
        for key, value in fields.items():
            for v in value if isinstance(value, list | tuple) else (value,):
                text = str(v)
                if _UNSAFE.search(text) or _UNSAFE.search(key):
                    raise LoadAmiError(f"control character in AMI field {key!r}")
                parts.append(f"{key}: {text}\r\n")
        parts.append("\r\n")
        return "".join(parts).encode()

    def send_many(self, actions: list[tuple[str, dict[str, Any]]]) -> list[asyncio.Future[Message]]:
        """Write every action with one write(); futures of their responses, in order."""
        if self._transport is None or self._transport.is_closing():
            raise LoadAmiError("AMI connection closed")
        loop = asyncio.get_running_loop()
        futures, chunks = [], []
        for name, fields in actions:
            action_id = f"L{next(self._ids)}"
            fut: asyncio.Future[Message] = loop.create_future()
            self._pending[action_id] = fut
            futures.append(fut)
            chunks.append(self._encode(name, fields, action_id))
        self._transport.write(b"".join(chunks))
        return futures

    def send(self, name: str, **fields: Any) -> asyncio.Future[Message]:
        return self.send_many([(name, fields)])[0]

    async def list_action(self, name: str, timeout: float = 10.0, **fields: Any) -> list[Message]:
        """A list action's item events ([] when Asterisk answers with an Error)."""
        if self._transport is None or self._transport.is_closing():
            raise LoadAmiError("AMI connection closed")
        action_id = f"L{next(self._ids)}"
        loop = asyncio.get_running_loop()
        resp: asyncio.Future[Message] = loop.create_future()
        done: asyncio.Future[list[Message]] = loop.create_future()
        self._pending[action_id] = resp
        self._lists[action_id] = []
        self._list_done[action_id] = done
        self._transport.write(self._encode(name, fields, action_id))
        try:
            answer = await asyncio.wait_for(resp, timeout)
            if answer.get("Response") != "Success":
                return []
            return await asyncio.wait_for(done, timeout)
        finally:
            self._pending.pop(action_id, None)
            self._lists.pop(action_id, None)
            self._list_done.pop(action_id, None)

    async def command(self, cli: str, timeout: float = 10.0) -> str:
        """Output of one CLI command (needs an AMI user with the ``command`` write class)."""
        if self._transport is None or self._transport.is_closing():
            raise LoadAmiError("AMI connection closed")
        action_id = f"L{next(self._ids)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = fut
        self._raw_outputs[action_id] = []
        self._transport.write(self._encode("Command", {"Command": cli}, action_id))
        try:
            await asyncio.wait_for(fut, timeout)
            return "\n".join(self._raw_outputs.get(action_id, []))
        finally:
            self._pending.pop(action_id, None)
            self._raw_outputs.pop(action_id, None)
