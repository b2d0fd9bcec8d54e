"""The notice resource (互相通报, aiohttp route table).

- ``POST /v1/notices`` makes a major emergency known to the chosen linkage targets → 201 +
  Location; the body is the matter (the handoff fields) plus ``targets``;
- ``GET /v1/notices/{handoff_id}`` each recipient's delivery (pushed, rung, heard, failed).
"""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.notices.service import NoticeInput, NoticeService
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described

NOTICES = web.AppKey("notices", NoticeService)


@described(
    "Notify linked platforms and duty lines of a major emergency",
    body=NoticeInput,
    ok=201,
    errors=(400, 401, 403, 409, 413, 415, 422),
)
async def notify(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    body = await read_model(request, NoticeInput)
    answer = request.app[NOTICES].notify(principal, body)
    response = json_ok(answer, status=201)
    response.headers["Location"] = f"/v1/notices/{answer['id']}"
    return response


@described("A notice's recipients and their deliveries", errors=(401, 403, 404))
async def get_notice(request: web.Request) -> web.Response:
    require(request, "agent", "supervisor")
    return json_ok(request.app[NOTICES].view(request.match_info["handoff_id"]))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/notices", notify),
        web.get("/v1/notices/{handoff_id}", get_notice),
    ]
