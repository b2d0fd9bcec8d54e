"""The stream resources: a ticket from an authenticated POST, then the stream (SSE) with it.

- ``POST /v1/agents/{agent}/events/ticket`` (that agent, or a supervisor) → ``{ticket, url}``
- ``GET /v1/agents/{agent}/events?ticket=…`` → ``text/event-stream``: call_offered,
  call_answered, call_ended, call_missed, screen_pop, transfer, three_way, partner_event
- ``POST /v1/wallboard/ticket`` (supervisors) and ``GET /v1/wallboard/events?ticket=…``: a
  ``snapshot`` of every agent first, then agent_state, transfer and three_way events.

Why SSE and not a WebSocket: the flow is one way (the hotkeys stay ordinary POSTs: rate-limited,
CSRF-safe, in the OpenAPI document), the browser's ``EventSource`` reconnects by itself and sends
``Last-Event-ID``, and it is plain HTTP through any proxy. A reconnect replays what was missed
from a bounded buffer, or says ``reset`` when that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from hotline_bridge.core.errors import Forbidden, Invalid, Unavailable
from hotline_bridge.streams.hub import StreamEvent, StreamHub, TooManySubscribers
from hotline_bridge.streams.service import WALLBOARD, StreamService, agent_topic
from hotline_bridge.streams.tickets import Tickets
from hotline_bridge.web.http import json_ok, require
from hotline_bridge.web.openapi import described

STREAMS = web.AppKey("streams", StreamService)
TICKETS = web.AppKey("stream_tickets", Tickets)
HEARTBEAT_S = 15.0  # a comment line keeps proxies and the idle timeout from closing the stream


@described("A short-lived ticket for this agent's event stream", ok=201, errors=(401, 403))
async def agent_ticket(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    agent = request.match_info["agent"]
    if principal.role == "agent" and principal.agent_id != agent:
        raise Forbidden("an agent opens only its own stream")
    return _ticket(request, principal.id, agent_topic(agent), f"/v1/agents/{agent}/events")


@described("A short-lived ticket for the wallboard stream (supervisors)", ok=201, errors=(401, 403))
async def wallboard_ticket(request: web.Request) -> web.Response:
    principal = require(request, "supervisor")
    return _ticket(request, principal.id, WALLBOARD, "/v1/wallboard/events")


def _ticket(request: web.Request, principal: str, topic: str, path: str) -> web.Response:
    tickets = request.app[TICKETS]
    ticket = tickets.issue(principal, topic, time.time())
    return json_ok(
        {"ticket": ticket, "expires_in": tickets.ttl_s, "url": f"{path}?ticket={ticket}"},
        status=201,
    )


@described(
    "This agent's live events (Server-Sent Events; ?ticket=)",
    errors=(401, 403, 422, 503),
    public=True,
)
async def agent_events(request: web.Request) -> web.StreamResponse:
    topic = agent_topic(request.match_info["agent"])
    return await _stream(request, topic, first=None)


@described(
    "Every agent's state, live (Server-Sent Events; ?ticket=)",
    errors=(401, 403, 422, 503),
    public=True,
)
async def wallboard_events(request: web.Request) -> web.StreamResponse:
    service = request.app[STREAMS]
    snapshot = StreamEvent(0, "snapshot", {"agents": service.wallboard()})
    return await _stream(request, WALLBOARD, first=snapshot)


async def _stream(
    request: web.Request, topic: str, first: StreamEvent | None
) -> web.StreamResponse:
    request.app[TICKETS].verify(request.query.get("ticket", ""), topic, time.time())
    last = _last_event_id(request)
    hub: StreamHub = request.app[STREAMS].hub
    try:
        sub, replay = hub.subscribe(topic, last)
    except TooManySubscribers as exc:
        raise Unavailable(str(exc)) from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events through as they come
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        for event in ([first] if first is not None and last is None else []) + replay:
            await response.write(_frame(event))
        while True:
            try:
                queued: StreamEvent | None = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if queued is None:  # dropped: too slow to keep up; the browser reconnects, replays
                break
            await response.write(_frame(queued))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(sub)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise Invalid("Last-Event-ID must be the id of an event of this stream")
    return int(raw)


def _frame(event: StreamEvent) -> bytes:
    data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/agents/{agent}/events/ticket", agent_ticket),
        web.get("/v1/agents/{agent}/events", agent_events),
        web.post("/v1/wallboard/ticket", wallboard_ticket),
        web.get("/v1/wallboard/events", wallboard_events),
    ]
