"""Mounts follow-ups: the task list, and (with ``[follow_up].dial``) the automated rating call:
a periodic scan finds what is due in a worker thread, then the calls start on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.followups import api
from hotline_bridge.followups.service import FollowUpService
from hotline_bridge.handoffs.store import open_store

log = structlog.get_logger(__name__)


def install(app: web.Application, deps: Deps) -> FollowUpService:
    policy = deps.settings.follow_up
    service: FollowUpService
    submit = deps.pbx.submitter(lambda result: service.on_result(result))
    service = app[api.FOLLOW_UPS] = FollowUpService(
        deps.store, policy, site=deps.settings.bridge.site, submit=submit
    )
    deps.pbx.listen(service)
    reader = app[api.READER] = api.Reader(lambda: open_store(deps.settings))
    app.router.add_routes(api.routes())

    async def scan_forever() -> None:
        while True:
            try:
                started = service.start_due(await reader.read(service.due))
                if started:
                    log.info("follow-up calls started", count=len(started))
            except Exception:
                log.exception("follow-up scan failed")
            await asyncio.sleep(policy.scan_interval_s)

    async def scanning(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(scan_forever(), name="follow-up-scan")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if policy.dial is not None and policy.scan_interval_s > 0:
        app.cleanup_ctx.append(scanning)
    return service
