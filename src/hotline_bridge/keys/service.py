"""What a phone key does: the key table, the call or room it was dialled in, the service it runs.

The same services and checks as the HTTP hotkeys (the agent's own call, one handoff at a time,
an existing target); the channel the key was dialled on *is* the agent's leg, so the key acts
on the call the agent is on now, never on a previous one. Every refusal is an outcome, not an
exception: the dialplan beeps at the agent and the call goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.config.settings import PhoneKeySettings
from hotline_bridge.core.errors import Refused
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.handoffs.hotkey import catch_up
from hotline_bridge.handoffs.intake import HandoffInput
from hotline_bridge.handoffs.ports import HandoffRecorder
from hotline_bridge.transfers.service import TransferService
from hotline_bridge.web.limits import RateLimiter

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeyOutcome:
    """``result`` is what the dialplan branches on; ``reason`` a short code for its log line."""

    accepted: bool
    reason: str  # accepted | unknown_key | conflict | not_found | unavailable | invalid | ...
    detail: str = ""
    handoff_id: str | None = None

    @property
    def result(self) -> str:
        return "accepted" if self.accepted else "refused"


class PhoneKeyService:
    def __init__(
        self,
        keys: Sequence[PhoneKeySettings],
        calls: CallService,
        transfers: TransferService,
        conferences: ConferenceService,
        recorder: HandoffRecorder,
        clock: Callable[[], float] = time.time,
        *,
        limiter: RateLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = {k.name: k for k in keys}
        self._calls = calls
        self._transfers = transfers
        self._conferences = conferences
        self._recorder = recorder
        self._clock = clock
        # The same per-agent buckets as the HTTP hotkeys: a phone whose key is stuck, or a
        # softphone replaying DTMF, cannot ring 110 more often than the API would allow.
        self._limiter = limiter
        self._monotonic = monotonic
        # Why every key is refused for now (None: keys act). Set while this replica hands its
        # PBX back to another (runtime.cluster): a key that started a transfer then would be
        # cut by the hand-back, so it beeps and the agent presses again on the new owner.
        self.held: str | None = None

    async def press(self, name: str, uniqueid: str) -> KeyOutcome:
        """The key ``name`` was dialled on the channel ``uniqueid`` (the agent's)."""
        key = self.keys.get(name)
        if key is None:
            outcome = KeyOutcome(False, "unknown_key", f"no phone key {name!r} in the key table")
        elif self.held is not None:
            outcome = KeyOutcome(False, "unavailable", self.held)
        else:
            try:
                outcome = await self._run(key, uniqueid)
            except Refused as exc:
                outcome = KeyOutcome(False, _reason_of(exc), exc.reason)
        log.info(
            "phone key",
            key=name,
            channel=uniqueid,
            result=outcome.result,
            reason=outcome.reason,
            detail=outcome.detail,
            handoff_id=outcome.handoff_id,
        )
        return outcome

    async def _run(self, key: PhoneKeySettings, uniqueid: str) -> KeyOutcome:
        self._calls.ensure_ready()
        if not key.in_call:
            conf = self._conferences.of_agent_channel(uniqueid)
            agent_id = conf.agent_id
            self._take(agent_id)
            if key.action == "add_partner":
                # Multi-party: one more partner into the room, under its own record.
                conf, leg = self._conferences.add_partner(
                    conf.id, agent_id, key.target or "", HandoffInput()
                )
                self._recorder.note(
                    leg.handoff_id,
                    "phone_key",
                    f"{key.name} ({key.digits}) in the room",
                    self._clock(),
                )
                return KeyOutcome(
                    True, "accepted", f"add {leg.target} as {leg.key} to {conf.id}", leg.handoff_id
                )
            if key.action == "leave":
                conf = self._conferences.leave(conf.id, agent_id)
            else:
                conf = self._conferences.cancel(conf.id, agent_id)
            return KeyOutcome(True, "accepted", f"{key.action} {conf.id}", conf.handoff_id)
        call = await self._call_on(uniqueid)
        self._take(call.agent_id)
        target = key.target or ""
        if key.action == "carry_transfer":
            handoff_id = self._transfers.carry_transfer(call, target, HandoffInput()).handoff_id
        else:
            handoff_id = self._conferences.three_way(call, target, HandoffInput()).handoff_id
        # The record is the same as from the API; it says which key started it. The agent
        # completes its fields afterwards (appended events; the pushed snapshot stays frozen).
        self._recorder.note(
            handoff_id,
            "phone_key",
            f"{key.name} ({key.digits}) on the agent's phone",
            self._clock(),
        )
        log.info(
            "phone key acted",
            key=key.name,
            action=key.action,
            target=target,
            agent=call.agent_id,
            citizen=mask_number(call.citizen_number),
        )
        return KeyOutcome(True, "accepted", f"{key.action} to {target}", handoff_id)

    def _take(self, agent_id: str) -> None:
        if self._limiter is not None:
            wait = self._limiter.take(agent_id, self._monotonic())
            if wait is not None:
                raise RateLimited(f"too many keys; try again in {wait:.0f} s")

    async def _call_on(self, uniqueid: str) -> LiveCall:
        # The key can only be dialled once the queue has bridged the call, but the AGI request
        # may overtake that BridgeEnter on the AMI socket: give the model a moment.
        model = self._calls.model
        await catch_up(
            lambda: model.call_of_agent_channel(uniqueid) is not None, self._calls.changed
        )
        return self._calls.call_of_agent_channel(uniqueid)


class RateLimited(Refused):
    status = 429


def _reason_of(exc: Refused) -> str:
    """``Conflict`` → ``conflict``, ``NotFound`` → ``not_found``: a code for the dialplan's log."""
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
