"""HTTP resource for the three-way hotkey, leave, cancel, partners added or dropped (multi-party)
and conference status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline_bridge.conferences.machine import PRIMARY_KEY, Conference, Role
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.core.errors import Forbidden
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.handoffs.hotkey import HotkeyRequest, resolve_call
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described

CONFERENCES = web.AppKey("conferences", ConferenceService)


def conference_view(c: Conference) -> dict[str, Any]:
    return {
        "conference_id": c.id,
        "handoff_id": c.handoff_id,
        "call_id": c.call_id,
        "agent_id": c.agent_id,
        "target": c.target,
        "citizen_number": mask_number(c.citizen_number),
        "state": c.state.value,
        "outcome": c.outcome.value if c.outcome else None,
        "members": sorted(r.value for r in c.members),
        "partners": partners_view(c),
        "timeline": [{"at": e.at, "what": e.what, "detail": e.detail} for e in c.timeline],
    }


def partners_view(c: Conference) -> list[dict[str, Any]]:
    """Every partner leg: the first (``p1``) and the added ones, with their own records."""
    if Role.PARTNER in c.members:
        first = "in"
    elif c.state.value in ("requested", "joining"):
        first = "ringing"
    else:
        first = "gone"
    legs: list[dict[str, Any]] = [
        {
            "leg": PRIMARY_KEY,
            "target": c.target,
            "state": first,
            "handoff_id": c.handoff_id,
        }
    ]
    legs += [
        {
            "leg": leg.key,
            "target": leg.target,
            "state": leg.state.value,
            "outcome": leg.outcome.value if leg.outcome else None,
            "handoff_id": leg.handoff_id,
        }
        for leg in c.added
    ]
    return legs


def _summary(c: Conference) -> dict[str, Any]:
    return {
        "conference_id": c.id,
        "handoff_id": c.handoff_id,
        "call_id": c.call_id,
        "state": c.state.value,
    }


@described(
    "Three-way call: citizen, agent and the target in one room",
    body=HotkeyRequest,
    ok=202,
    errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
)
async def three_way(request: web.Request) -> web.Response:
    require(request, "agent")  # 401 before even reading the body
    body = await read_model(request, HotkeyRequest)
    _principal, call = await resolve_call(request, body.call_id)
    conf = request.app[CONFERENCES].three_way(call, body.target, body.handoff)
    return json_ok(_summary(conf), status=202)


@described("The agent leaves; citizen and partner stay", ok=202, errors=(401, 403, 404, 409))
async def leave(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    conf = request.app[CONFERENCES].leave(request.match_info["conference_id"], principal.agent_id)
    return json_ok(_summary(conf), status=202)


@described(
    "Drop the partner leg; citizen and agent keep talking", ok=202, errors=(401, 403, 404, 409)
)
async def cancel(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    conf = request.app[CONFERENCES].cancel(request.match_info["conference_id"], principal.agent_id)
    return json_ok(_summary(conf), status=202)


@described(
    "Add a partner to a running three-way call (multi-party): routed by the directory for the "
    "call's jurisdiction, its own handoff record, the citizen's number on its call",
    body=HotkeyRequest,
    ok=202,
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
)
async def add_partner(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    body = await read_model(request, HotkeyRequest)
    conf, leg = request.app[CONFERENCES].add_partner(
        request.match_info["conference_id"],
        principal.agent_id,
        body.target,
        body.handoff,
        call_id=body.call_id,
    )
    return json_ok(
        {**_summary(conf), "leg": leg.key, "target": leg.target, "leg_handoff_id": leg.handoff_id},
        status=202,
    )


@described(
    "Drop one partner leg (p1 the first, p2... the added ones); refused if it would leave the "
    "citizen alone",
    ok=202,
    errors=(401, 403, 404, 409),
)
async def drop_partner(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    conf = request.app[CONFERENCES].drop_partner(
        request.match_info["conference_id"], principal.agent_id, request.match_info["leg"]
    )
    return json_ok(_summary(conf), status=202)


@described("A three-way call's state, members and timeline", errors=(401, 403, 404))
async def get_conference(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    conf = request.app[CONFERENCES].get(request.match_info["conference_id"])
    if principal.role == "agent" and conf.agent_id != principal.agent_id:
        raise Forbidden("this conference belongs to another agent")
    return json_ok(conference_view(conf))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/agents/{agent}/three-way", three_way),
        web.post("/v1/calls/{call_id}/three-way", three_way),
        web.post("/v1/conferences/{conference_id}/leave", leave),
        web.post("/v1/conferences/{conference_id}/cancel", cancel),
        web.post("/v1/conferences/{conference_id}/partners", add_partner),
        web.post("/v1/conferences/{conference_id}/partners/{leg}/drop", drop_partner),
        web.get("/v1/conferences/{conference_id}", get_conference),
    ]
