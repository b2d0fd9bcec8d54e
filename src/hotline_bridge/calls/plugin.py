"""Mounts the live call model: ``GET /v1/calls``; the model itself is fed by the switchboard."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.calls import api
from hotline_bridge.calls.model import CallModel
from hotline_bridge.calls.service import CallService
from hotline_bridge.config.settings import Settings
from hotline_bridge.directory.configured import endpoints
from hotline_bridge.directory.model import Directory


def install(app: web.Application, settings: Settings, directory: Directory) -> CallService:
    model = CallModel(
        agent_endpoints={a.endpoint: a.id for a in settings.agents},
        # A call handed over by (or to) a linkage desk arrives on that desk's endpoint.
        partner_endpoints=endpoints(directory),
    )
    calls = app[api.CALLS] = CallService(model)
    app.router.add_routes(api.routes())
    return calls
