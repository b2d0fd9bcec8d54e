"""``GET /v1/overflow``: whether new citizen calls overflow to the remote seats now, why, and
the last look at the queue (supervisors)."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.overflow.service import OverflowService
from hotline_bridge.web.http import json_ok, require
from hotline_bridge.web.openapi import described

OVERFLOW = web.AppKey("overflow", OverflowService)


@described("Overflow to remote seats: on or off, why, the last queue sample", errors=(401, 403))
async def overflow_status(request: web.Request) -> web.Response:
    require(request, "supervisor")
    service = request.app.get(OVERFLOW)
    if service is None:
        return json_ok({"enabled": False, "active": False})
    return json_ok(service.status())


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/overflow", overflow_status)]
