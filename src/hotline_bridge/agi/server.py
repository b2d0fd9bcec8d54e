"""The FastAGI server, on panoramisk's ``fast_agi``, with that module's defects worked around.

From panoramisk 1.4 we use the route table (``Application.add_route``: ``async def`` handlers
only) and ``Request.send_command`` (write one command, read its result line, skip ``100
Trying``, parse with ``parse_agi_result``). ``AgiApplication.handler`` replaces the connection
handler, because as shipped it

1. spins at 100% CPU forever when a client closes before the blank line that ends the
   environment (``while b'\\n\\n' not in buffer: buffer += await reader.read(100)`` never sees
   EOF: ``read`` keeps returning ``b''``);
2. has no size limit on that buffer and no timeout: a client that sends a few bytes and stops
   holds a task forever;
3. runs the route without a deadline -- and Asterisk has none either (res_agi waits for the next
   command as long as it takes), so a stuck hook would leave the citizen in silence;
4. catches ``BaseException`` around the route, swallowing the ``CancelledError`` of a shutdown;
5. lets a ``UnicodeDecodeError`` from undecodable bytes escape, and never awaits ``wait_closed``;
6. (``add_route``) wraps plain functions with ``asyncio.coroutine``, which Python 3.11 removed:
   only ``async def`` handlers work, so only those are registered;
7. (``Application.__init__``) calls ``asyncio.get_event_loop()``: we pass the running loop;
8. logs Asterisk's whole environment at DEBUG, the citizen's number (``agi_callerid``) with it:
   nothing here logs a number unmasked.

``Request.send_command`` is wrapped by :meth:`AgiCall.command`: it has no timeout (added); at EOF
``parse_agi_result('')`` raises ``ValueError`` (``int('')``), read here as "Asterisk closed"; an
unsolicited ``HANGUP`` line (the caller hung up) is returned as an error dict, read here as
:class:`AgiHangup`; and a ``520`` usage error spans more lines than it reads, which would
shift every later reply by one -- so any answer other than ``200`` ends the session (no command
is ever sent after one).

Every connection gets one deadline for reading the environment, deciding and answering (the
route's ``timeout_s``); when it passes the connection is dropped and the dialplan carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from panoramisk.fast_agi import Application, Request

from hotline_bridge.agi.protocol import (
    MAX_ENV_BYTES,
    AgiProtocolError,
    args_of,
    key_of,
    parse_env,
    route_of,
    set_variable,
    set_variables_at_once,
    without_query,
)

log = structlog.get_logger(__name__)

#: Connections served at once; more are closed at once (the dialplan goes on without the hook).
MAX_CONNECTIONS = 256
#: How many recent request durations per route the health summary is computed over.
_RECENT = 1000


class AgiSessionEnded(Exception):
    """The AGI session cannot go on (the message says why); not a failure of the hook."""


class AgiHangup(AgiSessionEnded):
    """The channel hung up during the hook."""


class AgiClosed(AgiSessionEnded):
    """Asterisk closed the connection."""


class AgiCommandError(Exception):
    """Asterisk refused a command (anything but ``200``)."""


Handler = Callable[["AgiCall"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler  # an ``async def`` (panoramisk's add_route needs one on Python 3.11)
    timeout_s: float  # the whole request: environment, decision, commands


class AgiCall:
    """One FastAGI request as a hook sees it: the environment, its arguments, and commands."""

    def __init__(
        self, request: Request, env: Mapping[str, str], route: str, command_timeout_s: float
    ) -> None:
        self.request = request
        self.env = env
        self.route = route
        self.args = args_of(env)
        self._command_timeout_s = command_timeout_s

    @property
    def call_id(self) -> str:
        return self.env.get("agi_uniqueid", "")

    async def set_variables(self, variables: Mapping[str, str]) -> None:
        """All in one ``EXEC MSet`` where the values allow it, else ``SET VARIABLE`` each, in
        order. All are checked first: a refused value (AgiValueError) sends nothing at all."""
        commands = [set_variable(name, value) for name, value in variables.items()]
        at_once = set_variables_at_once(variables, checked=True)  # each checked just above
        if at_once is not None:
            result = await self.command(at_once)
            if result.get("result", ("",))[0] == "0":
                return
            # -2: no MSet application on this PBX; set them one by one instead.
        for command in commands:
            await self.command(command)

    async def command(self, line: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Send one command line (no LF) and return panoramisk's parsed ``200`` result.

        ``timeout_s``: for a command that takes time on the channel (playing a sound)."""
        try:
            async with asyncio.timeout(timeout_s or self._command_timeout_s):
                result: dict[str, Any] = await self.request.send_command(line)
        except ValueError:  # panoramisk: int('') on the empty read at EOF, or an overlong line
            raise AgiClosed("Asterisk closed the AGI connection") from None
        except (ConnectionError, asyncio.IncompleteReadError):
            raise AgiClosed("AGI connection lost") from None
        if result.get("error") == "AGIResultHangup":
            raise AgiHangup("the channel hung up")
        if result.get("status_code") != 200:
            verb = " ".join(line.split()[:2])
            raise AgiCommandError(
                f"{verb}: {result.get('status_code')} {result.get('error', '')}".rstrip()
            )
        return result


