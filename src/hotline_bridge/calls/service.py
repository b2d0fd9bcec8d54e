"""Keeps the live call model current and says which calls are busy with a handoff.

Fed every AMI event in arrival order by the switchboard. After each (re)connect the model is
rebuilt from ``CoreShowChannels``: events missed while the link was down cannot be replayed, so
Asterisk's own view is the truth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from hotline_bridge.calls.model import CallModel, LiveCall
from hotline_bridge.core.errors import Conflict, NotFound, Unavailable
from hotline_bridge.core.events import PbxEvent

log = structlog.get_logger(__name__)


class CallService:
    def __init__(self, model: CallModel, clock: Callable[[], float] = time.time) -> None:
        self.model = model
        self._clock = clock
        self._claims: dict[str, str] = {}  # call_id -> ref of the transfer/conference holding it
        # False while the AMI link is down or the model is being rebuilt: no hotkey is acted on
        # against a model that may be stale.
        self.pbx_ready = False
        # The commands' own AMI session (runtime): up unless its link says otherwise.
        self.actions_ready = True
        # Requests waiting for the model to catch up with the PBX (a key pressed the instant
        # the queue bridged the call): woken by the next event instead of polling.
        self._waiters: set[asyncio.Future[None]] = set()

    def on_event(self, event: PbxEvent) -> None:
        self.model.apply(event, self._clock())
        if self._waiters:
            self._wake()

    def changed(self) -> asyncio.Future[None]:
        """A future resolved after the model next changes (the next event or rebuild)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        fut.add_done_callback(self._waiters.discard)
        return fut

    def _wake(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    def rebuild(self, channels: Iterable[PbxEvent]) -> None:
        """Replace the model with ``CoreShowChannel`` events from a fresh listing."""
        self.model.clear()
        now = self._clock()
        for chan in channels:
            self.model.apply(chan, now)
        self._wake()
        log.info(
            "call model rebuilt",
            channels=len(self.model.channels),
            calls=len(self.model.live_calls()),
        )

    # -- finding the call a hotkey is about ------------------------------------------------

    def ensure_ready(self) -> None:
        if not (self.pbx_ready and self.actions_ready):
            raise Unavailable("the PBX link is down; nothing was attempted, try again shortly")

    def call_of_agent(self, agent_id: str) -> LiveCall:
        call = self.model.call_of_agent(agent_id)
        if call is None:
            raise Conflict(f"agent {agent_id} is not on a call")
        return call

    def call_of_agent_channel(self, uniqueid: str) -> LiveCall:
        call = self.model.call_of_agent_channel(uniqueid)
        if call is None:
            raise Conflict("this channel is not an agent's leg of a live call")
        return call

    def call_by_id(self, call_id: str) -> LiveCall:
        call = self.model.call(call_id)
        if call is None:
            raise NotFound(f"no live call {call_id}")
        return call

    # -- one handoff per call at a time ------------------------------------------------------

    def claim(self, call_id: str, ref: str) -> None:
        """Mark the call busy; synchronous, so concurrent presses cannot both pass."""
        holder = self._claims.get(call_id)
        if holder is not None:
            raise Conflict(f"call {call_id} already has a handoff in progress ({holder})")
        self._claims[call_id] = ref

    def release(self, call_id: str, ref: str) -> None:
        if self._claims.get(call_id) == ref:
            del self._claims[call_id]

    def claimed_by(self, call_id: str) -> str | None:
        return self._claims.get(call_id)
