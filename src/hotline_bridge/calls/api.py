"""HTTP resource for live calls, and how a hotkey request finds the call it is about."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.web.http import json_ok, require
from hotline_bridge.web.openapi import described

CALLS = web.AppKey("calls", CallService)


def call_view(call: LiveCall, full_number: bool) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "agent_id": call.agent_id,
        "citizen_number": call.citizen_number if full_number else mask_number(call.citizen_number),
        "bridge_id": call.bridge_id,
        "since": call.since,
    }


@described("Live calls (an agent sees its own)", errors=(401, 403))
async def list_calls(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    calls = request.app[CALLS].model.live_calls()
    if principal.role == "agent":
        # An agent sees its own calls with the number it already hears; others not at all.
        calls = [c for c in calls if c.agent_id == principal.agent_id]
    return json_ok({"calls": [call_view(c, full_number=True) for c in calls]})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/calls", list_calls)]
