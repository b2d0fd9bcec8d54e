"""The three machines under hostile event sequences (hypothesis): duplicates, any order, hang-ups
anywhere, lost or refused replies, time jumping ahead. Whatever comes, a machine never raises,
never rewrites its past (the timeline only grows), never leaves a terminal state, only ever
addresses channels of its own call, and is terminal after the citizen hangs up (transfers,
three-way calls) or once its time has run out (transfers, reminders)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.plans import CARRY_PLAN, THREE_WAY_PLAN
from tests.unit.test_reminder_machine import PLAN as REMINDER_PLAN

from hotline_bridge.conferences import machine as cm
from hotline_bridge.conferences.machine import Role
from hotline_bridge.core import reminder as wm
from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.transfers import machine as tm

# Deterministic in CI: the same examples every run (a failure found once is a regression test).
PROFILE = settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def channels_of(cmd: Command) -> set[str]:
    """Every channel a command addresses."""
    names = set()
    for attr in ("channel", "extra_channel"):
        value = getattr(cmd, attr, None)
        if value:
            names.add(value)
    return names


def grows(old: Any, new: Any) -> bool:
    return new.timeline[: len(old.timeline)] == old.timeline


# -- carry transfers -------------------------------------------------------------------------------

DIALSTATUS = st.sampled_from(
    ["ANSWER", "BUSY", "NOANSWER", "CONGESTION", "CHANUNAVAIL", "CANCEL", "junk"]
)


def transfer_events(commands: list[Command]) -> st.SearchStrategy[Any]:
    results = st.builds(
        CommandResult,
        st.sampled_from(commands),
        st.booleans(),
        st.sampled_from(["", "refused", "timeout"]),
        st.booleans(),
    )
    return st.one_of(
        results,
        st.just(tm.PartnerDialing()),
        st.just(tm.PartnerRinging()),
        st.builds(tm.PartnerResult, DIALSTATUS),
        st.builds(tm.CitizenReturned, st.sampled_from(["1001", "1002"])),
        st.just(tm.CitizenHungUp()),
        st.builds(
            tm.Reconciled,
            st.sampled_from(["gone", "dialplan", "with_agent", "with_partner"]),
            st.sampled_from(["", "1001", "1002"]),
            st.booleans(),
        ),
        st.just(tm.Expired()),
        st.just(tm.Tick()),
    )


_, START = tm.start(CARRY_PLAN, 0.0)
TS = tm.TransferState
# The order a transfer moves in; it never goes back (terminal states share the top rank).
T_RANK = {TS.REQUESTED: 0, TS.DIALING: 1, TS.RINGING: 2, TS.RETURNING: 3} | {
    s: 4 for s in tm.TERMINAL
}
OWN_TRANSFER = {CARRY_PLAN.call.citizen_channel, CARRY_PLAN.call.agent_channel}


@PROFILE
@given(st.lists(st.tuples(transfer_events(START), st.floats(0, 400)), max_size=25))
def test_a_transfer_survives_any_sequence(events: list[tuple[Any, float]]) -> None:
    t, commands = tm.start(CARRY_PLAN, 0.0)
    now = 0.0
    for event, dt in events:
        now += dt
        new, commands = tm.step(t, event, now)
        assert grows(t, new)
        assert T_RANK[new.state] >= T_RANK[t.state], (t.state, new.state)
        if t.done:
            assert new == t and commands == []  # terminal is absorbing
        for cmd in commands:
            assert channels_of(cmd) <= OWN_TRANSFER
        if isinstance(event, tm.CitizenHungUp | tm.Expired):
            assert new.done
        if isinstance(event, tm.Tick) and now >= t.due_at:
            assert new.done
        t = new


# -- three-way calls ------------------------------------------------------------------------------


_CONF, CONF_COMMANDS = cm.start(THREE_WAY_PLAN, 0.0)
ORIGINATE = cm.step(
    _CONF, CommandResult(next(c for c in CONF_COMMANDS if type(c).__name__ == "Redirect"), True), 0
)[1][0]
ROLES = st.sampled_from(list(Role))
CS = cm.ConferenceState
C_RANK = (
    {CS.REQUESTED: 0, CS.JOINING: 1, CS.ACTIVE: 2}
    | {s: 3 for s in (CS.AGENT_LEFT, CS.CANCELLED, CS.PARTNER_FAILED, CS.PARTNER_LEFT)}
    | {s: 4 for s in cm.TERMINAL}
)


def conference_events() -> st.SearchStrategy[Any]:
    results = st.builds(
        CommandResult,
        st.sampled_from([*CONF_COMMANDS, ORIGINATE]),
        st.booleans(),
        st.sampled_from(["", "refused"]),
        st.booleans(),
    )
    return st.one_of(
        results,
        st.builds(cm.MemberJoined, ROLES, st.sampled_from(["", "PJSIP/partner-110-00000009"])),
        st.builds(cm.MemberLeft, ROLES),
        st.builds(cm.ChannelGone, ROLES),
        st.builds(cm.PartnerOriginateFailed, st.sampled_from(["0", "3", "5", "8"])),
        st.just(cm.LeaveRequested()),
        st.just(cm.CancelRequested()),
        st.just(cm.Tick()),
    )


@PROFILE
@given(st.lists(st.tuples(conference_events(), st.floats(0, 120)), max_size=25))
def test_a_three_way_call_survives_any_sequence(events: list[tuple[Any, float]]) -> None:
    c, commands = cm.start(THREE_WAY_PLAN, 0.0)
    now = 0.0
    for event, dt in events:
        now += dt
        new, commands = cm.step(c, event, now)
        assert grows(c, new)
        assert C_RANK[new.state] >= C_RANK[c.state], (c.state, new.state)
        if c.done:
            assert new == c and commands == []
        own = {
            c.citizen_channel, c.call_id, c.agent_channel, c.partner_uniqueid,
            new.partner_channel, c.id,
        }  # fmt: skip
        for cmd in commands:
            assert channels_of(cmd) <= own
            if type(cmd).__name__ == "Hangup" and cmd.channel in (c.call_id, c.citizen_channel):  # type: ignore[attr-defined]
                # The citizen is hung up only as a two-party call ends: the one they were left
                # talking to hung up. Never while a partner or the agent is still with them.
                assert new.state is cm.ConferenceState.ENDED and not new.members
        if isinstance(event, cm.ChannelGone) and event.role is Role.CITIZEN:
            assert new.done  # the citizen hung up: the room is over
        c = new


# -- duty-line reminders ----------------------------------------------------------------------------


def reminder_events(r: wm.Reminder) -> st.SearchStrategy[Any]:
    chans = st.sampled_from([wm.channel_id(REMINDER_PLAN.reminder_id, n) for n in (1, 2, 3, 4)])
    return st.one_of(
        st.builds(wm.Answered, chans),
        st.builds(wm.AttemptFailed, chans, st.sampled_from(["0", "3", "5", "8"])),
        st.builds(wm.ChannelGone, chans),
        st.just(wm.Tick()),
    )


@PROFILE
@given(st.data())
def test_a_reminder_survives_any_sequence_and_time_always_ends_it(data: st.DataObject) -> None:
    plan = replace(REMINDER_PLAN, attempts=data.draw(st.integers(1, 4)))
    r, _ = wm.start(plan, 0.0)
    now = 0.0
    for _ in range(data.draw(st.integers(0, 25))):
        event = data.draw(reminder_events(r))
        now += data.draw(st.floats(0, 60))
        new, commands = wm.step(r, event, now)
        assert grows(r, new)
        if r.done:
            assert new == r and commands == []
        assert new.attempt <= plan.attempts  # never rings the duty line more than allowed
        r = new
    # However it went, time brings it to an end (an answered call ends when it hangs up):
    # nothing waits forever, and the duty line is never rung more than the plan allows.
    for _ in range(4 * plan.attempts + 4):
        if r.done:
            break
        now += plan.retry_after_s + plan.ring_timeout_s + 600
        answered = r.state is wm.ReminderState.ANSWERED
        r, _ = wm.step(r, wm.ChannelGone(r.channel_id) if answered else wm.Tick(), now)
        assert r.attempt <= plan.attempts
    assert r.done
