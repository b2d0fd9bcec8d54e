"""Multi-party rooms: partners added to a running three-way call, dropped, and the citizen never
left alone (every transition, duplicates and hang-ups at any moment)."""

from __future__ import annotations

from tests.plans import CITIZEN
from tests.unit.test_conference_machine import PARTNER_CHAN, PLAN, active, joined_both, run

from hotline_bridge.conferences import machine as m
from hotline_bridge.conferences.machine import ConferenceState as S
from hotline_bridge.conferences.machine import LegState as L
from hotline_bridge.conferences.machine import Role
from hotline_bridge.core.commands import (
    CommandResult,
    ConfbridgeKick,
    Hangup,
    Originate,
    Redirect,
)
from hotline_bridge.core.outcomes import Outcome
from hotline_bridge.handoffs.machines import Keeper


def leg(c: m.Conference, target: str = "120", now: float = 20.0) -> m.PartnerLeg:
    key = m.next_leg_key(c)
    return m.PartnerLeg(
        key=key,
        uniqueid=f"{c.id}-{key}",
        target=target,
        handoff_id=f"h-{target}",
        handoff_url=f"http://127.0.0.1:8345/v1/handoffs/h-{target}",
        dial=f"PJSIP/{target}@desk-{target}",
        forwarding_number="12345",
        ring_timeout_s=20,
        state=L.RINGING,
        due_at=now + 20 + m.EXPIRY_MARGIN_S,
    )


def chan(target: str) -> str:
    return f"PJSIP/desk-{target}-0000000{len(target)}"


def added(c: m.Conference, target: str = "120") -> tuple[m.Conference, list[object], str]:
    new = leg(c, target)
    c, cmds = run(c, m.PartnerAdded(new))
    return c, cmds, new.uniqueid


def four_parties() -> tuple[m.Conference, str]:
    """Citizen, agent, 110 and 120 in the room."""
    c, _, uid = added(active())
    c, _ = run(c, m.MemberJoined(Role.PARTNER, chan("120"), uid))
    return c, uid


def test_a_partner_added_to_a_running_room_is_called_with_the_citizen_s_number() -> None:
    c, cmds, uid = added(active())
    (originate,) = cmds
    assert isinstance(originate, Originate)
    assert originate.channel_id == uid == "c-1-p2"
    assert originate.dial == "PJSIP/120@desk-120"
    assert originate.caller_id == CITIZEN
    assert originate.application == "ConfBridge" and originate.data.startswith("c-1,")
    # Its own record, not the first partner's.
    assert originate.variables["PJSIP_HEADER(add,X-Handoff-Id)"] == "h-120"
    assert "h-120>" in originate.variables["PJSIP_HEADER(add,Call-Info)"]
    assert c.added[0].state is L.RINGING and c.state is S.ACTIVE
    assert c.role_of(uid) is Role.PARTNER and c.leg(uid) == c.added[0]
    assert c.timeline[-1].what == "partner_added"


def test_adding_is_refused_until_the_room_has_settled_and_the_agent_is_in() -> None:
    assert m.add_refusal(joined_both(), "120") is not None  # the first partner still ringing
    c, _ = m.start(PLAN, now=1.0)
    assert m.add_refusal(c, "120") is not None  # not even in the room
    c, _ = run(active(), m.MemberLeft(Role.AGENT))
    assert c.state is S.AGENT_LEFT
    assert m.add_refusal(c, "120") is not None  # the agent is out of the room
    assert m.add_refusal(active(), "120") is None


def test_the_same_target_twice_and_too_many_partners_are_refused() -> None:
    c, _, _ = added(active(), "120")
    assert m.add_refusal(c, "120") is not None  # already being called
    assert m.add_refusal(c, "110") is not None  # the first partner is in
    c, _, _ = added(c, "119")
    c, _, _ = added(c, "122")
    refusal = m.add_refusal(c, "water")
    assert refusal is not None and "4 partners" in refusal
    # A refused add that still reaches the machine changes nothing.
    assert run(c, m.PartnerAdded(leg(c, "water"))) == (c, [])


def test_every_room_has_a_bounded_number_of_added_partners() -> None:
    c = active()
    for i in range(m.MAX_ADDED):
        c, _, uid = added(c, f"t{i}")
        c, _ = run(c, m.PartnerOriginateFailed("3", uid))  # no answer
    assert m.add_refusal(c, "again") == f"{m.MAX_ADDED} partners were already added to this room"


