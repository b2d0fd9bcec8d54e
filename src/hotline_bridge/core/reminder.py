"""A reminder call (电话提醒): ring a desk, play a short notice, retry if unanswered. Pure.

Used by the 110 duty-line reminder (workorders) and by notices to plain lines (notices).

When 12345 files a police matter that arrived online (WeChat, SMS, web...), the jurisdiction's 110
duty line is rung from the 12345 platform number and hears a short notice that a work order
arrived. An attempt that is not answered (no answer, busy, rejected, failed, never reported) is
tried again ``retry_after_s`` later, ``attempts`` times in all; then the reminder is
``unanswered``.

Each attempt is its own channel whose Uniqueid we choose (``<reminder id>-<attempt>``), so every
``OriginateResponse`` and ``Hangup`` is matched to exactly one attempt: events of an older
attempt, duplicates and events after the end change nothing. Time is an input too: the state says
when it next wants to be woken (``due_at``) and :class:`Tick` is that wake-up: the retry of a
waiting reminder, or the watchdog of an attempt whose result never came (AMI link lost).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from hotline_bridge.core.commands import Command, CommandResult, Hangup, Originate
from hotline_bridge.core.outcomes import Outcome, outcome_of_originate_reason

# How long after the ring timeout an attempt may stay unreported before it counts as failed.
WATCHDOG_GRACE_S = 15.0


class ReminderState(StrEnum):
    DIALING = "dialing"  # an attempt is ringing the duty line
    RETRY_WAIT = "retry_wait"  # the last attempt was not answered; the next is due at due_at
    ANSWERED = "answered"  # the duty desk answered and is hearing the notice
    DELIVERED = "delivered"  # answered, notice played, call over
    UNANSWERED = "unanswered"  # every attempt failed


TERMINAL = frozenset({ReminderState.DELIVERED, ReminderState.UNANSWERED})
# An attempt's channel exists on the PBX: only the process that placed it hears how it ends.
ON_THE_LINE = frozenset({ReminderState.DIALING, ReminderState.ANSWERED})


@dataclass(frozen=True, slots=True)
class ReminderPlan:
    reminder_id: str  # "r-...": the commands' ref
    handoff_id: str
    handoff_url: str
    jurisdiction: str
    dial: str
    caller_id: str  # the platform number the duty desk sees
    notice: str  # Playback() argument
    ring_timeout_s: int
    attempts: int
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Step:
    """One timeline entry; each becomes an event of the work order's record."""

    at: float
    what: str  # dialing, answered, attempt_failed, retry_scheduled, delivered, unanswered
    attempt: int
    outcome: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reminder:
    plan: ReminderPlan
    state: ReminderState
    attempt: int  # the current (or last) attempt, from 1
    due_at: float | None  # when Tick should come next (retry, or the attempt's watchdog)
    outcome: Outcome | None  # answered, or how the last attempt failed
    gone: bool  # the current attempt's channel has hung up
    timeline: tuple[Step, ...]

    @property
    def id(self) -> str:
        return self.plan.reminder_id

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def on_the_line(self) -> bool:
        """An attempt is ringing or playing its notice (a retry waiting is not)."""
        return self.state in ON_THE_LINE

    @property
    def channel_id(self) -> str:
        """The Uniqueid of the current attempt's channel."""
        return channel_id(self.plan.reminder_id, self.attempt)


