"""A bridge replica: standing by for its PBX, or driving it while it holds the PBX's lease.

Standby: the API port forwards every request to the active replica (the lease names its URL),
or answers 503 with ``Retry-After`` while nobody holds it; ``/healthz`` answers here (role
standby). The replica claims the lease every ``ttl/3`` and, once it is granted, becomes the
ordinary service (:func:`~hotline_bridge.runtime.app.serve`): it builds from the shared store,
so the transfers, three-way calls and reminders the last active left in flight are restored and
reconciled with Asterisk's own state, exactly as after a restart.

Active: the lease is renewed every ``ttl/3``. A replica that finds the lease another's, or has
not renewed it for ``2/3 ttl``, exits at once (status 75) rather than drive a PBX that another
replica may now drive: the supervisor restarts it, as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web

from hotline_bridge.config.settings import ClusterSettings, Settings
from hotline_bridge.handoffs.store.lease import Decision, Lease, owner_url
from hotline_bridge.handoffs.store.opening import Leases, open_leases
from hotline_bridge.web.http import error_response

log = structlog.get_logger(__name__)

LOST_LEASE_EXIT = 75  # EX_TEMPFAIL: restart me (as a standby)
# Hop-by-hop headers are the connection's own, never forwarded (RFC 9110 7.6.1).
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip
_FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=None)


class Standby:
    """The API port of a replica that does not hold the lease."""

    def __init__(self, settings: Settings, cluster: ClusterSettings) -> None:
        self.settings = settings
        self.cluster = cluster
        self.lease: Lease | None = None
        self.forwarded = 0
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.http.max_body_bytes)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=_FORWARD_TIMEOUT, auto_decompress=False)
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        http = self.settings.http
        await web.TCPSite(self._runner, http.host, http.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def healthz(self, request: web.Request) -> web.Response:
        owner = owner_url(self.lease, _now())
        return web.json_response(
            {
                "status": "standby",
                "node": _node(self.cluster),
                "replica": self.cluster.replica,
                "active": owner,
            }
        )

    async def forward(self, request: web.Request) -> web.StreamResponse:
        owner = owner_url(self.lease, _now())
        if owner is None or owner.rstrip("/") == self.cluster.url.rstrip("/"):
            response = error_response(
                503, "no active bridge for this PBX right now (a replica is taking over)"
            )
            response.headers["Retry-After"] = "1"
            return response
        assert self._session is not None
        relayed = await relay(self._session, request, owner, "the active bridge")
        if relayed.status != 503 or "Retry-After" not in relayed.headers:
            self.forwarded += 1
        return relayed


async def relay(
    session: aiohttp.ClientSession,
    request: web.Request,
    base_url: str,
    who: str,
    extra: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send ``request`` on to ``base_url`` (same method, path, query, headers but hop-by-hop,
    body) and give back its answer; an event stream is relayed as it comes. 503 with
    ``Retry-After`` if ``who`` does not answer (the request may not have reached it)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers["X-Forwarded-For"] = request.remote or ""
    headers.update(extra or {})
    body = await request.read()
    try:
        upstream = await session.request(
            request.method, base_url.rstrip("/") + request.path_qs, headers=headers, data=body
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("forward failed", to=base_url, error=str(exc))
        response = error_response(503, f"{who} did not answer; try again")
        response.headers["Retry-After"] = "1"
        return response
    async with upstream:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        if upstream.content_type != "text/event-stream":
            # A whole answer, with its length, as the other side gave it.
            return web.Response(status=upstream.status, body=await upstream.read(), headers=headers)
        relayed = web.StreamResponse(status=upstream.status, headers=headers)
        await relayed.prepare(request)
        async for chunk in upstream.content.iter_any():  # a live event stream
            await relayed.write(chunk)
        await relayed.write_eof()
        return relayed


async def run_replica(settings: Settings, serve: Callable[[Settings], Awaitable[None]]) -> None:
    """Stand by until the lease is ours, then serve while renewing it."""
    cluster = settings.cluster
    assert cluster is not None
    leases = await asyncio.to_thread(open_leases, settings)
    every = cluster.lease_ttl_s / 3
    standby = Standby(settings, cluster)
    await standby.start()
    log.info("replica standing by", node=_node(cluster), replica=cluster.replica)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    granted: Decision | None = None
    try:
        while not stop.is_set():
            decision = await _claim(leases, cluster)
            standby.lease = decision.lease if decision is not None else None
            if decision is not None and decision.granted:
                granted = decision
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        await standby.stop()
    if stop.is_set() or granted is None:
        leases.close()
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    log.warning(
        "replica active: it holds the PBX's lease",
        node=_node(cluster),
        replica=cluster.replica,
        epoch=granted.lease.epoch,
        forwarded_while_standby=standby.forwarded,
    )
    # Renewed from a thread of its own, on a connection of its own: a start-up (migrations,
    # restoring what was in flight) or any stall of the event loop must not let the lease lapse
    # while this replica still acts, nor keep it from stopping once the lease is lost.
    leases.close()
    done = threading.Event()
    keeper = threading.Thread(
        target=_keep_lease, args=(settings, cluster, done), name="lease-keeper", daemon=True
    )
    keeper.start()
    try:
        await serve(settings)
    finally:
        done.set()
        await asyncio.to_thread(keeper.join, 5.0)


async def _claim(leases: Leases, cluster: ClusterSettings) -> Decision | None:
    ttl = timedelta(seconds=cluster.lease_ttl_s)
    try:
        return await asyncio.to_thread(
            leases.acquire, _node(cluster), cluster.replica, ttl, cluster.url
        )
    except Exception as exc:  # the store is out of reach: nobody is granted anything
        log.error("lease claim failed", node=_node(cluster), error=str(exc))
        return None


def _keep_lease(settings: Settings, cluster: ClusterSettings, done: threading.Event) -> None:
    """Renew every ``ttl/3``; exit the process the moment the lease is another's, or this
    replica's term lapsed, or it could not be renewed for ``2/3 ttl``. Releases it at a clean
    stop (the standby need not wait for it to lapse)."""
    every = cluster.lease_ttl_s / 3
    ttl = timedelta(seconds=cluster.lease_ttl_s)
    leases = open_leases(settings)
    renewed = time.monotonic()
    try:
        while not done.wait(every):
            try:
                decision: Decision | None = leases.acquire(
                    _node(cluster), cluster.replica, ttl, cluster.url
                )
            except Exception as exc:  # the store is out of reach: no renewal
                log.error("lease renewal failed", node=_node(cluster), error=str(exc))
                decision = None
            if decision is not None and decision.granted and not decision.changed_hands:
                renewed = time.monotonic()
                continue
            if decision is not None or time.monotonic() - renewed >= 2 * every:
                # Another replica may drive the PBX now (or this one's term lapsed and a new
                # one began): stop at once rather than race it.
                log.critical(
                    "lease lost: exiting so that only one replica drives the PBX",
                    node=_node(cluster),
                    replica=cluster.replica,
                    holder=decision.lease.holder if decision else None,
                )
                os._exit(LOST_LEASE_EXIT)
        with contextlib.suppress(Exception):
            leases.release(_node(cluster), cluster.replica)
    finally:
        leases.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _node(cluster: ClusterSettings) -> str:
    """The one PBX of a ``[cluster] node`` replica (several: :mod:`.cluster`)."""
    if cluster.node is None:
        raise ValueError("[cluster] node is not set (several PBXes run as a cluster)")
    return cluster.node
