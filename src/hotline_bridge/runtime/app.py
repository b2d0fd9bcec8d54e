"""The service shell: builds every capability from settings and serves them on one aiohttp app.

This is the composition root: it lists the capabilities and calls each one's ``install``; each
mounts its own routes and registers its own PBX feedback (see ``hotline_bridge.deps``). Here only
the AMI edge, the interpreter, the switchboard and the ops surface are made, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hotline_bridge import __version__
from hotline_bridge.agi import plugin as agi
from hotline_bridge.agi.plugin import AGI
from hotline_bridge.agi.server import AgiServer
from hotline_bridge.ami import AmiClient, AmiEvent
from hotline_bridge.calls import plugin as calls
from hotline_bridge.calls.api import CALLS
from hotline_bridge.catalog import api as catalog
from hotline_bridge.conferences import plugin as conferences
from hotline_bridge.conferences.machine import Conference
from hotline_bridge.config.settings import ConfigError, HttpSettings, Settings
from hotline_bridge.console import plugin as console
from hotline_bridge.core.principal import Principal
from hotline_bridge.deps import Deps
from hotline_bridge.directory.configured import DirectoryError, configured_directory
from hotline_bridge.followups import plugin as followups
from hotline_bridge.handoffs import plugin as handoffs
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import HandoffStore
from hotline_bridge.keys import plugin as keys
from hotline_bridge.notices import plugin as notices
from hotline_bridge.overflow import plugin as overflow
from hotline_bridge.partners import plugin as partners
from hotline_bridge.partners.api import RECEIVER as PARTNER_RECEIVER
from hotline_bridge.partners.link import PartnerLink
from hotline_bridge.reports import plugin as reports
from hotline_bridge.runtime.interpreter import Interpreter
from hotline_bridge.runtime.metrics import (
    ConnectionsCollector,
    GaugeCollector,
    Metrics,
    OutboxStats,
)
from hotline_bridge.runtime.switchboard import EVENTS, Switchboard
from hotline_bridge.streams import plugin as streams
from hotline_bridge.streams.api import STREAMS
from hotline_bridge.transfers import plugin as transfers
from hotline_bridge.transfers.machine import Transfer
from hotline_bridge.units import plugin as units
from hotline_bridge.web.guard import (
    ConnectionLimits,
    ConnectionTable,
    GuardedSite,
    fit_descriptors,
)
from hotline_bridge.web.http import (
    AUTH,
    BODY_TIMEOUT,
    LIMITER,
    MAX_BODY,
    SESSIONS,
    TokenAuth,
    json_ok,
    make_middlewares,
)
from hotline_bridge.web.limits import RateLimiter
from hotline_bridge.web.openapi import described, openapi_document
from hotline_bridge.web.sessions import ConsoleSessions
from hotline_bridge.workorders import plugin as workorders

log = structlog.get_logger(__name__)

AMI = web.AppKey("ami", AmiClient)
SWITCHBOARD = web.AppKey("switchboard", Switchboard)
METRICS = web.AppKey("metrics", Metrics)
# The OpenAPI document, built on its first request (the routes are fixed once serving starts):
# building it takes ~30 ms of the event loop, too much to spend per anonymous request.
OPENAPI = web.AppKey("openapi", dict[str, bytes])
TICK_S = 1.0  # how often time reaches the machines (their timeouts are seconds or more)
SIGNALS = (signal.SIGINT, signal.SIGTERM)  # a clean stop


@dataclass
class Runtime:
    """The assembled service: what ``serve`` starts and stops."""

    settings: Settings
    ami: AmiClient  # the events (and the list actions that rebuild from them)
    switchboard: Switchboard
    interpreter: Interpreter
    app: web.Application
    partner_link: PartnerLink | None = None
    agi: AgiServer | None = None  # the dialplan's FastAGI hooks (hotline_bridge.agi)
    # The commands' own manager session (Events: off); None: they share ``ami``.
    actions: AmiClient | None = None


def build(settings: Settings, recorder: StoreRecorder) -> Runtime:
    """Assemble the service: the AMI edge, then each capability in turn, then ops."""
    ami = AmiClient(
        settings.ami.host,
        settings.ami.port,
        settings.ami.username,
        settings.ami.secret.get_secret_value(),
        events=EVENTS,
        action_timeout=settings.ami.action_timeout_s,
        ping_interval=settings.ami.ping_interval_s,
        ping_timeout=settings.ami.ping_timeout_s,
    )
    # Commands leave on a session of their own that asks for no events. On one session,
    # Asterisk's thread for it writes every event queued for the bridge between actions: under
    # load (50 calls/s, a PBX at 150 % CPU) the Setvar/BlindTransfer replies waited seconds
    # behind the event stream and timed out (the bench counted ~3,000), while a raw client's
    # event-less session was answered at once.
    actions = AmiClient(
        settings.ami.host,
        settings.ami.port,
        settings.ami.username,
        settings.ami.secret.get_secret_value(),
        events=(),
        event_classes=(),
        action_timeout=settings.ami.action_timeout_s,
        ping_interval=settings.ami.ping_interval_s,
        ping_timeout=settings.ami.ping_timeout_s,
    )
    metrics = Metrics(queues=[settings.bridge.return_queue])
    try:
        configured = configured_directory(settings)
    except DirectoryError as exc:
        raise ConfigError(str(exc)) from None
    for target in configured.downgraded:
        log.warning(
            "sandbox: linked target has no partner link; its records go by reference only",
            target=target,
        )
    app = make_app(settings, ami)
    call_service = calls.install(app, settings, configured.directory)
    interpreter = Interpreter(actions, on_latency=metrics.observe_ami_action)
    switchboard = Switchboard(call_service, interpreter)
    partner = "110" if settings.bridge.site == "12345" else "12345"
    deps = Deps(
        settings=settings,
        pbx=switchboard,
        calls=call_service,
        recorder=recorder,
        handoffs=handoffs.install(
            app,
            recorder,
            partner=partner,
            by_reference=frozenset(
                t.id for t in configured.directory.targets.values() if not t.linked
            ),
            line_readers=configured.line_readers,
        ),
        directory=configured.directory,
    )
    catalog.install(app, recorder.catalog, deps.site)
    transfer_service = transfers.install(app, deps)
    conference_service = conferences.install(app, deps)
    workorders.install(app, deps)
    link = partners.install(app, deps)
    notice_service = notices.install(app, deps)
    if link is not None:
        link.on_delivered = notice_service.pushed  # a notice's receipt from its platform
    agi_server = agi.install(app, deps)
    keys.install(app, deps, transfer_service, conference_service, agi_server)
    reports.install(app, deps)
    supervision = units.install(app, deps)
    followups.install(app, deps)

    # Overflow's look at the citizens' queue: the AMI read stays here (capabilities never
    # touch AMI); any error it raises is one failed poll to the service.
    async def read_queue(queue: str) -> list[AmiEvent]:
        return await ami.send_list("QueueSummary", {"Queue": queue})

    overflowing = overflow.install(app, deps, read_queue)
    console.install(app, deps)

    screens = streams.install(app, deps)
    if PARTNER_RECEIVER in app:
        app[PARTNER_RECEIVER].on_recorded = screens.partner_recorded

    # Observers: metrics and the live streams follow the capabilities; nothing they decide
    # depends on either.
    def transfer_moved(old: Transfer, new: Transfer) -> None:
        metrics.transfer_changed(old, new)
        screens.transfer_changed(old, new)

    def conference_moved(old: Conference, new: Conference) -> None:
        metrics.conference_changed(old, new)
        screens.conference_changed(old, new)

    transfer_service.book.on_change = transfer_moved
    transfer_service.book.on_recorded = metrics.handoff_recorded
    if overflowing is not None:
        overflowing.on_transition = metrics.overflow_changed
        overflowing.on_call = metrics.overflow_call
        overflowing.on_poll = metrics.overflow_polled
    supervision.on_scan = metrics.supervision_scanned
    conference_service.book.on_change = conference_moved
    conference_service.book.on_recorded = metrics.handoff_recorded
    if link is not None:
        link.on_push = metrics.handoff_pushed
        store = recorder.store
        metrics.watch_outbox(lambda: _outbox_stats(store))
    metrics.add_collector(
        GaugeCollector(
            lambda: {
                "ami_ready": float(ami.state == "ready"),
                "ami_reconnects": ami.stats.reconnects,
                "ami_events": ami.stats.events_received,
                "ami_timeouts": ami.stats.actions_timed_out + actions.stats.actions_timed_out,
                "live_calls": len(call_service.model.live_calls()),
                "live_transfers": len(transfer_service.book.live()),
                "live_conferences": len(conference_service.book.live()),
            }
        )
    )
    app[SWITCHBOARD] = switchboard
    app[METRICS] = metrics
    if settings.ops.port is None:
        app.router.add_get("/metrics", serve_metrics)

    ami.subscribe(switchboard.on_event)
    ami.subscribe(metrics.on_pbx_event)

    async def resync() -> None:
        channels = await ami.send_list("CoreShowChannels")
        switchboard.rebuild(channels)

    ami.add_resync_hook(resync)

    async def beat(_: web.Application) -> AsyncIterator[None]:
        # The one clock of the machines: due_at in their state, a Tick from here.
        async def run() -> None:
            while True:
                await asyncio.sleep(TICK_S)
                switchboard.tick(time.time())

        task = asyncio.create_task(run(), name="machine-clock")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(beat)
    ami.add_state_listener(lambda state: None if state == "ready" else switchboard.link_down())

    def actions_state(state: str) -> None:
        # A hotkey is refused (503, nothing recorded) while its commands could not leave.
        call_service.actions_ready = state == "ready"

    actions.add_state_listener(actions_state)
    return Runtime(settings, ami, switchboard, interpreter, app, link, agi_server, actions)


def _outbox_stats(store: HandoffStore) -> OutboxStats:
    depth, oldest = store.outbox_backlog()
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxStats(depth, max(age, 0.0))


def make_app(settings: Settings, ami: AmiClient) -> web.Application:
    """The aiohttp app with auth, error handling and the service-wide routes."""
    tokens = [
        (a.token.get_secret_value(), Principal(a.id, "agent", agent_id=a.id))
        for a in settings.agents
    ] + [(c.token.get_secret_value(), Principal(c.id, c.role)) for c in settings.api_clients]
    limiter = RateLimiter(settings.limits.per_principal_per_s, settings.limits.burst)
    auth, sessions = TokenAuth(tokens), ConsoleSessions()
    app = web.Application(
        middlewares=make_middlewares(auth, limiter, sessions=sessions),
        client_max_size=settings.http.max_body_bytes,
    )
    app[MAX_BODY] = settings.http.max_body_bytes
    app[BODY_TIMEOUT] = settings.http.body_timeout_s
    app[LIMITER] = limiter
    app[AUTH], app[SESSIONS] = auth, sessions
    app[AMI] = ami
    app[OPENAPI] = {}
    app.router.add_routes([web.get("/v1/openapi.json", openapi)])
    if settings.ops.port is None:
        app.router.add_get("/healthz", healthz)
    return app


def make_ops_app(app: web.Application) -> web.Application:
    """The ops listener's app: ``/healthz`` and ``/metrics`` over the main app's state."""
    ops = web.Application()
    ops[AMI], ops[CALLS], ops[METRICS] = app[AMI], app[CALLS], app[METRICS]
    if AGI in app:
        ops[AGI] = app[AGI]
    ops.router.add_routes([web.get("/healthz", healthz), web.get("/metrics", serve_metrics)])
    return ops


def api_runner(app: web.Application, http: HttpSettings) -> web.AppRunner:
    """The API listener's runner, with the slow-client bounds of ``[http]``."""
    return web.AppRunner(
        app,
        access_log=None,
        # Also bounds a connection that never completes its first request's headers (aiohttp
        # arms it at connection time): slow and idle clients leave after idle_timeout_s.
        keepalive_timeout=http.idle_timeout_s,
        # After a refusal that left a body unread (408, 413) aiohttp reads and drops the rest
        # for this long before closing; its 10 s default would let a slow client keep the slot.
        lingering_time=_LINGER_S,
    )


