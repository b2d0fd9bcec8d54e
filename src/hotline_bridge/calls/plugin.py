"""Mounts the live call model: ``GET /v1/calls``; the model itself is fed by the switchboard."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.calls import api
from hotline_bridge.calls.model import CallModel
from hotline_bridge.calls.service import CallService
from hotline_bridge.config.settings import Settings


def install(app: web.Application, settings: Settings) -> CallService:
    model = CallModel(
        agent_endpoints={a.endpoint: a.id for a in settings.agents},
        partner_endpoints=[t.endpoint for t in settings.targets.values() if t.endpoint],
    )
    calls = app[api.CALLS] = CallService(model)
    app.router.add_routes(api.routes())
    return calls
