"""Mounts notices (互相通报): the routes, the service, its reminder calls' PBX feedback."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.core.reminder import Reminder
from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.notices import api
from hotline_bridge.notices.service import NoticeService


def install(app: web.Application, deps: Deps) -> NoticeService:
    service: NoticeService
    submit = deps.pbx.submitter(lambda result: service.on_result(result))
    service = app[api.NOTICES] = NoticeService(
        deps.settings.notices,
        deps.directory,
        deps.store,
        deps.catalog,
        site=deps.site,
        record_url=deps.recorder.url,
        submit=submit,
    )
    service.keeper = Keeper(deps.store, "notice_call", Reminder, later=deps.recorder.later)
    service.restore()
    deps.pbx.listen(service)
    app.router.add_routes(api.routes())
    return service
