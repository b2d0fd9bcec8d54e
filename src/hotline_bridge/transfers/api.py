"""HTTP resource for the carry-transfer hotkey and transfer status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline_bridge.core.errors import Forbidden
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.handoffs.hotkey import HotkeyRequest, resolve_call
from hotline_bridge.transfers.machine import Transfer
from hotline_bridge.transfers.service import TransferService
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described

TRANSFERS = web.AppKey("transfers", TransferService)


def transfer_view(t: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": t.id,
        "handoff_id": t.handoff_id,
        "call_id": t.call_id,
        "agent_id": t.agent_id,
        "target": t.target,
        "citizen_number": mask_number(t.citizen_number),
        "state": t.state.value,
        "outcome": t.outcome.value if t.outcome else None,
        "returned_to": t.returned_to or None,
        "timeline": [{"at": e.at, "what": e.what, "detail": e.detail} for e in t.timeline],
    }


@described(
    "Carry-number transfer of the agent's current call to a target",
    body=HotkeyRequest,
    ok=202,
    errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
)
async def carry_transfer(request: web.Request) -> web.Response:
    require(request, "agent")  # 401 before even reading the body
    body = await read_model(request, HotkeyRequest)
    _principal, call = await resolve_call(request, body.call_id)
    transfer = request.app[TRANSFERS].carry_transfer(call, body.target, body.handoff)
    return json_ok(
        {
            "transfer_id": transfer.id,
            "handoff_id": transfer.handoff_id,
            "call_id": transfer.call_id,
            "state": transfer.state.value,
        },
        status=202,
    )


@described("A transfer's state, outcome and timeline", errors=(401, 403, 404))
async def get_transfer(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    transfer = request.app[TRANSFERS].get(request.match_info["transfer_id"])
    if principal.role == "agent" and transfer.agent_id != principal.agent_id:
        raise Forbidden("this transfer belongs to another agent")
    return json_ok(transfer_view(transfer))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/agents/{agent}/carry-transfer", carry_transfer),
        web.post("/v1/calls/{call_id}/carry-transfer", carry_transfer),
        web.get("/v1/transfers/{transfer_id}", get_transfer),
    ]