def test_duplicate_add_event_is_harmless() -> None:
    c = active()
    new = leg(c)
    c, cmds = run(c, m.PartnerAdded(new))
    assert run(c, m.PartnerAdded(new)) == (c, [])
    assert len(cmds) == 1


def test_four_parties_then_the_agent_leaves_and_the_partners_stay() -> None:
    c, _uid = four_parties()
    assert m.partners_in(c) == 2 and c.added[0].state is L.IN
    assert c.added[0].outcome is Outcome.ANSWERED and c.added[0].channel == chan("120")
    assert m.can_leave(c)
    c, cmds = run(c, m.LeaveRequested())
    assert cmds == [ConfbridgeKick("c-1", "c-1", c.agent_channel)]
    c, _ = run(c, m.MemberLeft(Role.AGENT))
    assert c.state is S.AGENT_LEFT and m.partners_in(c) == 2


def test_after_the_agent_left_the_citizen_goes_back_to_the_queue_when_the_last_partner_goes() -> (
    None
):
    c, uid = four_parties()
    c, _ = run(c, m.MemberLeft(Role.AGENT))
    c, cmds = run(c, m.MemberLeft(Role.PARTNER))  # 110 hangs up: 120 stays with the citizen
    assert c.state is S.AGENT_LEFT and cmds == [] and m.partners_in(c) == 1
    c, cmds = run(c, m.MemberLeft(Role.PARTNER, uid))  # 120 hangs up too
    assert c.state is S.ENDED
    assert cmds == [Redirect("c-1", c.citizen_channel, m.RETURN_CONTEXT, m.RETURN_EXTEN)]
    assert [e.what for e in c.timeline[-2:]] == ["citizen_to_queue", "ended"]
    assert c.added[0].state is L.LEFT
    # The late Hangup of 120's channel, and the citizen leaving the room for the queue: no-ops.
    assert run(c, m.ChannelGone(Role.PARTNER, uid)) == (c, [])
    assert run(c, m.MemberLeft(Role.CITIZEN)) == (c, [])


def test_the_first_partner_leaving_keeps_the_room_active_while_another_partner_is_in() -> None:
    c, uid = four_parties()
    c, cmds = run(c, m.MemberLeft(Role.PARTNER))
    assert c.state is S.ACTIVE and cmds == [] and m.can_leave(c)
    c, cmds = run(c, m.MemberLeft(Role.PARTNER, uid))
    assert c.state is S.PARTNER_LEFT and cmds == []  # citizen and agent, as a plain three-way
    assert not m.can_leave(c)


def test_a_partner_added_after_the_first_left_makes_the_room_active_again() -> None:
    c, _ = run(active(), m.MemberLeft(Role.PARTNER))
    assert c.state is S.PARTNER_LEFT
    c, _, uid = added(c)
    c, _ = run(c, m.MemberJoined(Role.PARTNER, chan("120"), uid))
    assert c.state is S.ACTIVE and m.can_leave(c)
    c, _ = run(c, m.MemberJoined(Role.PARTNER, chan("120"), uid))  # duplicate join
    assert c.state is S.ACTIVE and m.partners_in(c) == 1


def test_the_agent_hanging_up_while_an_added_partner_rings_leaves_the_citizen_waiting() -> None:
    c, _ = run(active(), m.MemberLeft(Role.PARTNER))
    c, _, uid = added(c)
    c, cmds = run(c, m.MemberLeft(Role.AGENT))
    assert c.state is S.AGENT_LEFT and cmds == []  # not hung up: 120 is on its way
    c, cmds = run(c, m.PartnerOriginateFailed("3", uid))  # 120 did not answer
    assert c.state is S.ENDED and c.added[0].state is L.FAILED
    assert c.added[0].outcome is Outcome.NO_ANSWER
    assert cmds == [Redirect("c-1", c.citizen_channel, m.RETURN_CONTEXT, m.RETURN_EXTEN)]


def test_an_added_partner_that_never_answers_is_settled_by_the_clock() -> None:
    c, _, uid = added(active())
    due = c.added[0].due_at
    assert c.next_due <= due
    c2, cmds = m.step(c, m.Tick(), now=due - 1)
    assert c2.added[0].state is L.RINGING
    c, cmds = m.step(c, m.Tick(), now=due)
    assert c.added[0].state is L.FAILED and Hangup("c-1", uid) in cmds
    assert c.state is S.ACTIVE  # 110 and the agent are still with the citizen


