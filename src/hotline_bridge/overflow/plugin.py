"""Mounts overflow to remote seats: the status route always; with ``[overflow].enabled`` the
service, its PBX feedback (the dialplan's overflow UserEvents) and the queue poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.overflow import api
from hotline_bridge.overflow.service import OverflowService, QueueReader

log = structlog.get_logger(__name__)


def install(app: web.Application, deps: Deps, read_queue: QueueReader) -> OverflowService | None:
    """``read_queue``: the runtime's QueueSummary reader (capabilities never touch AMI)."""
    app.router.add_routes(api.routes())
    settings = deps.settings.overflow
    if not settings.enabled:
        return None
    service: OverflowService
    submit = deps.pbx.submitter(lambda result: service.on_result(result))
    queue = settings.queue or deps.settings.bridge.return_queue
    service = app[api.OVERFLOW] = OverflowService(settings, queue, read_queue, submit)
    deps.pbx.listen(service)

    async def poll_forever() -> None:
        while True:
            await service.poll()  # never raises
            await asyncio.sleep(settings.poll_interval_s)

    async def polling(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(poll_forever(), name="overflow-poll")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(polling)
    log.info("overflow to remote seats enabled", queue=queue, dial=settings.dial)
    return service
