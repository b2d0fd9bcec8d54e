"""The handoff record resource: ``/v1/handoffs`` (aiohttp route table).

Handlers only parse, authenticate and answer; decisions live in ``service`` and ``views``.
Mounted by ``handoffs.plugin.install``.

- ``GET /v1/handoffs/{handoff_id}`` one record as the caller may see it (confidential reads are
  audited);
- ``POST /v1/handoffs/{handoff_id}/events`` records 签收/退回/status/note/督办/回访/办结 → 201;
- ``GET /v1/handoffs?from=&to=&class=&direction=&status=&jurisdiction=&kind=&limit=&cursor=``
  newest first, numbers masked for all but supervisors;
"""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.service import (
    EventInput,
    HandoffService,
    parse_query,
)
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described

HANDOFFS = web.AppKey("handoffs", HandoffService)
# Its writes behind the loop (PostgreSQL) are waited for before a read shows the record.
WRITES = web.AppKey("handoff_writes", StoreRecorder)


async def _settled(request: web.Request) -> None:
    recorder = request.app.get(WRITES)
    if recorder is not None:
        await recorder.settled()


_ANY_ROLE = ("agent", "supervisor", "partner")


@described("One handoff record as the caller may see it", errors=(401, 403, 404))
async def get_handoff(request: web.Request) -> web.Response:
    # A plain line's desk reads the records handed to it (by reference: X-Handoff-Id).
    principal = require(request, *_ANY_ROLE, "line")
    await _settled(request)
    return json_ok(request.app[HANDOFFS].read(principal, request.match_info["handoff_id"]))


@described(
    "Record acknowledgement, return, status, note, supervision, follow-up or closing",
    body=EventInput,
    ok=201,
    errors=(400, 401, 403, 404, 409, 413, 415, 422),
)
async def append_handoff_event(request: web.Request) -> web.Response:
    principal = require(request, *_ANY_ROLE)
    body = await read_model(request, EventInput)
    await _settled(request)  # the event goes after the bridge's own, as they happened
    event = request.app[HANDOFFS].append(principal, request.match_info["handoff_id"], body)
    return json_ok(event, status=201)


@described("Handoff records, newest first, filtered and paginated", errors=(401, 403, 422))
async def list_handoffs(request: web.Request) -> web.Response:
    principal = require(request, *_ANY_ROLE)
    query = parse_query(dict(request.query))
    await _settled(request)
    return json_ok(request.app[HANDOFFS].list(principal, query))


@described(
    "Who read a confidential record, how and how often (supervisors)", errors=(401, 403, 404)
)
async def handoff_access(request: web.Request) -> web.Response:
    principal = require(request, "supervisor")
    return json_ok(request.app[HANDOFFS].access(principal, request.match_info["handoff_id"]))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/handoffs", list_handoffs),
        web.get("/v1/handoffs/{handoff_id}", get_handoff),
        web.get("/v1/handoffs/{handoff_id}/access", handoff_access),
        web.post("/v1/handoffs/{handoff_id}/events", append_handoff_event),
    ]
