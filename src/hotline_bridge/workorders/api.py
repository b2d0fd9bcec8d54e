"""The work-order resource for matters received without a call (aiohttp route table).

- ``POST /v1/work-orders`` files a work order (a record without a live call) → 201 + Location of
  its record; one that arrived by WeChat, SMS, web, app or email says so (``channel``), and a
  police matter received so at 12345 also rings the jurisdiction's 110 duty line (``reminder``);
- ``GET /v1/work-orders/{handoff_id}/reminder`` that reminder's state, attempts and timeline.
"""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described
from hotline_bridge.workorders.service import NonVoiceWorkOrderInput, WorkOrderService

WORK_ORDERS = web.AppKey("work_orders", WorkOrderService)


@described(
    "File a work order; one received online (channel) may ring the 110 duty line",
    body=NonVoiceWorkOrderInput,
    ok=201,
    errors=(400, 401, 403, 413, 415, 422),
)
async def file_work_order(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    body = await read_model(request, NonVoiceWorkOrderInput)
    answer = request.app[WORK_ORDERS].file(principal, body)
    response = json_ok(answer, status=201)
    response.headers["Location"] = f"/v1/handoffs/{answer['id']}"
    return response


@described("The 110 duty-line reminder of a work order", errors=(401, 403, 404))
async def get_reminder(request: web.Request) -> web.Response:
    require(request, "agent", "supervisor")
    return json_ok(request.app[WORK_ORDERS].reminder(request.match_info["handoff_id"]))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/work-orders", file_work_order),
        web.get("/v1/work-orders/{handoff_id}/reminder", get_reminder),
    ]