@dataclass
class AgiStats:
    requests: int = 0
    answered: int = 0  # the hook ran to the end
    hangups: int = 0  # the caller hung up, or Asterisk closed, during the hook
    failed: int = 0  # the hook raised or Asterisk refused a command
    timed_out: int = 0
    malformed: int = 0  # not an AGI request, or not within the deadline
    unknown_route: int = 0
    refused: int = 0  # over MAX_CONNECTIONS
    wrong_key: int = 0  # a request without the shared key
    recent_ms: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, route: str, ms: float) -> None:
        self.recent_ms.setdefault(route, deque(maxlen=_RECENT)).append(ms)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "requests",
                "answered",
                "hangups",
                "failed",
                "timed_out",
                "malformed",
                "unknown_route",
                "refused",
            )
        }
        out["latency_ms"] = {
            route: {"p50": _quantile(ms, 0.5), "p99": _quantile(ms, 0.99), "n": len(ms)}
            for route, ms in sorted(self.recent_ms.items())
        }
        return out


def _quantile(values: deque[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


class AgiApplication(Application):  # type: ignore[misc]  # panoramisk is untyped
    """panoramisk's FastAGI application with a bounded, deadline-driven connection handler."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        stats: AgiStats,
        *,
        command_timeout_s: float,
        env_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        key: bytes | None = None,
    ) -> None:
        super().__init__(loop=loop)  # defect 7: never let it call get_event_loop()
        self._key = key
        self._timeouts: dict[str, float] = {}
        for name, route in routes.items():
            if not asyncio.iscoroutinefunction(route.handler):
                raise TypeError(f"AGI route {name}: handler must be an async def (panoramisk)")
            self.add_route(name, route.handler)
            self._timeouts[name] = route.timeout_s
        self.stats = stats
        self._command_timeout_s = command_timeout_s
        self._env_timeout_s = env_timeout_s
        self.active: set[asyncio.Task[Any]] = set()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.active) >= MAX_CONNECTIONS:
            self.stats.refused += 1
            writer.transport.abort()
            return
        self.active.add(task)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.requests += 1
        call: AgiCall | None = None
        route = "?"
        outcome = "malformed"
        try:
            async with asyncio.timeout(self._env_timeout_s) as deadline:
                # Defects 1, 2, 5: a bounded read that sees EOF and a deadline (the reader's limit
                # is MAX_ENV_BYTES, see AgiServer.start).
                raw = await reader.readuntil(b"\n\n")
                env = parse_env(raw)
                name = route_of(env)
                handler = self._route.get(name) if name else None
                if name is None or handler is None:
                    outcome = "unknown_route"
                    route = name or "?"
                    log.warning(
                        "AGI request for an unknown hook",
                        request=without_query(env.get("agi_request", "")),
                    )
                    return
                route = name
                if self._key is not None and not hmac.compare_digest(
                    key_of(env).encode(), self._key
                ):
                    outcome = "wrong_key"
                    log.warning("AGI request without the right key; refused", route=name)
                    return
                deadline.reschedule(started + self._timeouts[name])  # defect 3
                request = Request(self, env, reader, writer)
                call = AgiCall(request, env, name, self._command_timeout_s)
                outcome = "failed"
                await handler(call)
                outcome = "answered"
        except TimeoutError:
            outcome = "timed_out" if call is not None else "malformed"
            log.warning("AGI request took too long; dropped", route=route, call_id=_id(call))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, AgiProtocolError) as exc:
            log.warning("malformed AGI request", error=str(exc)[:200])
        except ConnectionError as exc:
            outcome = "hangups" if call is not None else "malformed"
            log.info("AGI connection lost", route=route, error=str(exc))
        except AgiSessionEnded as exc:
            outcome = "hangups"
            log.info("AGI session ended early", route=route, call_id=_id(call), why=str(exc))
        except asyncio.CancelledError:  # defect 4: a shutdown cancels; let it
            outcome = "failed"
            raise
        except Exception:
            log.exception("AGI hook failed", route=route, call_id=_id(call))
        finally:
            self.active.discard(task)
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
            await _close(writer, abort=outcome in ("timed_out", "malformed"))
            elapsed_ms = (loop.time() - started) * 1000
            if call is not None:
                self.stats.observe(route, elapsed_ms)
                ms = round(elapsed_ms, 3)
                log.debug("AGI request", route=route, call_id=call.call_id, outcome=outcome, ms=ms)


def rebind_delay(attempt: int) -> float:
    """The wait before bind retry ``attempt`` (0, 1, ...): 1 s, 2 s, 4 s, then every 5 s."""
    return min(5.0, 2.0 ** min(attempt, 3))


def _id(call: AgiCall | None) -> str:
    return call.call_id if call is not None else ""


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    if abort:
        writer.transport.abort()
        return
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


class AgiServer:
    """The hooks' FastAGI listener: ``await start()`` binds it, ``await close()`` stops it."""

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        *,
        command_timeout_s: float = 0.5,
        env_timeout_s: float = 0.5,
        key: str | None = None,
    ) -> None:
        # FastAGI has no authentication of its own: with a key, a request must carry it
        # (``/entry?key=``), so another local process cannot ask about citizens' numbers.
        self._key = key.encode() if key else None
        self.host = host
        self.port = port
        self.routes = dict(routes)
        self.stats = AgiStats()
        self.state = "stopped"  # stopped | listening | failed | retrying (start_or_retry)
        self.error = ""
        self.retries = 0  # binds retried by start_or_retry
        self._retry: asyncio.Task[None] | None = None
        self._command_timeout_s = command_timeout_s
        self._env_timeout_s = env_timeout_s
        self._app: AgiApplication | None = None
        self._server: asyncio.Server | None = None
        self._started = time.monotonic()

    def add_route(self, name: str, route: Route) -> None:
        """Another capability's hook (e.g. the phone keys); only before :meth:`start`."""
        if self._app is not None:
            raise RuntimeError(f"AGI route {name}: the server is already listening")
        if name in self.routes:
            raise ValueError(f"AGI route {name} is already taken")
        self.routes[name] = route

    @property
    def address(self) -> tuple[str, int]:
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return str(host), int(port)
        return self.host, self.port

    async def start(self) -> None:
        """Listen; raises OSError (state ``failed``) if the address cannot be bound."""
        loop = asyncio.get_running_loop()
        self._app = AgiApplication(
            self.routes,
            self.stats,
            command_timeout_s=self._command_timeout_s,
            env_timeout_s=self._env_timeout_s,
            loop=loop,
            key=self._key,
        )
        try:
            self._server = await asyncio.start_server(
                self._app.handler, self.host, self.port, limit=MAX_ENV_BYTES, reuse_address=True
            )
        except OSError as exc:
            self.state, self.error = "failed", str(exc)
            raise
        self.state, self.error = "listening", ""
        host, port = self.address
        log.info("AGI hooks listening", agi=f"agi://{host}:{port}", hooks=sorted(self.routes))

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        if self._server is not None:
            self._server.close()
        if self._app is not None:
            pending = list(self._app.active)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self.state in ("listening", "retrying"):
            self.state = "stopped"

    @property
    def in_progress(self) -> int:
        """Hook requests being answered now."""
        return len(self._app.active) if self._app is not None else 0

    async def start_or_retry(self, delays: Callable[[int], float] | None = None) -> bool:
        """Listen now if the address can be bound (True); else keep trying in the background,
        waiting ``delays(attempt)`` between tries (state ``retrying``), until it binds or
        :meth:`close` is called: a port still held by a former owner's socket, for instance,
        is taken as soon as it is free, not at the next restart."""
        try:
            await self.start()
            return True
        except OSError:
            pass
        self.state = "retrying"
        self._retry = asyncio.create_task(self._keep_trying(delays or rebind_delay))
        return False

    async def _keep_trying(self, delays: Callable[[int], float]) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(delays(attempt))
            attempt += 1
            self.retries = attempt
            try:
                await self.start()
            except OSError:
                self.state = "retrying"
                log.debug("AGI hooks still not bound", attempts=attempt, error=self.error)
                continue
            log.warning("AGI hooks bound after retrying", attempts=attempt)
            return

    def health(self) -> dict[str, Any]:
        host, port = self.address
        body: dict[str, Any] = {"state": self.state, "address": f"{host}:{port}"}
        if self.error:
            body["error"] = self.error
        if self.retries:
            body["bind_retries"] = self.retries
        body.update(self.stats.summary())
        return body
