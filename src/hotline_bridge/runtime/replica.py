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

A replica of several PBXes (:mod:`.cluster`) works the same way with a lease per PBX, and shares
this module's pieces: the API port in front (:class:`ReplicaPort`), forwarding (:func:`relay`),
claiming (:func:`claim`) and keeping (:class:`LeaseKeeper`) leases.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web

from hotline_bridge.config.settings import ClusterSettings, Settings
from hotline_bridge.handoffs.store.lease import Decision, Lease, owner_url
from hotline_bridge.handoffs.store.opening import Leases, open_leases
from hotline_bridge.runtime.app import SIGNALS, stop_on_signals
from hotline_bridge.web.http import error_response

log = structlog.get_logger(__name__)

LOST_LEASE_EXIT = 75  # EX_TEMPFAIL: restart me (as a standby)
# Hop-by-hop headers are the connection's own, never forwarded (RFC 9110 7.6.1).
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip
_FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=None)


class ReplicaPort:
    """A replica's own API port (``[http]``): the app in front of the service(s) it runs or
    forwards to, and the client session requests are forwarded with (:func:`relay`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the port is not started"
        return self._session

    async def start(self, routes: Iterable[web.RouteDef]) -> None:
        app = web.Application(client_max_size=self._settings.http.max_body_bytes)
        app.add_routes(routes)
        self._session = aiohttp.ClientSession(timeout=_FORWARD_TIMEOUT, auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        http = self._settings.http
        await web.TCPSite(self._runner, http.host, http.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def retry_later(reason: str) -> web.Response:
    """503 with ``Retry-After``: nothing was attempted (or may not have reached anyone)."""
    response = error_response(503, reason)
    response.headers["Retry-After"] = "1"
    return response


class Standby:
    """The API port of a replica that does not hold the lease."""

    def __init__(self, settings: Settings, cluster: ClusterSettings) -> None:
        self.cluster = cluster
        self.lease: Lease | None = None
        self.forwarded = 0
        self.port = ReplicaPort(settings)

    async def start(self) -> None:
        await self.port.start(
            [web.get("/healthz", self.healthz), web.route("*", "/{tail:.*}", self.forward)]
        )

    async def stop(self) -> None:
        await self.port.stop()

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
            return retry_later("no active bridge for this PBX right now (a replica is taking over)")
        relayed = await relay(self.port.session, request, owner, "the active bridge")
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
        return retry_later(f"{who} did not answer; try again")
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
    node = _node(cluster)
    leases = await asyncio.to_thread(open_leases, settings)
    every = cluster.lease_ttl_s / 3
    standby = Standby(settings, cluster)
    stop = stop_on_signals()
    granted: Decision | None = None
    listening = False
    try:
        while not stop.is_set():
            decision = await claim(leases, node, cluster)
            standby.lease = decision.lease if decision is not None else None
            if decision is not None and decision.granted:
                granted = decision
                break
            if not listening:
                # The port opens once the lease has been read: a standby never answers that
                # there is no active replica only because it has not looked yet.
                await standby.start()
                listening = True
                log.info("replica standing by", node=node, replica=cluster.replica)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        if listening:
            await standby.stop()
    if stop.is_set() or granted is None:
        leases.close()
        return
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:  # the service handles them from here
        loop.remove_signal_handler(sig)
    log.warning(
        "replica active: it holds the PBX's lease",
        node=node,
        replica=cluster.replica,
        epoch=granted.lease.epoch,
        forwarded_while_standby=standby.forwarded,
    )
    leases.close()
    keeper = LeaseKeeper(settings, cluster)
    keeper.add(node)
    keeper.start()
    try:
        await serve(settings)
    finally:
        await asyncio.to_thread(keeper.stop)


async def claim(leases: Leases, node: str, cluster: ClusterSettings) -> Decision | None:
    """Ask for ``node``'s lease (or renew it); None when the store cannot be asked."""
    ttl = timedelta(seconds=cluster.lease_ttl_s)
    try:
        return await asyncio.to_thread(leases.acquire, node, cluster.replica, ttl, cluster.url)
    except Exception as exc:  # the store is out of reach: nobody is granted anything
        log.error("lease claim failed", node=node, error=str(exc))
        return None


