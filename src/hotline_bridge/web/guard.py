"""The listener's guard: how many connections the API holds, and how many from one peer.

aiohttp bounds a request's size and (with ``keepalive_timeout``) how long a connection may sit
without a whole request, but not how many sockets it keeps open: a buggy softphone reconnect loop
or a slow-client attack (slowloris) could hold every file descriptor and starve the agents' hotkeys.
The guard admits a connection only under a total cap and a per-peer cap, and answers the rest at
once with a 503 and ``Connection: close`` instead of letting them queue.

The counting is pure (:class:`ConnectionTable`); :class:`GuardedSite` is the thin asyncio edge
that puts the table in front of aiohttp's protocol factory.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_total: int
    max_per_peer: int


# Descriptors the bridge needs besides API connections: AMI, AGI, the store, the partner link,
# the ops listener, logs.
FD_RESERVE = 128


def fit_descriptors(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise the soft open-files limit to the hard one if needed, and keep the caps under it.

    A cap above what the process may open would turn the guard's clean 503 into accept()
    errors (EMFILE) that stall the listener for everyone.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_total + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return limits
    total = max(soft - FD_RESERVE, 1)
    return ConnectionLimits(total, min(limits.max_per_peer, total))


class ConnectionTable:
    """Open connections per peer address, under the limits."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: Counter[str] = Counter()
        self.total = 0
        self.refused = 0

    def admit(self, peer: str) -> bool:
        if self.total >= self.limits.max_total or self._open[peer] >= self.limits.max_per_peer:
            self.refused += 1
            return False
        self._open[peer] += 1
        self.total += 1
        return True

    def release(self, peer: str) -> None:
        if self._open[peer] <= 0:
            return  # released twice: never go negative
        self._open[peer] -= 1
        if not self._open[peer]:
            del self._open[peer]
        self.total -= 1

    def open_from(self, peer: str) -> int:
        return self._open[peer]


def _refusal() -> bytes:
    body = json.dumps(
        {"error": {"status": 503, "reason": "too many open connections; retry shortly"}}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _refusal()


class _GuardedProtocol(asyncio.Protocol):
    """Admits the connection through the table, then hands every callback to aiohttp's handler."""

    __slots__ = ("_factory", "_inner", "_peer", "_table")

    def __init__(self, table: ConnectionTable, factory: Callable[[], asyncio.Protocol]) -> None:
        self._table = table
        self._factory = factory
        self._inner: asyncio.Protocol | None = None
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if not self._table.admit(peer):
            # Duck-typed: uvloop's transports do not inherit from asyncio's classes.
            write = getattr(transport, "write", None)
            if write is not None:
                write(REFUSAL)
            transport.close()
            return
        self._peer = peer
        self._inner = self._factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._table.release(self._peer)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections pass the guard before aiohttp sees them."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        table: ConnectionTable,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self.table = table

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        table = self.table
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedProtocol(table, server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )
