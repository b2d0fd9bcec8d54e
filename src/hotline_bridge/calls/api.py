"""HTTP resource for live calls, and how a hotkey request finds the call it is about."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Forbidden
from ..handoffs.model import HandoffInput
from ..http import Principal, json_ok, require
from ..openapi import described
from ..privacy import mask_number
from ..textfields import SafeLine
from .model import LiveCall
from .service import CallService

CALLS = web.AppKey("calls", CallService)


class HotkeyRequest(BaseModel):
    """Body of a carry-transfer or three-way hotkey press."""

    model_config = ConfigDict(extra="forbid")

    target: Annotated[SafeLine, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    handoff: HandoffInput = Field(default_factory=HandoffInput)


def resolve_call(request: web.Request) -> tuple[Principal, LiveCall]:
    """The agent's own call, addressed by agent (``/v1/agents/{agent}``) or by call id.

    401 without a valid token; 403 if the token is not that agent's or the call is another
    agent's; 503 if the PBX link is down; 409 if the agent is on no call; 404 for an unknown call.
    """
    principal = require(request, "agent")
    calls = request.app[CALLS]
    agent_id = request.match_info.get("agent")
    if agent_id is not None and agent_id != principal.agent_id:
        raise Forbidden("an agent may act only on its own calls")
    calls.ensure_ready()
    if agent_id is not None:
        return principal, calls.call_of_agent(agent_id)
    call = calls.call_by_id(request.match_info["call_id"])
    if call.agent_id != principal.agent_id:
        raise Forbidden("this call belongs to another agent")
    return principal, call


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
