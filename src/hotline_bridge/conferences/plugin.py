"""Mounts three-way calls: the hotkey, leave and cancel routes, the service, its PBX feedback."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.conferences import api
from hotline_bridge.conferences.machine import Conference
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.machines import Keeper


def install(app: web.Application, deps: Deps) -> ConferenceService:
    service: ConferenceService
    submit = deps.pbx.submitter(lambda result: service.on_result(result))
    service = app[api.CONFERENCES] = ConferenceService(
        deps.settings, deps.calls, deps.recorder, submit, directory=deps.directory
    )
    service.book.keeper = Keeper(deps.store, "three_way", Conference, later=deps.recorder.later)
    service.restore()
    deps.pbx.listen(service)
    app.router.add_routes(api.routes())
    return service