def test_a_refused_originate_fails_only_that_leg() -> None:
    c, cmds, _uid = added(active())
    (originate,) = cmds
    assert isinstance(originate, Originate)
    c, out = run(c, CommandResult(originate, False, reason="Originate failed"))
    assert c.state is S.ACTIVE and c.added[0].state is L.FAILED and out == []
    assert Role.PARTNER in c.members  # the first partner untouched


def test_dropping_an_added_partner_in_the_room_kicks_it() -> None:
    c, uid = four_parties()
    assert m.drop_refusal(c, "p2") is None
    c, cmds = run(c, m.DropRequested("p2"))
    assert cmds == [ConfbridgeKick("c-1", "c-1", chan("120"))]
    assert c.added[0].state is L.DROPPED and c.state is S.ACTIVE
    # Its ConfbridgeLeave and Hangup afterwards change nothing.
    assert run(c, m.MemberLeft(Role.PARTNER, uid)) == (c, [])
    assert run(c, m.ChannelGone(Role.PARTNER, uid)) == (c, [])
    assert m.drop_refusal(c, "p2") == "partner leg p2 is already dropped"


def test_dropping_a_ringing_partner_hangs_it_up_and_an_answer_after_is_kicked() -> None:
    c, _, uid = added(active())
    c, cmds = run(c, m.DropRequested("p2"))
    assert cmds == [Hangup("c-1", uid)] and c.added[0].state is L.DROPPED
    c, cmds = run(c, m.MemberJoined(Role.PARTNER, chan("120"), uid))
    assert cmds == [ConfbridgeKick("c-1", "c-1", chan("120"))]


def test_the_first_partner_can_be_dropped_while_another_stays() -> None:
    c, _uid = four_parties()
    c, _ = run(c, m.MemberLeft(Role.AGENT))
    c, cmds = run(c, m.DropRequested(m.PRIMARY_KEY))
    assert cmds == [ConfbridgeKick("c-1", "c-1", PARTNER_CHAN)]
    c, cmds = run(c, m.MemberLeft(Role.PARTNER))
    assert c.state is S.AGENT_LEFT and cmds == []  # 120 is still with the citizen


def test_a_drop_that_would_leave_the_citizen_alone_is_refused() -> None:
    c, _uid = four_parties()
    c, _ = run(c, m.MemberLeft(Role.AGENT))
    c, _ = run(c, m.MemberLeft(Role.PARTNER))  # only 120 is left with the citizen
    assert m.drop_refusal(c, "p2") == "dropping the last partner would leave the citizen alone"
    assert run(c, m.DropRequested("p2")) == (c, [])
    assert m.drop_refusal(c, "p9") == "no partner leg p9 in this conference"
    assert m.drop_refusal(c, m.PRIMARY_KEY) is not None  # 110 is not in the room


def test_cancel_withdraws_every_partner() -> None:
    c, _uid = four_parties()
    c, _other, uid2 = added(c, "119")
    c, cmds = run(c, m.CancelRequested())
    assert c.state is S.CANCELLED
    assert set(cmds) == {
        ConfbridgeKick("c-1", "c-1", PARTNER_CHAN),
        ConfbridgeKick("c-1", "c-1", chan("120")),
        Hangup("c-1", uid2),
    }
    assert {leg.state for leg in c.added} == {L.DROPPED}


def test_citizen_hang_up_ends_the_room_and_hangs_up_the_ringing_partners() -> None:
    c, _uid = four_parties()
    c, _, uid2 = added(c, "119")
    c, cmds = run(c, m.MemberLeft(Role.CITIZEN))
    assert c.state is S.ENDED and cmds == [Hangup("c-1", uid2)]
    assert [leg.state for leg in c.added] == [L.LEFT, L.FAILED]
    assert c.added[1].outcome is Outcome.ABANDONED


def test_a_multi_party_room_survives_the_store_round_trip() -> None:
    c, uid = four_parties()
    c, _, _ = added(c, "119")

    class Memory:
        def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None:
            self.row = (item_id, state)

        def machines(
            self, kind: str, *, done: bool, limit: int | None = None
        ) -> list[tuple[str, str]]:
            return [self.row]

        def prune_machines(self, kind: str, finished_before: object) -> int:
            return 0

    keeper = Keeper(Memory(), "three_way", m.Conference)
    keeper.keep(c)
    (back,) = keeper.live()
    assert back == c
    assert back.leg(uid) is not None and back.next_due == c.next_due
