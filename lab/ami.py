"""A tiny raw asyncio AMI client for the test harness (not the product's AMI client).

Deliberately independent of ``hotline_bridge.ami``: the sandbox tests check the PBX, and must not
fail because of (or hide bugs in) the code under test.

    ami = await AmiSession.connect("127.0.0.1", 5038, "sandbox-admin", "secret")
    mark = ami.mark()
    resp = await ami.action("Setvar", Channel=ch, Variable="HANDOFF_ID", Value="h-1")
    ev = await ami.wait_event(lambda e: e.get("Event") == "BridgeEnter", since=mark)
    items = await ami.action_list("ConfbridgeList", Conference="room-1")
    await ami.close()

Every event received is kept in ``ami.events`` (a list of dicts, in arrival order, each with the
extra key ``_t`` = time.monotonic() at arrival), so a test can look back at what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]

# AMI has no escaping: CR or LF inside a value ends the line (and a blank line ends the action).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class AmiError(RuntimeError):
    pass


def _parse(raw: bytes) -> Message:
    msg: Message = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in msg:
            # Repeated keys (Variable:, ChanVariable:, ...): keep them all.
            prev = msg[key]
            msg[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            msg[key] = value
    return msg


class AmiSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._lists: dict[str, list[Message]] = {}
        self._list_done: dict[str, asyncio.Future[None]] = {}
        self.events: list[Message] = []
        self._changed = asyncio.Condition()
        self.banner = ""
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    # ---- connection ------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        username: str,
        secret: str,
        events: str = "on",
        timeout: float = 5.0,
    ) -> AmiSession:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self = cls(reader, writer)
        self.banner = (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()
        self._task = asyncio.create_task(self._read_loop(), name="test-ami-reader")
        resp = await self.action("Login", Username=username, Secret=secret, Events=events)
        if resp.get("Response") != "Success":
            await self.close()
            raise AmiError(f"AMI login as {username} failed: {resp}")
        return self

    async def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self._writer.write(b"Action: Logoff\r\n\r\n")
            await asyncio.wait_for(self._writer.drain(), 1)
        self.closed = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def __aenter__(self) -> AmiSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self._reader.readuntil(b"\r\n\r\n")
                msg = _parse(raw[:-4])
                msg["_t"] = time.monotonic()
                await self._dispatch(msg)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.closed = True
            err = AmiError("AMI connection closed")
            futures: list[asyncio.Future[Any]] = [
                *self._pending.values(),
                *self._list_done.values(),
            ]
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)
            async with self._changed:
                self._changed.notify_all()

    async def _dispatch(self, msg: Message) -> None:
        action_id = msg.get("ActionID")
        if "Response" in msg and isinstance(action_id, str) and action_id in self._pending:
            fut = self._pending.pop(action_id)
            if not fut.done():
                fut.set_result(msg)
            return
        if "Event" in msg and isinstance(action_id, str) and action_id in self._lists:
            if msg.get("EventList") == "Complete" or str(msg["Event"]).endswith("Complete"):
                fut2 = self._list_done.pop(action_id)
                if not fut2.done():
                    fut2.set_result(None)
            else:
                self._lists[action_id].append(msg)
            return
        if "Event" in msg:
            async with self._changed:
                self.events.append(msg)
                self._changed.notify_all()

    # ---- actions ---------------------------------------------------------------------------

    def _encode(self, name: str, fields: dict[str, Any], action_id: str) -> bytes:
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                text = str(v)
                if _UNSAFE.search(text) or _UNSAFE.search(key):
                    raise AmiError(f"control character in AMI field {key!r}: {text!r}")
                lines.append(f"{key}: {text}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def action(self, name: str, timeout: float = 10.0, **fields: Any) -> Message:
        """Send an action; return its Response message (Success or Error)."""
        if self.closed:
            raise AmiError("AMI connection closed")
        action_id = f"t{next(self._ids)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = fut
        self._writer.write(self._encode(name, fields, action_id))
        await self._writer.drain()
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(action_id, None)

    async def action_ok(self, name: str, timeout: float = 10.0, **fields: Any) -> Message:
        resp = await self.action(name, timeout=timeout, **fields)
        if resp.get("Response") != "Success":
            raise AmiError(f"{name} {fields} -> {resp}")
        return resp

    async def action_list(self, name: str, timeout: float = 10.0, **fields: Any) -> list[Message]:
        """An action answered by a list of events (CoreShowChannels, ConfbridgeList, ...).

        Returns the list's events ([] when Asterisk answers with an Error such as "No active
        conferences").
        """
        action_id = f"t{next(self._ids)}"
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Message] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()
        self._pending[action_id] = fut
        self._lists[action_id] = []
        self._list_done[action_id] = done
        self._writer.write(self._encode(name, fields, action_id))
        await self._writer.drain()
        try:
            resp = await asyncio.wait_for(fut, timeout)
            if resp.get("Response") != "Success":
                return []
            await asyncio.wait_for(done, timeout)
            return self._lists[action_id]
        finally:
            self._pending.pop(action_id, None)
            self._lists.pop(action_id, None)
            self._list_done.pop(action_id, None)

    # ---- events ----------------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the event history; wait_event(since=mark) sees only later events."""
        return len(self.events)

    def find_events(self, pred: Callable[[Message], bool], since: int = 0) -> list[Message]:
        return [e for e in self.events[since:] if pred(e)]

    async def wait_event(
        self,
        pred: Callable[[Message], bool],
        timeout: float = 10.0,
        since: int = 0,
    ) -> Message:
        """The first event at or after `since` for which pred is true (waiting for it)."""
        deadline = time.monotonic() + timeout
        pos = since
        async with self._changed:
            while True:
                while pos < len(self.events):
                    ev = self.events[pos]
                    pos += 1
                    if pred(ev):
                        return ev
                if self.closed:
                    raise AmiError("AMI connection closed while waiting for an event")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching AMI event within {timeout} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)


def is_event(name: str, **fields: str) -> Callable[[Message], bool]:
    """Predicate: Event == name and every given field equal (field values as strings)."""

    def pred(ev: Message) -> bool:
        if ev.get("Event") != name:
            return False
        return all(ev.get(k) == v for k, v in fields.items())

    return pred
