"""Mounts work orders received without a call and the 110 duty-line reminders they ring."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.core.reminder import Reminder
from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.workorders import api
from hotline_bridge.workorders.service import ReminderService, WorkOrderService


def install(app: web.Application, deps: Deps) -> WorkOrderService:
    reminders: ReminderService
    submit = deps.pbx.submitter(lambda result: reminders.on_result(result))
    reminders = ReminderService(
        deps.settings.duty_lines,
        caller_id=deps.settings.bridge.site,
        store=deps.store,
        record_url=deps.recorder.url,
        submit=submit,
        calls_per_hour=deps.settings.limits.duty_calls_per_hour,
    )
    reminders.keeper = Keeper(deps.store, "duty_reminder", Reminder, later=deps.recorder.later)
    reminders.restore()
    deps.pbx.listen(reminders)
    service = app[api.WORK_ORDERS] = WorkOrderService(
        deps.handoffs, reminders, deps.catalog, site=deps.site
    )
    app.router.add_routes(api.routes())
    return service
