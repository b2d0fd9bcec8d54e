"""One automated follow-up call (回访), pure: ``(call, event, now) -> (call, commands)``.

After a matter is closed the citizen is called from the platform number and asked for one key:
1 satisfied, 2 not satisfied (the dialplan's ``hotline-followup`` context plays the prompt, reads
the key and reports it as ``UserEvent: FollowUpRating``). One :class:`FollowUpCall` is one
attempt; how many attempts and how far apart is the service's business (it reads what earlier
attempts recorded). Time is an input: ``due_at`` + :class:`Tick` end an attempt that got stuck.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from hotline_bridge.core.commands import CallOut, Command, CommandResult

FOLLOWUP_CONTEXT = "hotline-followup"
FOLLOWUP_EXTEN = "s"
# How long a rating may take after the ring timeout before the attempt is given up.
_SLACK_S = 90


class CallState(StrEnum):
    DIALING = "dialing"
    ANSWERED = "answered"
    RATED = "rated"  # a key was pressed: the rating is known
    UNRATED = "unrated"  # answered, but no valid key
    NOT_ANSWERED = "not_answered"  # no answer, busy, failed to call
    LOST = "lost"  # the bridge lost sight of the call (its result is unknown)


TERMINAL = frozenset({CallState.RATED, CallState.UNRATED, CallState.NOT_ANSWERED, CallState.LOST})
RATING_BY_KEY = {"1": "satisfied", "2": "dissatisfied"}


@dataclass(frozen=True, slots=True)
class CallPlan:
    call_id: str  # the commands' ref, and the attempt's identity
    handoff_id: str
    attempt: int
    dial: str  # e.g. PJSIP/13800138000@carrier-out
    caller_id: str  # the platform number
    prompt: str  # sound file played before reading the key
    ring_timeout_s: int
    channel_id: str


@dataclass(frozen=True, slots=True)
class FollowUpCall:
    plan: CallPlan
    state: CallState
    due_at: float  # past this, a Tick ends the attempt
    rating: str | None = None  # satisfied | dissatisfied
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True, slots=True)
class Answered:
    pass


@dataclass(frozen=True, slots=True)
class OriginateFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Rated:
    digit: str
    status: str  # READSTATUS: OK, TIMEOUT, HANGUP...


@dataclass(frozen=True, slots=True)
class ChannelGone:
    pass


@dataclass(frozen=True, slots=True)
class Tick:
    pass


Event = Answered | OriginateFailed | Rated | ChannelGone | Tick | CommandResult


def start(plan: CallPlan, now: float) -> tuple[FollowUpCall, list[Command]]:
    call = FollowUpCall(plan, CallState.DIALING, due_at=now + plan.ring_timeout_s + _SLACK_S)
    return call, [
        CallOut(
            ref=plan.call_id,
            dial=plan.dial,
            context=FOLLOWUP_CONTEXT,
            exten=FOLLOWUP_EXTEN,
            caller_id=plan.caller_id,
            timeout_s=plan.ring_timeout_s,
            channel_id=plan.channel_id,
            variables={
                "FOLLOWUP_ID": plan.call_id,
                "HANDOFF_ID": plan.handoff_id,
                "FOLLOWUP_PROMPT": plan.prompt,
            },
        )
    ]


def step(call: FollowUpCall, event: Event, now: float) -> tuple[FollowUpCall, list[Command]]:
    """Safe to run twice with the same event; nothing moves a finished attempt."""
    if call.done:
        return call, []
    match event:
        case CommandResult(ok=False, unknown=False, reason=reason):
            return replace(call, state=CallState.NOT_ANSWERED, detail=f"refused: {reason}"), []
        case CommandResult():
            return call, []  # accepted (or reply lost): the call's own events decide
        case Answered() if call.state is CallState.DIALING:
            return replace(call, state=CallState.ANSWERED), []
        case OriginateFailed(reason=reason):
            return replace(call, state=CallState.NOT_ANSWERED, detail=reason), []
        case Rated(digit=digit, status=status):
            rating = RATING_BY_KEY.get(digit.strip())
            if rating is None:
                detail = f"no valid key ({status or 'no status'})"
                return replace(call, state=CallState.UNRATED, detail=detail), []
            return replace(call, state=CallState.RATED, rating=rating, detail=f"按键{digit}"), []
        case ChannelGone():
            if call.state is CallState.ANSWERED:
                return replace(call, state=CallState.UNRATED, detail="hung up before a key"), []
            return replace(call, state=CallState.NOT_ANSWERED, detail="no answer"), []
        case Tick() if now >= call.due_at:
            # Events lost: give the attempt up (the dialplan bounds the call itself to 60 s).
            return replace(call, state=CallState.LOST, detail="no result in time"), []
    return call, []
