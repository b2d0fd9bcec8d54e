"""The handling-unit resource: the directory, assignment (交办), the queue of matters to assign,
and each unit's own work list and actions (签收 sign, 退回 return, 进展 progress, 办结 close).

- ``GET /v1/units``: the directory;
- ``POST /v1/handoffs/{handoff_id}/assign`` ``{"unit"?, "override_reason"?}`` (agents,
  supervisors) → 201: to the named unit, or to the suggested one; overriding needs a reason;
- ``GET /v1/work-queue`` (agents, supervisors): matters received or given back, to assign;
- ``GET /v1/units/{unit}/work`` (the unit, supervisors): its matters with their limits and flags;
- ``POST /v1/units/{unit}/work/{handoff_id}/{sign|return|progress|close}`` (the unit) → 201.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hotline_bridge.core.errors import NotFound
from hotline_bridge.units.service import UnitService
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described

UNITS = web.AppKey("units", UnitService)
_Text = Annotated[str, Field(min_length=1, max_length=2000)]


class AssignInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,40}$")] | None = None
    override_reason: _Text | None = None


class UnitActionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # return: the reason; progress: what was done; close: the outcome (办理结果, optional)
    text: _Text | None = None


@described("The handling units (承办单位)", errors=(401,))
async def list_units(request: web.Request) -> web.Response:
    require(request)
    units = request.app[UNITS].directory.units.values()
    return json_ok(
        {
            "units": [
                {
                    "id": u.id,
                    "name_zh": u.name_zh,
                    "name_en": u.name_en,
                    "kind": u.kind.value,
                    "jurisdiction": u.jurisdiction.value if u.jurisdiction else None,
                    "categories": sorted(u.categories),
                }
                for u in units
            ]
        }
    )


@described(
    "Assign a received matter to a handling unit (交办)",
    body=AssignInput,
    ok=201,
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
)
async def assign(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    body = await read_model(request, AssignInput)
    handoff_id = request.match_info["handoff_id"]
    answer = request.app[UNITS].assign(principal, handoff_id, body.unit, body.override_reason)
    return json_ok(answer, status=201)


@described("Matters to assign: received, or given back by a unit", errors=(401, 403))
async def work_queue(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    return json_ok({"items": request.app[UNITS].queue(principal)})


@described("A unit's matters: waiting for its 签收, or in progress", errors=(401, 403, 404))
async def unit_work(request: web.Request) -> web.Response:
    principal = require(request, "unit", "supervisor")
    items = request.app[UNITS].work(principal, request.match_info["unit"])
    return json_ok({"items": items})


@described(
    "A unit signs for, gives back, reports progress on or closes a matter",
    body=UnitActionInput,
    ok=201,
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
)
async def unit_action(request: web.Request) -> web.Response:
    principal = require(request, "unit")
    action = request.match_info["action"]
    if action not in ("sign", "return", "progress", "close"):
        raise NotFound(f"no action {action!r}: sign, return, progress or close")
    body = await read_model(request, UnitActionInput)
    m = request.match_info
    ev = request.app[UNITS].act(principal, m["unit"], m["handoff_id"], action, body.text)
    return json_ok(ev, status=201)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/units", list_units),
        web.post("/v1/handoffs/{handoff_id}/assign", assign),
        web.get("/v1/work-queue", work_queue),
        web.get("/v1/units/{unit}/work", unit_work),
        web.post("/v1/units/{unit}/work/{handoff_id}/{action}", unit_action),
    ]
