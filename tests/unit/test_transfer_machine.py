"""Every transition of the carry-transfer machine, including duplicates and out-of-order events."""

from __future__ import annotations

import pytest
from tests.plans import CARRY_PLAN

from hotline_bridge.core.commands import BlindTransfer, CommandResult, SetVar
from hotline_bridge.core.outcomes import Outcome
from hotline_bridge.transfers import machine as m
from hotline_bridge.transfers.machine import TransferState as S

PLAN = CARRY_PLAN


def started() -> m.Transfer:
    t, _ = m.start(PLAN, now=1.0)
    return t


def ok(cmd: BlindTransfer | None = None) -> CommandResult:
    return CommandResult(
        cmd or BlindTransfer("t-1", PLAN.call.agent_channel, "hotline-handoff", "carry"), True
    )


def run(t: m.Transfer, *events: m.Event) -> m.Transfer:
    for i, e in enumerate(events):
        t, cmds = m.step(t, e, now=10.0 + i)
        assert cmds == []
    return t


def test_start_sets_variables_on_citizen_then_transfers_agent_leg() -> None:
    t, cmds = m.start(PLAN, now=1.0)
    assert t.state is S.REQUESTED and t.outcome is None
    *setvars, last = cmds
    assert all(isinstance(c, SetVar) and c.channel == PLAN.call.citizen_channel for c in setvars)
    variables = {c.name: c.value for c in setvars if isinstance(c, SetVar)}
    assert variables["HANDOFF_ID"] == "h-1"
    assert variables["HANDOFF_DIAL"] == "PJSIP/110@partner-110"
    assert variables["HANDOFF_RETURN_DIAL"] == "PJSIP/agent1001"
    assert last == BlindTransfer("t-1", PLAN.call.agent_channel, "hotline-handoff", "carry")


def test_happy_path_to_answered() -> None:
    t = run(started(), ok(), m.PartnerDialing(), m.PartnerRinging(), m.PartnerResult("ANSWER"))
    assert t.state is S.ANSWERED and t.outcome is Outcome.ANSWERED
    assert [e.what for e in t.timeline] == [
        "requested",
        "pbx_accepted",
        "partner_ringing",
        "partner_answered",
    ]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("BUSY", Outcome.BUSY),
        ("NOANSWER", Outcome.NO_ANSWER),
        ("CONGESTION", Outcome.REJECTED),
        ("CHANUNAVAIL", Outcome.FAILED),
        ("something-new", Outcome.FAILED),
    ],
)
def test_partner_failure_returns_citizen(status: str, outcome: Outcome) -> None:
    t = run(started(), ok(), m.PartnerResult(status))
    assert t.state is S.RETURNING and t.outcome is outcome
    t = run(t, m.CitizenReturned("1001"))
    assert t.state is S.RETURNED and t.returned_to == "1001" and t.outcome is outcome


def test_pbx_refusal_fails_without_moving_the_citizen() -> None:
    t = run(started(), CommandResult(ok().command, False, "No such channel"))
    assert t.state is S.FAILED and t.outcome is Outcome.FAILED
    assert t.timeline[-1].detail == "No such channel"


def test_refused_setvar_is_recorded_but_does_not_decide() -> None:
    setvar = SetVar("t-1", PLAN.call.citizen_channel, "HANDOFF_ID", "h-1")
    t = run(started(), CommandResult(setvar, False, "gone"))
    assert t.state is S.REQUESTED
    assert t.timeline[-1].what == "command_refused"


def test_duplicate_events_change_nothing() -> None:
    t = run(started(), ok(), m.PartnerResult("ANSWER"))
    assert run(t, m.PartnerResult("ANSWER"), ok(), m.PartnerRinging()) == t
    r = run(started(), ok(), m.PartnerResult("BUSY"))
    assert run(r, m.PartnerResult("BUSY")) == r
    back = run(r, m.CitizenReturned("1001"))
    assert run(back, m.CitizenReturned("1001")) == back


def test_events_out_of_order() -> None:
    # The partner's answer is seen before the PBX's reply to the transfer action.
    t = run(started(), m.PartnerResult("ANSWER"), ok())
    assert t.state is S.ANSWERED
    # Ringing after the result never moves the state back.
    t = run(started(), m.PartnerResult("BUSY"), m.PartnerRinging(), m.PartnerDialing())
    assert t.state is S.RETURNING
    # A late refusal after the dialplan already ran is ignored.
    t = run(started(), m.PartnerDialing(), CommandResult(ok().command, False, "x"))
    assert t.state is S.DIALING


