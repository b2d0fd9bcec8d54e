"""Mounts the live event streams: the hub, the observer service, the ticket and SSE routes."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.streams import api
from hotline_bridge.streams.hub import StreamHub
from hotline_bridge.streams.service import StreamService
from hotline_bridge.streams.tickets import Tickets


def install(app: web.Application, deps: Deps) -> StreamService:
    service = app[api.STREAMS] = StreamService(
        StreamHub(), deps.settings, deps.store, call_entry=deps.recorder.call_entry
    )
    app[api.TICKETS] = Tickets()
    deps.pbx.listen(service)
    app.router.add_routes(api.routes())
    return service
