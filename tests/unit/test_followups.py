"""Follow-up calls, pure: one attempt's machine, when the next attempt is due, and who may be
called back at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hotline_bridge.catalog import load_catalog
from hotline_bridge.config.settings import FollowUpSettings
from hotline_bridge.core.commands import CallOut, CommandResult
from hotline_bridge.followups import machine
from hotline_bridge.followups.machine import CallPlan, CallState
from hotline_bridge.followups.service import (
    STARTED,
    callback_number,
    due_attempt,
    may_call_back,
    owed,
)
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    EventKind,
    HandoffKind,
    HandoffRecord,
    event,
)

PLAN = CallPlan(
    call_id="f-1",
    handoff_id="h-" + "a" * 26,
    attempt=1,
    dial="PJSIP/13800138000@carrier-out",
    caller_id="12345",
    prompt="beep",
    ring_timeout_s=30,
    channel_id="f-1-1",
)


def test_an_attempt_calls_into_the_followup_context_from_the_platform_number() -> None:
    call, (cmd,) = machine.start(PLAN, 100.0)
    assert call.state is CallState.DIALING and call.due_at == 100 + 30 + 90
    assert isinstance(cmd, CallOut)
    assert (cmd.context, cmd.exten, cmd.caller_id, cmd.channel_id) == (
        "hotline-followup", "s", "12345", "f-1-1",
    )  # fmt: skip
    assert cmd.variables["FOLLOWUP_ID"] == "f-1" and cmd.variables["FOLLOWUP_PROMPT"] == "beep"


@pytest.mark.parametrize(
    ("events", "state", "rating"),
    [
        ([machine.Answered(), machine.Rated("1", "OK")], CallState.RATED, "satisfied"),
        ([machine.Answered(), machine.Rated("2", "OK")], CallState.RATED, "dissatisfied"),
        ([machine.Answered(), machine.Rated("", "TIMEOUT")], CallState.UNRATED, None),
        ([machine.Answered(), machine.Rated("7", "OK")], CallState.UNRATED, None),
        ([machine.Answered(), machine.ChannelGone()], CallState.UNRATED, None),
        ([machine.ChannelGone()], CallState.NOT_ANSWERED, None),
        ([machine.OriginateFailed("reason 5")], CallState.NOT_ANSWERED, None),
        # The rating is in before the hang-up; late and repeated events change nothing.
        (
            [
                machine.Answered(),
                machine.Rated("1", "OK"),
                machine.ChannelGone(),
                machine.Rated("2", "OK"),
            ],
            CallState.RATED,
            "satisfied",
        ),
    ],
)
def test_one_attempt_ends_as_its_events_say(
    events: list[machine.Event], state: CallState, rating: str | None
) -> None:
    call, _ = machine.start(PLAN, 0.0)
    for e in events:
        call, cmds = machine.step(call, e, 1.0)
        assert cmds == []
    assert (call.state, call.rating) == (state, rating)


def test_a_refused_originate_ends_the_attempt_but_a_lost_reply_waits_for_events() -> None:
    call, (cmd,) = machine.start(PLAN, 0.0)
    lost, _ = machine.step(call, CommandResult(cmd, False, "timeout", unknown=True), 1.0)
    assert lost.state is CallState.DIALING
    refused, _ = machine.step(call, CommandResult(cmd, False, "Permission denied"), 1.0)
    assert refused.state is CallState.NOT_ANSWERED


def test_a_stuck_attempt_is_given_up_at_its_due_time_only() -> None:
    call, _ = machine.start(PLAN, 0.0)
    assert machine.step(call, machine.Tick(), call.due_at - 1)[0] is call
    assert machine.step(call, machine.Tick(), call.due_at)[0].state is CallState.LOST


# -- who, and when ------------------------------------------------------------------------------

CLOSED_AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
POLICY = FollowUpSettings(
    dial="PJSIP/{number}@carrier-out", delay_after_close_s=3600, attempts=2, retry_after_s=1800
)


def closed(
    *, confidential: bool = False, consent: bool | None = None, tries: int = 0
) -> HandoffRecord:
    base = new_handoff(
        HandoffInput(
            category="dispute.neighbour",
            confidential=confidential,
            follow_up_consent=consent,
            callback="13912345678",
        ),
        handoff_id="h-" + "b" * 26,
        kind=HandoffKind.WORK_ORDER,
        direction=Direction.TO_110,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=load_catalog(),
        now=CLOSED_AT - timedelta(days=1),
    )
    life = [event(EventKind.CLOSED, actor=Actor.system(), at=CLOSED_AT)]
    for n in range(tries):
        at = CLOSED_AT + timedelta(hours=1, minutes=30 * n)
        life.append(event(EventKind.CALL_PROGRESS, actor=Actor.system(), at=at, what=STARTED))
    events = [e.model_copy(update={"seq": i}) for i, e in enumerate(life, start=2)]
    return HandoffRecord(id=base.id, snapshot=base.snapshot, events=(*base.events, *events))


def test_consent_rules() -> None:
    assert may_call_back(closed())
    assert not may_call_back(closed(consent=False))
    assert not may_call_back(closed(confidential=True))
    assert may_call_back(closed(confidential=True, consent=True))
    assert callback_number(closed()) == "13912345678"  # the callback number first


def test_attempts_are_due_after_the_delay_then_spaced_then_stop() -> None:
    o = owed(closed())
    assert o is not None and o.attempts == 0
    assert due_attempt(o, POLICY, CLOSED_AT + timedelta(minutes=59)) is None
    assert due_attempt(o, POLICY, CLOSED_AT + timedelta(hours=1)) == 1
    once = owed(closed(tries=1))  # tried at +1 h
    assert once is not None
    assert due_attempt(once, POLICY, CLOSED_AT + timedelta(hours=1, minutes=29)) is None
    assert due_attempt(once, POLICY, CLOSED_AT + timedelta(hours=1, minutes=30)) == 2
    twice = owed(closed(tries=2))
    assert twice is not None and due_attempt(twice, POLICY, CLOSED_AT + timedelta(days=3)) is None
    no_dial = FollowUpSettings()
    assert due_attempt(o, no_dial, CLOSED_AT + timedelta(days=1)) is None
    assert (
        due_attempt(owed(closed(confidential=True)), POLICY, CLOSED_AT + timedelta(days=1)) is None
    )  # type: ignore[arg-type]


def test_only_closed_records_without_a_rating_are_owed() -> None:
    rated = closed()
    follow = event(
        EventKind.FOLLOW_UP, actor=Actor.system(), at=CLOSED_AT, satisfaction="satisfied"
    )
    rated = rated.model_copy(
        update={"events": (*rated.events, follow.model_copy(update={"seq": len(rated.events) + 1}))}
    )
    assert owed(rated) is None


def test_the_dial_template_is_checked() -> None:
    with pytest.raises(ValueError, match="dial"):
        FollowUpSettings(dial="PJSIP/110@duty")  # no {number}
    with pytest.raises(ValueError, match="dial"):
        FollowUpSettings(dial="PJSIP/{number}@x,60,tT")  # no Dial() options smuggled in
