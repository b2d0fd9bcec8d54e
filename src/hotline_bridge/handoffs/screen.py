"""Screen data for the agent who answered a handed-over call (``current-handoff``).

``GET /v1/agents/{agent}/current-handoff``.

The receiving hook (``agi.hooks.receive``) logs the inbound partner channel's Uniqueid with the
X-Handoff-Id it carried (a ``CallEntry`` of kind ``from_partner``); the call model knows which
channels are bridged with the agent. Joining the two names the record on the agent's screen.
:func:`current_entry` is that join, pure; the handler only authenticates and answers.

401 no/unknown token · 403 another agent's · 503 PBX link down · 409 the agent is on no call ·
404 the agent's current call carries no handoff (a citizen's own call, a partner call without a
usable X-Handoff-Id) or its record has not arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from hotline_bridge.calls.api import CALLS
from hotline_bridge.core.errors import Conflict, Forbidden, NotFound
from hotline_bridge.handoffs.api import HANDOFFS
from hotline_bridge.handoffs.hotkey import catch_up
from hotline_bridge.handoffs.store import CallEntry
from hotline_bridge.web.http import json_ok, require
from hotline_bridge.web.openapi import described


def current_entry(
    channel_ids: Iterable[str], lookup: Callable[[str], CallEntry | None]
) -> CallEntry | None:
    """The call log entry, among the channels bridged with the agent, that carried a handoff."""
    for channel_id in channel_ids:
        entry = lookup(channel_id)
        if entry is not None and entry.handoff_id:
            return entry
    return None


@described(
    "The handoff record of the agent's current call (screen data for a handed-over call)",
    errors=(401, 403, 404, 409, 503),
)
async def current_handoff(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    agent_id = request.match_info["agent"]
    if agent_id != principal.agent_id:
        raise Forbidden("an agent may read only its own current call")
    calls = request.app[CALLS]
    calls.ensure_ready()
    # Asked the moment the phone is answered, the model may not have read that BridgeEnter yet.
    await catch_up(lambda: bool(calls.model.peers_of_agent(agent_id)), calls.changed)
    peers = calls.model.peers_of_agent(agent_id)
    if not peers:
        raise Conflict(f"agent {agent_id} is not on a call")
    service = request.app[HANDOFFS]
    entry = current_entry([c.uniqueid for c in peers], service.store.get_call)
    if entry is None or entry.handoff_id is None:
        raise NotFound(f"the current call of agent {agent_id} carries no handoff")
    record = service.read(principal, entry.handoff_id)  # 404 if the record never arrived
    return json_ok(
        {
            "agent_id": agent_id,
            "call_id": entry.call_id,
            "caller_number": entry.caller,  # what the agent's phone shows anyway
            "handoff_id": entry.handoff_id,
            "urgency": entry.urgency,
            "record": record,
        }
    )


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/agents/{agent}/current-handoff", current_handoff)]