def test_citizen_returned_only_after_a_failure() -> None:
    # Being bridged with the agent before the transfer took effect is not a "return".
    assert run(started(), m.CitizenReturned("1001")).state is S.REQUESTED


@pytest.mark.parametrize("stage", ["requested", "dialing", "ringing"])
def test_hangup_mid_transfer_is_abandoned(stage: str) -> None:
    events: list[m.Event] = {
        "requested": [],
        "dialing": [ok()],
        "ringing": [ok(), m.PartnerRinging()],
    }[stage]
    t = run(started(), *events, m.CitizenHungUp())
    assert t.state is S.ABANDONED and t.outcome is Outcome.ABANDONED


def test_dialstatus_cancel_means_citizen_hung_up() -> None:
    t = run(started(), ok(), m.PartnerResult("CANCEL"))
    assert t.state is S.ABANDONED and t.outcome is Outcome.ABANDONED


def test_hangup_while_returning_keeps_partner_outcome() -> None:
    t = run(started(), ok(), m.PartnerResult("NOANSWER"), m.CitizenHungUp())
    assert t.state is S.ABANDONED and t.outcome is Outcome.NO_ANSWER


def test_hangup_after_answer_is_the_normal_end() -> None:
    t = run(started(), ok(), m.PartnerResult("ANSWER"))
    assert run(t, m.CitizenHungUp()) == t


def test_expiry_marks_lost_only_while_unsettled() -> None:
    t = run(started(), ok(), m.Expired())
    assert t.state is S.LOST and t.outcome is Outcome.UNKNOWN
    done = run(started(), ok(), m.PartnerResult("ANSWER"))
    assert run(done, m.Expired()) == done


def test_a_lost_reply_is_not_a_refusal() -> None:
    lost = CommandResult(ok().command, False, "AMI link lost; not re-sent", unknown=True)
    t = run(started(), lost)
    assert t.state is S.REQUESTED and t.timeline[-1].what == "pbx_reply_lost"
    # The dialplan's own events settle it.
    t = run(t, m.PartnerResult("ANSWER"))
    assert t.state is S.ANSWERED and t.outcome is Outcome.ANSWERED


def test_time_is_an_input_a_tick_before_due_changes_nothing_after_due_gives_up() -> None:
    t, _ = m.start(PLAN, 100.0)
    assert t.due_at == 100.0 + PLAN.ring_timeout_s + PLAN.return_timeout_s + m.EXPIRY_MARGIN_S
    assert m.step(t, m.Tick(), t.due_at - 0.001) == (t, [])
    lost, commands = m.step(t, m.Tick(), t.due_at)
    assert lost.state is S.LOST and lost.outcome is Outcome.UNKNOWN and commands == []
    assert m.step(lost, m.Tick(), t.due_at + 99) == (lost, [])  # terminal: nothing moves it


# -- after a reconnect or a restart: the PBX's own view settles what the events no longer can --


def dialing() -> m.Transfer:
    return run(started(), ok())


def test_reconciled_citizen_gone_is_lost_with_its_reason() -> None:
    t = run(dialing(), m.Reconciled("gone"))
    assert t.state is S.LOST and t.outcome is Outcome.UNKNOWN
    assert t.timeline[-1].what == "citizen_gone_unseen"


def test_reconciled_with_partner_is_answered() -> None:
    t = run(dialing(), m.Reconciled("with_partner"))
    assert t.state is S.ANSWERED and t.outcome is Outcome.ANSWERED
    assert t.timeline[-1].what == "partner_answered_unseen"


def test_reconciled_back_with_an_agent_is_returned() -> None:
    t = run(dialing(), m.PartnerResult("BUSY"), m.Reconciled("with_agent", "1002"))
    assert t.state is S.RETURNED and t.returned_to == "1002"
    assert t.outcome is Outcome.BUSY  # what was known before stays


def test_reconciled_requested_still_on_the_original_leg_never_started() -> None:
    t = run(started(), m.Reconciled("with_agent", "1001", original_leg=True))
    assert t.state is S.FAILED and t.outcome is Outcome.FAILED
    assert t.timeline[-1].what == "pbx_never_took_it"


@pytest.mark.parametrize("where", ["dialplan", "with_partner"])
def test_reconciled_still_moving_or_returning_waits_for_events(where: str) -> None:
    assert run(dialing(), m.Reconciled("dialplan")).state is S.DIALING
    returning = run(dialing(), m.PartnerResult("NOANSWER"))
    assert run(returning, m.Reconciled(where)).state is S.RETURNING


def test_reconciled_twice_changes_nothing_the_second_time() -> None:
    once = run(dialing(), m.Reconciled("with_partner"))
    assert run(once, m.Reconciled("with_partner")) == once