def channel_id(reminder_id: str, attempt: int) -> str:
    return f"{reminder_id}-{attempt}"


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """``OriginateResponse`` ``Success`` for the channel ``channel_id``."""

    channel_id: str


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """``OriginateResponse`` ``Failure``; ``reason`` is its AST_CONTROL_* code."""

    channel_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelGone:
    """``Hangup`` of the channel ``channel_id`` (or it vanished while the link was down)."""

    channel_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The clock reached ``due_at`` (early or late ticks are harmless)."""


Event = CommandResult | Answered | AttemptFailed | ChannelGone | Tick


# -- transitions -------------------------------------------------------------------------------


def start(plan: ReminderPlan, now: float) -> tuple[Reminder, list[Command]]:
    if plan.attempts < 1:
        raise ValueError("a reminder makes at least one attempt")
    r = Reminder(
        plan=plan,
        state=ReminderState.DIALING,
        attempt=0,
        due_at=None,
        outcome=None,
        gone=False,
        timeline=(),
    )
    return _dial(r, now)


def step(r: Reminder, event: Event, now: float) -> tuple[Reminder, list[Command]]:
    if r.done:
        return r, []
    current = r.channel_id
    match event:
        case CommandResult(command=Originate(channel_id=cid), ok=False, reason=reason):
            # The PBX refused the Originate itself: no channel, no OriginateResponse will come.
            if cid == current and r.state is ReminderState.DIALING:
                return _attempt_failed(r, now, Outcome.FAILED, reason or "originate refused")
        case Answered(channel_id=cid) if cid == current:
            if r.state is ReminderState.DIALING:
                r = _to(r, ReminderState.ANSWERED, now, "answered", Outcome.ANSWERED)
                if r.gone:  # its Hangup overtook the response: the call is already over
                    r = _to(r, ReminderState.DELIVERED, now, "delivered")
                return replace(r, due_at=None), []
        case AttemptFailed(channel_id=cid, reason=reason) if cid == current:
            if r.state is ReminderState.DIALING:
                return _attempt_failed(r, now, outcome_of_originate_reason(reason), reason)
        case ChannelGone(channel_id=cid) if cid == current:
            if r.state is ReminderState.ANSWERED:
                return _to(r, ReminderState.DELIVERED, now, "delivered"), []
            if r.state is ReminderState.DIALING and not r.gone:
                # Hung up before its OriginateResponse: that response still says how it ended.
                return replace(r, gone=True), []
        case Tick() if r.due_at is not None and now >= r.due_at:
            if r.state is ReminderState.RETRY_WAIT:
                return _dial(r, now)
            if r.state is ReminderState.DIALING:
                # Watchdog: the attempt's result never came. Make sure it is not still ringing.
                failed, cmds = _attempt_failed(r, now, Outcome.UNKNOWN, "no result from the PBX")
                hangup: list[Command] = [] if r.gone else [Hangup(r.id, current)]
                return failed, [*hangup, *cmds]
    return r, []


def _dial(r: Reminder, now: float) -> tuple[Reminder, list[Command]]:
    p = r.plan
    attempt = r.attempt + 1
    r = replace(
        r,
        state=ReminderState.DIALING,
        attempt=attempt,
        gone=False,
        due_at=now + p.ring_timeout_s + WATCHDOG_GRACE_S,
        timeline=(*r.timeline, Step(now, "dialing", attempt, detail=p.dial)),
    )
    originate = Originate(
        ref=p.reminder_id,
        dial=p.dial,
        application="Playback",
        data=p.notice,
        caller_id=p.caller_id,
        timeout_s=p.ring_timeout_s,
        channel_id=channel_id(p.reminder_id, attempt),
        variables={
            "PJSIP_HEADER(add,X-Handoff-Id)": p.handoff_id,
            "PJSIP_HEADER(add,Call-Info)": f"<{p.handoff_url}>;purpose=info",
        },
    )
    return r, [originate]


def _attempt_failed(
    r: Reminder, now: float, outcome: Outcome, detail: str
) -> tuple[Reminder, list[Command]]:
    p = r.plan
    r = replace(
        r,
        outcome=outcome,
        timeline=(*r.timeline, Step(now, "attempt_failed", r.attempt, outcome.value, detail)),
    )
    if r.attempt < p.attempts:
        due = now + p.retry_after_s
        r = replace(
            r,
            state=ReminderState.RETRY_WAIT,
            due_at=due,
            timeline=(*r.timeline, Step(now, "retry_scheduled", r.attempt + 1)),
        )
        return r, []
    r = replace(r, state=ReminderState.UNANSWERED, due_at=None)
    r = replace(r, timeline=(*r.timeline, Step(now, "unanswered", r.attempt, outcome.value)))
    return r, []


def _to(
    r: Reminder, state: ReminderState, now: float, what: str, outcome: Outcome | None = None
) -> Reminder:
    return replace(
        r,
        state=state,
        outcome=outcome if outcome is not None else r.outcome,
        timeline=(*r.timeline, Step(now, what, r.attempt, str(outcome or r.outcome or ""))),
    )
