"""The AMI client: connection supervision, login, keep-alive, resync hooks and the action API.

panoramisk's ``Manager`` is not used: its reconnect loop retries at a fixed interval and ignores
refused connects' backoff, its pinger writes ``Ping`` without ever checking for a reply (a silent
Asterisk goes unnoticed), its actions have no timeout, and its ``awaiting_actions`` re-send
unanswered actions after a reconnect. This module owns those duties instead:

* one supervisor task connects, logs in, waits for ``FullyBooted``, marks the client ``ready``,
  runs the resync hooks, pings, and on any loss reconnects with jittered exponential backoff;
* every action has a timeout; an action cut off by a disconnect or timeout fails with
  :class:`AmiDisconnected` / :class:`AmiTimeout` and is never sent again;
* sync event handlers run in socket arrival order, after a client-side event-name filter.

Server-side filtering: the ``Filter`` action needs ``system`` *write* permission (verified on
Asterisk 22.10.1: "Permission denied" for the bridge user), which would also allow reloads and
module control, so the edge does not use it. It can narrow the Login ``Events:`` class mask
(``event_classes``); ``system`` is always included because ``FullyBooted`` and ``Shutdown`` are
system events and Asterisk only sends the post-login ``FullyBooted`` when that class is on.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import suppress
from enum import StrEnum
from typing import Any

import structlog

from hotline_bridge.ami.actions import ActionResult, EdgeAction, build_action
from hotline_bridge.ami.backoff import Backoff
from hotline_bridge.ami.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiError,
    AmiFieldError,
    AmiTimeout,
)
from hotline_bridge.ami.fields import Fields, validate_fields
from hotline_bridge.ami.messages import AmiEvent, AmiResponse
from hotline_bridge.ami.protocol import AmiConnection
from hotline_bridge.ami.stats import AmiStats

log = structlog.get_logger(__name__)

EventHandler = Callable[[AmiEvent], None]
ResyncHook = Callable[[], Awaitable[None]]
StateListener = Callable[[str], None]

_CLASS_RE = re.compile(r"[a-z]+")
# Seconds a ready session must last for the next reconnect to start again from backoff_initial.
_STABLE_SESSION = 10.0


class AmiState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0")
    return float(value)


class AmiClient:
    """A self-healing AMI session. See the module docstring for the guarantees."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        events: Iterable[str] | None = None,
        event_classes: Iterable[str] | None = None,
        action_timeout: float = 5.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 2.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        connect_timeout: float = 5.0,
        boot_timeout: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``events``: event names to deliver (case-insensitive; None = all). ``event_classes``:
        Login ``Events:`` class mask, e.g. ``{"call", "agent"}`` (None = ``on``, i.e. everything
        the AMI user may read). ``sleep`` (the wait between reconnects) and ``jitter`` (the
        backoff's randomness) are injectable: tests check the reconnect schedule, no clock."""
        self._host = host
        self._port = port
        if event_classes is None:
            mask = "on"
        else:
            classes = {c.strip().lower() for c in event_classes} | {"system"}
            if not all(_CLASS_RE.fullmatch(c) for c in classes):
                raise AmiFieldError("Events", "event classes must be lower-case words")
            mask = ",".join(sorted(classes))
        self._login_fields: dict[str, str] = {
            "Username": username,
            "Secret": secret,
            "Events": mask,
        }
        # Bad credentials syntax is a configuration error: refuse now, not on every reconnect.
        validate_fields(self._login_fields)
        self._wanted = (
            None if events is None else frozenset(name.lower().encode() for name in events)
        )
        self._action_timeout = _positive("action_timeout", action_timeout)
        self._ping_interval = _positive("ping_interval", ping_interval)
        self._ping_timeout = _positive("ping_timeout", ping_timeout)
        self._backoff = Backoff(
            _positive("backoff_initial", backoff_initial),
            _positive("backoff_max", backoff_max),
            stable_s=_STABLE_SESSION,
            jitter=jitter,
        )
        self._sleep = sleep
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._boot_timeout = _positive("boot_timeout", boot_timeout)

        self.stats = AmiStats()
        self._state = AmiState.DISCONNECTED
        self._ready = asyncio.Event()
        self._conn: AmiConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._handlers: list[EventHandler] = []
        self._resync_hooks: list[ResyncHook] = []
        self._state_listeners: list[StateListener] = []
        self._ever_ready = False
        self._closing = False

    def __repr__(self) -> str:
        return f"<AmiClient {self._host}:{self._port} {self._state}>"

    # -- observation --------------------------------------------------------------------------

    @property
    def state(self) -> AmiState:
        return self._state

    @property
    def connected(self) -> bool:
        """True when actions can be sent (logged in and Asterisk fully booted)."""
        return self._state is AmiState.READY

    @property
    def version(self) -> str | None:
        """AMI protocol version from the current connection's banner."""
        return self._conn.version if self._conn is not None else None

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler(event)`` for each wanted event, in socket order; returns an unsubscriber.

        Handlers run inline on the event loop: keep them short and non-blocking (hand work to a
        queue). An exception is logged and counted; later handlers and events are unaffected.
        """
        self._handlers.append(handler)

        def unsubscribe() -> None:
            with suppress(ValueError):
                self._handlers.remove(handler)

        return unsubscribe

    def add_resync_hook(self, hook: ResyncHook) -> None:
        """Run ``await hook()`` after every transition to ready, in registration order.

        Hooks rebuild state from list actions (CoreShowChannels, BridgeList) because events were
        missed while disconnected. Events keep flowing to subscribers while hooks run.
        """
        self._resync_hooks.append(hook)

    def add_state_listener(self, listener: StateListener) -> None:
        self._state_listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (idempotent); see :meth:`wait_ready`."""
        if self._state is AmiState.CLOSED:
            raise AmiDisconnected("AMI client is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="ami-supervisor")

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 - API contract
        if self._state is AmiState.CLOSED:
            raise AmiDisconnected("AMI client is closed")
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise AmiTimeout(f"AMI not ready within {timeout:g}s (state {self._state})") from None

    async def close(self) -> None:
        """Log off and stop reconnecting. Pending actions fail with AmiDisconnected."""
        if self._state is AmiState.CLOSED:
            return
        self._closing = True
        task, self._task = self._task, None
        conn = self._conn
        if conn is not None:
            conn.close(farewell=build_action("Logoff", internal=True).encode())
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._ready.clear()
        self._set_state(AmiState.CLOSED)

    # -- actions --------------------------------------------------------------------------------

    async def send(
        self,
        action: str,
        fields: Fields | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-action override is the contract
    ) -> AmiResponse:
        """Send one action and return its response.

        Raises AmiFieldError (nothing sent), AmiDisconnected (not ready, or connection lost
        while pending: outcome unknown, never re-sent), AmiTimeout (outcome unknown) or
        AmiActionFailed (``Response: Error``). Does not wait for ready: callers decide.
        """
        result = await self._request(build_action(action, fields), timeout)
        assert isinstance(result, AmiResponse)
        if not result.success:
            raise AmiActionFailed(action, result)
        return result

    def send_batch(
        self,
        batch: Sequence[tuple[str, Fields | None]],
        *,
        timeout: float | None = None,
    ) -> list[Coroutine[Any, Any, AmiResponse]]:
        """Write every action of ``batch`` NOW, in order, with one write; then await each.

        For pipelined batches (the interpreter's Setvar x N + BlindTransfer): the bytes leave
        before this returns, not an event-loop turn (or a reply) later. Returns one awaitable
        per action, in order; each gives what :meth:`send` would: the response, or
        AmiFieldError (that action is not written; the others are), AmiDisconnected,
        AmiTimeout (``timeout`` counts from the write) or AmiActionFailed. Await every one.
        """
        seconds = self._action_timeout if timeout is None else _positive("timeout", timeout)
        built: list[EdgeAction | AmiError] = []
        for name, fields in batch:
            try:
                built.append(build_action(name, fields))
            except AmiFieldError as exc:
                built.append(exc)
        conn = self._conn
        failure: AmiError | None = None
        deadline = asyncio.get_running_loop().time() + seconds
        if conn is None or self._state is not AmiState.READY or conn.closed:
            failure = AmiDisconnected(f"AMI not ready (state {self._state})")
        else:
            try:
                conn.write_now([a for a in built if isinstance(a, EdgeAction)])
            except AmiDisconnected as exc:
                failure = exc
        return [self._outcome(item, conn, deadline, seconds, failure) for item in built]

    async def _outcome(
        self,
        item: EdgeAction | AmiError,
        conn: AmiConnection | None,
        deadline: float,
        limit: float,
        failure: AmiError | None,
    ) -> AmiResponse:
        if isinstance(item, AmiError):
            raise item
        if failure is not None or conn is None:
            raise failure or AmiDisconnected("AMI not ready")
        result = await conn.wait(item, deadline, limit)
        assert isinstance(result, AmiResponse)
        if not result.success:
            raise AmiActionFailed(item.name, result)
        return result

    async def send_list(
        self,
        action: str,
        fields: Fields | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - per-action override is the contract
    ) -> list[AmiEvent]:
        """Send a list action (CoreShowChannels, BridgeList...) and return its item events.

        The items are the events carrying this ActionID up to the one ending the list (``EventList:
        Complete`` / ``...Complete``), which is not included. ``timeout`` covers the whole list.
        """
        result = await self._request(build_action(action, fields, as_list=True), timeout)
        assert isinstance(result, tuple)
        response, items = result
        if not response.success:
            raise AmiActionFailed(action, response)
        return items

    async def _request(self, action: EdgeAction, limit: float | None) -> ActionResult:
        conn = self._conn
        if conn is None or self._state is not AmiState.READY or conn.closed:
            raise AmiDisconnected(f"AMI not ready (state {self._state})")
        seconds = self._action_timeout if limit is None else _positive("timeout", limit)
        return await conn.request(action, seconds)

    # -- supervision ----------------------------------------------------------------------------

    def _set_state(self, state: AmiState) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        if state is AmiState.READY:
            self._ready.set()
        else:
            self._ready.clear()
        log.info("ami.state", state=str(state), previous=str(previous))
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                log.exception("ami.state_listener.failed")

    def _lost(self, conn: AmiConnection) -> None:
        # Called synchronously by the connection; the supervisor notices a moment later.
        if conn is self._conn and not self._closing:
            self._set_state(AmiState.DISCONNECTED)

    def _deliver(self, event: AmiEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("ami.handler.failed", ami_event=event.name)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._set_state(AmiState.CONNECTING)
            conn: AmiConnection | None = None
            try:
                conn = await self._connect()
                self._conn = conn
                await self._login(conn)
                ready_at = loop.time()
                await self._serve(conn)
                self._backoff.session_ended(loop.time() - ready_at)
            except (OSError, AmiError) as exc:
                self.stats.connect_failures += 1
                log.warning(
                    "ami.connect.failed",
                    host=self._host,
                    port=self._port,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if isinstance(exc, AmiActionFailed) and "shutting down" in exc.message.lower():
                    self._backoff.peer_restarting()
            except Exception:
                # A bug must not end AMI supervision for good: log it and reconnect.
                self.stats.connect_failures += 1
                log.exception("ami.supervisor.error")
            finally:
                if conn is not None:
                    conn.abort("supervisor ended the session")
                self._conn = None
            if self._closing:
                return
            self._set_state(AmiState.DISCONNECTED)
            delay = self._backoff.next_delay()
            log.info(
                "ami.reconnect.scheduled", delay=round(delay, 3), attempt=self._backoff.attempt
            )
            await self._sleep(delay)

    async def _connect(self) -> AmiConnection:
        loop = asyncio.get_running_loop()
        wanted = self._wanted
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: AmiConnection(self, wanted), self._host, self._port
                )
        except TimeoutError:
            raise AmiTimeout(f"TCP connect timed out after {self._connect_timeout:g}s") from None
        return conn

    async def _login(self, conn: AmiConnection) -> None:
        self._set_state(AmiState.AUTHENTICATING)
        login = build_action("Login", self._login_fields, internal=True)
        response = await conn.request(login, self._action_timeout)
        assert isinstance(response, AmiResponse)
        if not response.success:
            # Asterisk's message ("Authentication failed") never contains the secret.
            raise AmiActionFailed("Login", response)
        try:
            async with asyncio.timeout(self._boot_timeout):
                await conn.booted
        except TimeoutError:
            raise AmiTimeout(
                f"no FullyBooted within {self._boot_timeout:g}s after login "
                "(still booting, or the AMI user lacks read=system)"
            ) from None

    async def _serve(self, conn: AmiConnection) -> None:
        self.stats.connects += 1
        if self._ever_ready:
            self.stats.reconnects += 1
        self._ever_ready = True
        self._set_state(AmiState.READY)
        tasks = [
            asyncio.create_task(self._keepalive(conn), name="ami-keepalive"),
            asyncio.create_task(self._resync(), name="ami-resync"),
        ]
        try:
            reason = await conn.lost
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.stats.disconnects += 1
        log.warning("ami.connection.lost", reason=reason)

    async def _keepalive(self, conn: AmiConnection) -> None:
        # WORKAROUND panoramisk 1.4: Manager.ping writes a Ping and never looks at the reply, so
        # a half-open socket or a wedged Asterisk is never detected. Here an unanswered Ping
        # with nothing else read meanwhile means the session is dead: abort it and reconnect.
        # An overloaded Asterisk that still streams events is slow, not dead: dropping that
        # session would lose the replies of every action in flight (seen at 50 calls/s).
        loop = asyncio.get_running_loop()
        while not conn.closed:
            await asyncio.sleep(self._ping_interval)
            sent_at = loop.time()
            try:
                response = await conn.request(build_action("Ping"), self._ping_timeout)
            except AmiTimeout:
                if conn.last_received > sent_at:
                    self.stats.keepalive_slow += 1
                    continue
                self.stats.keepalive_failures += 1
                conn.abort(f"nothing read within {self._ping_timeout:g}s of a Ping")
                return
            except AmiDisconnected:
                return
            if isinstance(response, AmiResponse) and not response.success:
                # Ping needs no privilege: a refusal means Asterisk cannot serve this session.
                self.stats.keepalive_failures += 1
                conn.abort(f"Ping refused: {response.message}")
                return

    async def _resync(self) -> None:
        for hook in list(self._resync_hooks):
            try:
                await hook()
            except Exception:
                log.exception("ami.resync_hook.failed", hook=getattr(hook, "__qualname__", "?"))
        self.stats.resyncs += 1
