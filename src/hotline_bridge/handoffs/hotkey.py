"""A hotkey press (carry-transfer, three-way): its body, and how it finds the call it is about.

Shared by the transfer and three-way resources; the key acts on the agent's own call only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hotline_bridge.calls.api import CALLS
from hotline_bridge.calls.model import LiveCall, created_after
from hotline_bridge.core.errors import Conflict, Forbidden
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.textfields import SafeLine
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.web.http import require


class HotkeyRequest(BaseModel):
    """Body of a carry-transfer or three-way hotkey press."""

    model_config = ConfigDict(extra="forbid")

    target: Annotated[SafeLine, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    handoff: HandoffInput = Field(default_factory=HandoffInput)
    # The call the phone was on when the key was pressed (its Uniqueid), if it knows it. A press
    # read late (a bridge seconds behind under load) could otherwise find the agent already on
    # the NEXT citizen's call, and hand that citizen over: with it, that is a 409, nothing done.
    call_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None


# A key pressed the instant the queue bridges a call can arrive before the bridge has read that
# BridgeEnter from the AMI socket (the drill measured ~6 in 100 presses at 5 calls/s): the
# by-agent route gives the model this long to catch up before answering "not on a call".
CATCH_UP_S = 0.25
_CATCH_UP_STEP_S = 0.005


async def catch_up(
    seen: Callable[[], bool], changed: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Give the call model up to ``CATCH_UP_S`` to read what the PBX already did (``seen``).

    ``changed`` (``CallService.changed``) wakes the wait on the model's next event, so the
    request goes on the moment the BridgeEnter is read; without it, the model is polled."""
    if seen():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATCH_UP_S
    while not seen():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        if changed is None:
            await asyncio.sleep(min(_CATCH_UP_STEP_S, remaining))
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed(), remaining)


async def resolve_call(
    request: web.Request, expected: str | None = None
) -> tuple[Principal, LiveCall]:
    """The agent's own call, addressed by agent (``/v1/agents/{agent}``) or by call id.

    401 without a valid token; 403 if the token is not that agent's or the call is another
    agent's; 503 if the PBX link is down; 409 if the agent is on no call, or on another call than
    ``expected`` (the body's ``call_id``); 404 for an unknown call.
    """
    principal, call = await _resolve_call(request, expected)
    if expected is not None and call.call_id != expected:
        if created_after(expected, call.call_id):
            # Newer than the call the bridge pairs the agent with: the PBX is ahead of what the
            # bridge has read (under load, by more than the catch-up wait). Not an ended call:
            # the phone may press again.
            raise Conflict(
                f"call {expected} has not reached the bridge yet (it still pairs the agent with "
                f"{call.call_id}): nothing was done, press again"
            )
        raise Conflict(
            f"the agent's call is now {call.call_id}, not {expected} (that call ended): "
            "nothing was done"
        )
    return principal, call


async def _resolve_call(request: web.Request, expected: str | None) -> tuple[Principal, LiveCall]:
    principal = require(request, "agent")
    calls = request.app[CALLS]
    agent_id = request.match_info.get("agent")
    if agent_id is not None and agent_id != principal.agent_id:
        raise Forbidden("an agent may act only on its own calls")
    calls.ensure_ready()
    if agent_id is not None:

        def named() -> LiveCall | None:
            # The call the phone named, if it is this agent's: acted on even while the model
            # still pairs the agent with its previous call (that hang-up not read yet).
            call = calls.model.call(expected) if expected is not None else None
            return call if call is not None and call.agent_id == agent_id else None

        def seen() -> bool:
            if expected is not None:
                return named() is not None
            return calls.model.call_of_agent(agent_id) is not None

        await catch_up(seen, calls.changed)
        calls.ensure_ready()
        return principal, named() or calls.call_of_agent(agent_id)
    call = calls.call_by_id(request.match_info["call_id"])
    if call.agent_id != principal.agent_id:
        raise Forbidden("this call belongs to another agent")
    return principal, call