class LeaseKeeper:
    """Renews this replica's leases every ``ttl/3`` from a thread of its own, on a connection of
    its own: a start-up (migrations, restoring what was in flight) or any stall of the event loop
    must not let a lease lapse while this replica still acts, nor keep it from stopping once a
    lease is lost. The moment one is another's, or this replica's term lapsed, or it could not
    be renewed for ``2/3 ttl``, the process exits (status 75): another replica may drive that
    PBX now. A clean :meth:`stop` releases them (the others need not wait for them to lapse).

    A cluster replica also keeps its presence lease here (:meth:`present_as`): renewed with the
    PBXes' leases, so it lapses when they do; losing it stops nothing (it only tells the others
    this replica is alive). :meth:`drop` stops keeping a PBX's lease before a hand-back."""

    def __init__(self, settings: Settings, cluster: ClusterSettings) -> None:
        self._settings = settings
        self._cluster = cluster
        self._renewed: dict[str, float] = {}  # node -> when its lease was last granted
        self._presence: str | None = None  # this replica's presence lease, if it keeps one
        self._lock = threading.Lock()
        self._renewing = threading.Lock()  # held while a node's lease is renewed (see drop)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, node: str) -> None:
        """Keep ``node``'s lease, just granted."""
        with self._lock:
            self._renewed[node] = time.monotonic()

    def present_as(self, resource: str) -> None:
        """Renew ``resource`` (already granted) with the PBXes' leases; never exit over it."""
        self._presence = resource

    def drop(self, node: str) -> None:
        """Stop renewing ``node``'s lease (blocks while it is being renewed): after this the
        lease may be released without this keeper taking it again (which would exit)."""
        with self._renewing, self._lock:
            self._renewed.pop(node, None)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5.0)

    def _nodes(self) -> dict[str, float]:
        with self._lock:
            return dict(self._renewed)

    def _run(self) -> None:
        cluster = self._cluster
        every = cluster.lease_ttl_s / 3
        ttl = timedelta(seconds=cluster.lease_ttl_s)
        leases = open_leases(self._settings)
        try:
            while not self._done.wait(every):
                for node in self._nodes():
                    with self._renewing:
                        self._renew(leases, node, ttl, every)
                if self._presence is not None:
                    try:
                        leases.acquire(self._presence, cluster.replica, ttl, cluster.url)
                    except Exception as exc:  # the others may think this replica gone
                        log.warning("presence renewal failed", error=str(exc))
            for node in [*self._nodes(), *filter(None, [self._presence])]:
                with suppress(Exception):
                    leases.release(node, cluster.replica)
        finally:
            leases.close()

    def _renew(self, leases: Leases, node: str, ttl: timedelta, every: float) -> None:
        cluster = self._cluster
        renewed = self._nodes().get(node)
        if renewed is None:  # dropped meanwhile (handed back)
            return
        try:
            d: Decision | None = leases.acquire(node, cluster.replica, ttl, cluster.url)
        except Exception as exc:  # the store is out of reach: no renewal
            log.error("lease renewal failed", node=node, error=str(exc))
            d = None
        if d is not None and d.granted and not d.changed_hands:
            self.add(node)
            return
        if d is not None or time.monotonic() - renewed >= 2 * every:
            # Another replica may drive the PBX now (or this one's term lapsed and a new one
            # began): stop at once rather than race it.
            log.critical(
                "lease lost: exiting so that only one replica drives the PBX",
                node=node,
                replica=cluster.replica,
                holder=d.lease.holder if d else None,
            )
            os._exit(LOST_LEASE_EXIT)


def _now() -> datetime:
    return datetime.now(UTC)


def _node(cluster: ClusterSettings) -> str:
    """The one PBX of a ``[cluster] node`` replica (several: :mod:`.cluster`)."""
    if cluster.node is None:
        raise ValueError("[cluster] node is not set (several PBXes run as a cluster)")
    return cluster.node
