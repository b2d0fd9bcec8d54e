"""The service shell: builds every capability from settings and serves them on one aiohttp app.

This is the composition root. Capabilities (calls, transfers, conferences, handoffs) know nothing
of each other's wiring; here the AMI edge, the interpreter, the switchboard and the HTTP resources
are connected, and nothing else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hotline_bridge import __version__
from hotline_bridge.agi.hooks import AgiHooks
from hotline_bridge.agi.server import AgiServer
from hotline_bridge.ami import AmiClient
from hotline_bridge.calls import api as calls_api
from hotline_bridge.calls.model import CallModel
from hotline_bridge.calls.service import CallService
from hotline_bridge.catalog.model import Platform
from hotline_bridge.conferences import api as conferences_api
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.config.settings import Settings
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs import api as handoffs_api
from hotline_bridge.handoffs import screen as handoffs_screen
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import HandoffStore
from hotline_bridge.partners import api as partners_api
from hotline_bridge.partners.api import Receiver
from hotline_bridge.partners.link import PartnerLink
from hotline_bridge.runtime.interpreter import Interpreter
from hotline_bridge.runtime.metrics import GaugeCollector, Metrics, OutboxStats
from hotline_bridge.runtime.switchboard import EVENTS, Switchboard
from hotline_bridge.transfers import api as transfers_api
from hotline_bridge.transfers.service import TransferService
from hotline_bridge.web.http import MAX_BODY, TokenAuth, json_ok, make_middlewares
from hotline_bridge.web.openapi import described, openapi_document
from hotline_bridge.workorders import api as workorders_api
from hotline_bridge.workorders.service import ReminderService, WorkOrderService

log = structlog.get_logger(__name__)

AMI = web.AppKey("ami", AmiClient)
SWITCHBOARD = web.AppKey("switchboard", Switchboard)
METRICS = web.AppKey("metrics", Metrics)
AGI = web.AppKey("agi", AgiServer)


@dataclass
class Bridge:
    settings: Settings
    ami: AmiClient
    switchboard: Switchboard
    interpreter: Interpreter
    app: web.Application
    partner_link: PartnerLink | None = None
    agi: AgiServer | None = None  # the dialplan's FastAGI hooks (hotline_bridge.agi)


def build(settings: Settings, recorder: StoreRecorder) -> Bridge:
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
    model = CallModel(
        agent_endpoints={a.endpoint: a.id for a in settings.agents},
        partner_endpoints=[t.endpoint for t in settings.targets.values() if t.endpoint],
    )
    calls = CallService(model)
    # The interpreter reports results to the switchboard, which exists only after the services
    # that need the interpreter: break the cycle with a late-bound callback.
    switchboard: Switchboard | None = None

    def on_result(result: Any) -> None:
        assert switchboard is not None
        switchboard.on_result(result)

    metrics = Metrics(queues=[settings.bridge.return_queue])
    interpreter = Interpreter(ami, on_result, on_latency=metrics.observe_ami_action)
    transfers = TransferService(
        settings, calls, recorder, interpreter.submit, on_change=metrics.transfer_changed
    )
    conferences = ConferenceService(
        settings, calls, recorder, interpreter.submit, on_change=metrics.conference_changed
    )
    reminders = ReminderService(
        settings.duty_lines,
        caller_id=settings.bridge.site,
        store=recorder.store,
        record_url=recorder.url,
        submit=interpreter.submit,
    )
    switchboard = Switchboard(calls, transfers, conferences, reminders)
    metrics.add_collector(
        GaugeCollector(
            lambda: {
                "ami_ready": float(ami.state == "ready"),
                "ami_reconnects": ami.stats.reconnects,
                "ami_events": ami.stats.events_received,
                "ami_timeouts": ami.stats.actions_timed_out,
                "live_calls": len(calls.model.live_calls()),
                "live_transfers": sum(not t.done for t in transfers.transfers.values()),
                "live_conferences": sum(not c.done for c in conferences.conferences.values()),
            }
        )
    )

    ami.subscribe(switchboard.on_event)
    ami.subscribe(metrics.on_pbx_event)

    async def resync() -> None:
        channels = await ami.send_list("CoreShowChannels")
        switchboard.rebuild(channels)

    ami.add_resync_hook(resync)
    ami.add_state_listener(lambda state: None if state == "ready" else switchboard.link_down())

    app = make_app(settings, ami, calls, transfers, conferences)
    partner = "110" if settings.bridge.site == "12345" else "12345"
    handoffs = recorder.service(partner)
    handoffs_api.install(app, handoffs)
    site = Platform(settings.bridge.site)
    work_orders = WorkOrderService(handoffs, reminders, recorder.catalog, site=site)
    workorders_api.install(app, work_orders)
    app.router.add_routes(handoffs_screen.routes())  # GET /v1/agents/{agent}/current-handoff
    app[SWITCHBOARD] = switchboard
    app[METRICS] = metrics
    app.router.add_get("/metrics", serve_metrics)
    link = None
    if settings.partner is not None:
        store = recorder.store
        partners_api.install(app, Receiver(settings.partner, store))
        link = PartnerLink(settings.partner, store, on_push=metrics.handoff_pushed)
        metrics.watch_outbox(lambda: _outbox_stats(store))
    agi = None
    if settings.agi.enabled:
        hooks = AgiHooks(settings.agi, recorder.store, recorder.catalog)
        timeout = settings.agi.request_timeout_s
        agi = app[AGI] = AgiServer(
            settings.agi.host,
            settings.agi.port,
            hooks.routes(),
            command_timeout_s=timeout,
            env_timeout_s=timeout,
        )
    return Bridge(settings, ami, switchboard, interpreter, app, link, agi)


def _outbox_stats(store: HandoffStore) -> OutboxStats:
    depth, oldest = store.outbox_backlog()
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxStats(depth, max(age, 0.0))


def make_app(
    settings: Settings,
    ami: AmiClient,
    calls: CallService,
    transfers: TransferService,
    conferences: ConferenceService,
) -> web.Application:
    tokens = [
        (a.token.get_secret_value(), Principal(a.id, "agent", agent_id=a.id))
        for a in settings.agents
    ] + [(c.token.get_secret_value(), Principal(c.id, c.role)) for c in settings.api_clients]
    app = web.Application(
        middlewares=make_middlewares(TokenAuth(tokens)),
        client_max_size=settings.http.max_body_bytes,
    )
    app[MAX_BODY] = settings.http.max_body_bytes
    app[AMI] = ami
    app[calls_api.CALLS] = calls
    app[transfers_api.TRANSFERS] = transfers
    app[conferences_api.CONFERENCES] = conferences
    app.router.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/v1/openapi.json", openapi),
            *calls_api.routes(),
            *transfers_api.routes(),
            *conferences_api.routes(),
        ]
    )
    return app


@described("Liveness and AMI link state", errors=(503,), public=True)
async def healthz(request: web.Request) -> web.Response:
    """200 when the AMI link is ready and the call model rebuilt, 503 otherwise."""
    ami = request.app[AMI]
    ready = ami.state == "ready" and request.app[calls_api.CALLS].pbx_ready
    body = {
        "status": "ok" if ready else "degraded",
        "version": __version__,
        "ami": {"state": ami.state, "reconnects": ami.stats.reconnects},
    }
    # The hooks are advisory (the dialplan goes on without them): reported, not a 503.
    body["agi"] = agi.health() if (agi := request.app.get(AGI)) else {"state": "disabled"}
    return json_ok(body, status=200 if ready else 503)


@described("Prometheus metrics", public=True)
async def serve_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@described("This document", public=True)
async def openapi(request: web.Request) -> web.Response:
    return json_ok(openapi_document(request.app))


async def serve(settings: Settings, recorder: StoreRecorder) -> None:
    """Run until SIGINT/SIGTERM: connect AMI, serve HTTP, shut down cleanly."""
    bridge = build(settings, recorder)
    runner = web.AppRunner(bridge.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    await site.start()
    if bridge.agi is not None:
        try:
            await bridge.agi.start()
        except OSError as exc:
            # The dialplan goes on without its hooks (AGISTATUS=FAILURE); everything else works.
            log.error("AGI hooks not listening", error=str(exc))
    await bridge.ami.start()
    if bridge.partner_link is not None:
        await bridge.partner_link.start()
    log.info(
        "hotline-bridge serving",
        http=f"{settings.http.host}:{settings.http.port}",
        ami=f"{settings.ami.host}:{settings.ami.port}",
        site=settings.bridge.site,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await stop.wait()
    log.info("hotline-bridge stopping", uptime_s=round(time.monotonic() - started, 1))
    if bridge.agi is not None:
        await bridge.agi.close()
    await bridge.interpreter.drain()
    if bridge.partner_link is not None:
        await bridge.partner_link.close()
    await bridge.ami.close()
    await runner.cleanup()
