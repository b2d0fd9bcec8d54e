"""Mounts carry-number transfers: the hotkey routes, the service, its PBX feedback."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.transfers import api
from hotline_bridge.transfers.machine import Transfer
from hotline_bridge.transfers.service import TransferService


def install(app: web.Application, deps: Deps) -> TransferService:
    service: TransferService
    # Results of this service's commands come back to it alone (bound before it exists).
    submit = deps.pbx.submitter(lambda result: service.on_result(result))
    service = app[api.TRANSFERS] = TransferService(
        deps.settings, deps.calls, deps.recorder, submit, directory=deps.directory
    )
    service.book.keeper = Keeper(deps.store, "carry_transfer", Transfer, later=deps.recorder.later)
    service.restore()
    deps.pbx.listen(service)
    app.router.add_routes(api.routes())
    return service
