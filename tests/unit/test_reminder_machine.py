"""The 110 duty-line reminder machine: every transition, duplicates, out-of-order and hang-ups."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.plans import REMINDER_PLAN

from hotline_bridge.core.commands import CommandResult, Hangup, Originate
from hotline_bridge.core.outcomes import Outcome
from hotline_bridge.core.reminder import (
    WATCHDOG_GRACE_S,
    Answered,
    AttemptFailed,
    ChannelGone,
    Reminder,
    ReminderState,
    Tick,
    channel_id,
    start,
    step,
)

PLAN = REMINDER_PLAN
RID = PLAN.reminder_id
T0 = 1_000.0
C1, C2, C3 = (channel_id(RID, n) for n in (1, 2, 3))


def steps(r: Reminder) -> list[tuple[str, int, str]]:
    return [(s.what, s.attempt, s.outcome) for s in r.timeline]


def started() -> Reminder:
    r, _ = start(PLAN, T0)
    return r


def test_start_originates_from_the_platform_number_with_our_channel_id() -> None:
    r, cmds = start(PLAN, T0)
    assert r.state is ReminderState.DIALING and r.attempt == 1 and not r.done
    assert r.due_at == T0 + 20 + WATCHDOG_GRACE_S
    (cmd,) = cmds
    assert isinstance(cmd, Originate)
    assert cmd.ref == RID and cmd.channel_id == C1 == f"{RID}-1"
    assert cmd.dial == "PJSIP/110@duty-110" and cmd.caller_id == "12345"
    assert (cmd.application, cmd.data) == ("Playback", "vm-youhave&digits/1&vm-message")
    assert cmd.timeout_s == 20
    assert cmd.variables["PJSIP_HEADER(add,X-Handoff-Id)"] == PLAN.handoff_id
    assert steps(r) == [("dialing", 1, "")]


def test_a_plan_without_attempts_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        start(replace(PLAN, attempts=0), T0)


def test_answered_then_hang_up_is_delivered() -> None:
    r = started()
    r, cmds = step(r, CommandResult(Originate(RID, "", "", "", "", 1, C1), True), T0 + 0.01)
    assert r.state is ReminderState.DIALING and cmds == []
    r, cmds = step(r, Answered(C1), T0 + 3)
    assert (r.state, r.outcome, r.due_at, cmds) == (
        ReminderState.ANSWERED,
        Outcome.ANSWERED,
        None,
        [],
    )
    r, cmds = step(r, ChannelGone(C1), T0 + 8)
    assert r.state is ReminderState.DELIVERED and r.done and cmds == []
    assert steps(r) == [
        ("dialing", 1, ""),
        ("answered", 1, "answered"),
        ("delivered", 1, "answered"),
    ]


def test_duplicate_answer_and_events_after_the_end_change_nothing() -> None:
    r = started()
    r, _ = step(r, Answered(C1), T0 + 3)
    again, cmds = step(r, Answered(C1), T0 + 3.1)
    assert again == r and cmds == []
    r, _ = step(r, ChannelGone(C1), T0 + 8)
    for late in (Answered(C1), AttemptFailed(C1, "3"), ChannelGone(C1), Tick()):
        assert step(r, late, T0 + 100) == (r, [])


def test_hang_up_before_its_originate_response_waits_for_the_response() -> None:
    r = started()
    r, cmds = step(r, ChannelGone(C1), T0 + 5)
    assert r.state is ReminderState.DIALING and r.gone and cmds == []
    assert step(r, ChannelGone(C1), T0 + 5.1) == (r, [])  # duplicate hang-up
    # Out of order: the answer comes after the hang-up: answered, and already over.
    done, _ = step(r, Answered(C1), T0 + 5.2)
    assert done.state is ReminderState.DELIVERED and done.outcome is Outcome.ANSWERED
    # Or the response says how it failed: that counts, not the hang-up.
    failed, _ = step(r, AttemptFailed(C1, "5"), T0 + 5.2)
    assert failed.state is ReminderState.RETRY_WAIT and failed.outcome is Outcome.BUSY


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [("3", Outcome.NO_ANSWER), ("5", Outcome.BUSY), ("8", Outcome.REJECTED), ("0", Outcome.FAILED)],
)
def test_unanswered_attempt_waits_then_retries(reason: str, outcome: Outcome) -> None:
    r = started()
    r, cmds = step(r, AttemptFailed(C1, reason), T0 + 20)
    assert r.state is ReminderState.RETRY_WAIT and r.outcome is outcome and cmds == []
    assert r.due_at == T0 + 20 + 30
    assert step(r, Tick(), T0 + 49) == (r, [])  # early tick: not yet
    r, cmds = step(r, Tick(), T0 + 50)
    assert r.state is ReminderState.DIALING and r.attempt == 2 and not r.gone
    (cmd,) = cmds
    assert isinstance(cmd, Originate) and cmd.channel_id == C2
    assert steps(r)[-3:] == [
        ("attempt_failed", 1, outcome.value),
        ("retry_scheduled", 2, ""),
        ("dialing", 2, ""),
    ]


def test_events_of_an_earlier_attempt_are_ignored() -> None:
    r = started()
    r, _ = step(r, AttemptFailed(C1, "3"), T0 + 20)
    r, _ = step(r, Tick(), T0 + 50)
    for stale in (AttemptFailed(C1, "3"), Answered(C1), ChannelGone(C1)):
        assert step(r, stale, T0 + 51) == (r, [])
    stale_refusal = CommandResult(Originate(RID, "", "", "", "", 1, C1), False, "x")
    assert step(r, stale_refusal, T0 + 51) == (r, [])
    r, _ = step(r, Answered(C2), T0 + 55)
    assert r.state is ReminderState.ANSWERED and r.attempt == 2


def test_every_attempt_unanswered_ends_unanswered() -> None:
    r = started()
    for n, cid in enumerate((C1, C2, C3), start=1):
        assert r.attempt == n and r.channel_id == cid
        r, _ = step(r, AttemptFailed(cid, "3"), T0 + 100 * n)
        if n < 3:
            r, _ = step(r, Tick(), T0 + 100 * n + 30)
    assert r.state is ReminderState.UNANSWERED and r.done and r.due_at is None
    assert r.outcome is Outcome.NO_ANSWER
    assert [s for s in steps(r) if s[0] in ("dialing", "unanswered")] == [
        ("dialing", 1, ""),
        ("dialing", 2, ""),
        ("dialing", 3, ""),
        ("unanswered", 3, "no_answer"),
    ]
    assert step(r, Tick(), T0 + 1000) == (r, [])


def test_a_single_attempt_plan_gives_up_at_once() -> None:
    r, _ = start(replace(PLAN, attempts=1), T0)
    r, _ = step(r, AttemptFailed(C1, "5"), T0 + 1)
    assert r.state is ReminderState.UNANSWERED and r.outcome is Outcome.BUSY


def test_the_pbx_refusing_the_originate_is_a_failed_attempt() -> None:
    r, (cmd,) = start(PLAN, T0)
    r, cmds = step(r, CommandResult(cmd, False, "Originate failed"), T0 + 0.01)
    assert r.state is ReminderState.RETRY_WAIT and r.outcome is Outcome.FAILED and cmds == []
    assert steps(r)[1] == ("attempt_failed", 1, "failed")


def test_watchdog_fails_an_attempt_whose_result_never_came() -> None:
    r = started()
    assert r.due_at is not None
    assert step(r, Tick(), r.due_at - 1) == (r, [])
    r2, cmds = step(r, Tick(), r.due_at)
    assert r2.state is ReminderState.RETRY_WAIT and r2.outcome is Outcome.UNKNOWN
    assert cmds == [Hangup(RID, C1)]  # make sure it is not still ringing
    # Already hung up: no Hangup to send.
    gone, _ = step(r, ChannelGone(C1), T0 + 1)
    r3, cmds = step(gone, Tick(), r.due_at)
    assert r3.state is ReminderState.RETRY_WAIT and cmds == []


def test_ticks_while_answered_do_nothing() -> None:
    r = started()
    r, _ = step(r, Answered(C1), T0 + 2)
    assert step(r, Tick(), T0 + 10_000) == (r, [])


def test_other_command_results_do_nothing() -> None:
    r = started()
    assert step(r, CommandResult(Hangup(RID, C1), False, "No such channel"), T0 + 1) == (r, [])
    assert step(r, CommandResult(Hangup(RID, C1), True), T0 + 1) == (r, [])


def test_an_attempt_is_on_the_line_while_it_rings_or_plays_not_while_a_retry_waits() -> None:
    # What a hand-back of the PBX waits for: only this process hears how that channel ends.
    r = started()
    assert r.on_the_line
    answered, _ = step(r, Answered(C1), T0 + 3)
    assert answered.on_the_line
    delivered, _ = step(answered, ChannelGone(C1), T0 + 8)
    assert not delivered.on_the_line
    waiting, _ = step(r, AttemptFailed(C1, "3"), T0 + 20)
    assert waiting.state is ReminderState.RETRY_WAIT and not waiting.on_the_line
    again, _ = step(waiting, Tick(), T0 + 50)
    assert again.on_the_line