_LINGER_S = 2.0


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS server context of ``[http] tls_cert_file/tls_key_file``, or None (plain)."""
    http = settings.http
    if http.tls_cert_file is None or http.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(http.tls_cert_file, http.tls_key_file)
    return ctx


@described(
    "Liveness and AMI link state",
    public=True,
    other={503: "degraded: the same report, with the AMI link or the call model not ready"},
)
async def healthz(request: web.Request) -> web.Response:
    """200 when the AMI link is ready and the call model rebuilt, 503 otherwise."""
    ami = request.app[AMI]
    calls = request.app[CALLS]
    ready = ami.state == "ready" and calls.pbx_ready and calls.actions_ready
    body = {
        "status": "ok" if ready else "degraded",
        "version": __version__,
        "ami": {"state": ami.state, "reconnects": ami.stats.reconnects},
    }
    # The hooks are advisory (the dialplan goes on without them): reported, not a 503.
    hooks = request.app.get(AGI)
    body["agi"] = hooks.health() if hooks is not None else {"state": "disabled"}
    return json_ok(body, status=200 if ready else 503)


@described("Prometheus metrics", public=True)
async def serve_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@described("This document", public=True)
async def openapi(request: web.Request) -> web.Response:
    cache = request.app[OPENAPI]
    if "body" not in cache:
        cache["body"] = json.dumps(openapi_document(request.app), ensure_ascii=False).encode()
    return web.Response(body=cache["body"], content_type="application/json", charset="utf-8")


async def serve(
    settings: Settings,
    recorder: StoreRecorder,
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[Runtime], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or until ``stop`` is set, when given: one of several PBXes
    served by a cluster replica): connect AMI, serve HTTP, shut down cleanly."""
    runtime = build(settings, recorder)
    http = settings.http
    runner = api_runner(runtime.app, http)
    await runner.setup()
    wanted = ConnectionLimits(http.max_connections, http.max_connections_per_peer)
    limits = fit_descriptors(wanted)
    if limits != wanted:
        log.warning(
            "connection caps lowered to the open-files limit",
            max_connections=limits.max_total,
            max_connections_per_peer=limits.max_per_peer,
        )
    table = ConnectionTable(limits)
    runtime.app[METRICS].add_collector(ConnectionsCollector(lambda: (table.total, table.refused)))
    site = GuardedSite(runner, http.host, http.port, table, ssl_context=tls_context(settings))
    await site.start()
    ops_runner = None
    if settings.ops.port is not None:
        ops_runner = web.AppRunner(make_ops_app(runtime.app), access_log=None)
        await ops_runner.setup()
        await web.TCPSite(ops_runner, settings.ops.host, settings.ops.port).start()
    if runtime.agi is not None and not await runtime.agi.start_or_retry():
        # Meanwhile the dialplan goes on without its hooks (AGISTATUS=FAILURE); everything else
        # works, and the port is retried (a former owner's socket may still hold it).
        log.error("AGI hooks not listening; retrying", error=runtime.agi.error)
    if runtime.actions is not None:
        await runtime.actions.start()
    await runtime.ami.start()
    if runtime.partner_link is not None:
        await runtime.partner_link.start()
    log.info(
        "hotline-bridge serving",
        http=f"{settings.http.host}:{settings.http.port}",
        ami=f"{settings.ami.host}:{settings.ami.port}",
        site=settings.bridge.site,
    )
    if on_started is not None:
        on_started(runtime)
    if stop is None:
        stop = stop_on_signals()
    started = time.monotonic()
    await stop.wait()
    log.info("hotline-bridge stopping", uptime_s=round(time.monotonic() - started, 1))
    runtime.app[STREAMS].hub.close()  # open event streams would hold the HTTP shutdown
    if runtime.agi is not None:
        await runtime.agi.close()
    await runtime.interpreter.drain()
    if runtime.partner_link is not None:
        await runtime.partner_link.close()
    await runtime.ami.close()
    if runtime.actions is not None:
        await runtime.actions.close()
    if ops_runner is not None:
        await ops_runner.cleanup()
    await runner.cleanup()


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
