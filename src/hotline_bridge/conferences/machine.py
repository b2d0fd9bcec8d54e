"""The three-way call state machine: pure transitions, commands returned as data.

Citizen and agent are redirected into one ConfBridge room; once the PBX has taken that, the
partner is originated into the same room presenting the citizen's number. The agent can then
``leave`` (citizen and partner stay) or ``cancel`` (the partner leg drops, citizen and agent keep
talking). The ConfBridge user profiles do the rest: the citizen is the marked user, so a citizen
hang-up ends the room for everyone.

Who is in the room is tracked per role from ConfbridgeJoin/Leave, so a duplicate join or leave is
harmless, and a hang-up at any moment is an ordinary transition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.core.commands import (
    Command,
    CommandResult,
    ConfbridgeKick,
    Hangup,
    Originate,
    Redirect,
    SetVar,
)
from hotline_bridge.core.outcomes import Outcome, TimelineEntry, outcome_of_originate_reason

CONFERENCE_CONTEXT = "hotline-conference"
RETURN_CONTEXT = "hotline-return"
RETURN_EXTEN = "queue"
BRIDGE_PROFILE = "hotline_bridge"
PARTNER_PROFILE = "hotline_partner"


class ConferenceState(StrEnum):
    REQUESTED = "requested"  # record written; citizen and agent on their way into the room
    JOINING = "joining"  # the PBX moved them; the partner is being called
    ACTIVE = "active"  # citizen, agent and partner in the room
    AGENT_LEFT = "agent_left"  # citizen and partner talking, the agent is out
    CANCELLED = "cancelled"  # the agent withdrew the partner; citizen and agent talking
    PARTNER_FAILED = "partner_failed"  # the partner never joined; citizen and agent talking
    PARTNER_LEFT = "partner_left"  # the partner hung up; citizen and agent talking
    ENDED = "ended"
    FAILED = "failed"  # the PBX refused the move; citizen and agent never left their call


TERMINAL = frozenset({ConferenceState.ENDED, ConferenceState.FAILED})
# States where only citizen and agent remain: when either leaves, the call is over.
_TWO_PARTY = frozenset(
    {ConferenceState.CANCELLED, ConferenceState.PARTNER_FAILED, ConferenceState.PARTNER_LEFT}
)


class Role(StrEnum):
    CITIZEN = "citizen"
    AGENT = "agent"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class ThreeWayPlan:
    conference_id: str  # also the ConfBridge room name
    handoff_id: str
    handoff_url: str
    call: LiveCall  # the citizen-agent call the partner joins
    target: str
    target_dial: str
    forwarding_number: str
    ring_timeout_s: int


@dataclass(frozen=True, slots=True)
class Conference:
    id: str
    handoff_id: str
    call_id: str  # citizen Uniqueid
    citizen_channel: str
    citizen_number: str
    agent_id: str
    agent_channel: str
    agent_uniqueid: str
    partner_uniqueid: str
    target: str
    state: ConferenceState
    outcome: Outcome | None
    members: frozenset[Role]
    timeline: tuple[TimelineEntry, ...]
    partner_dial: str = ""
    partner_channel: str = ""
    handoff_url: str = ""
    forwarding_number: str = ""
    ring_timeout_s: int = 20
    # Until the partner is in the room: past this, a Tick settles what the PBX never reported.
    due_at: float = float("inf")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def role_of(self, uniqueid: str) -> Role | None:
        if uniqueid == self.call_id:
            return Role.CITIZEN
        if uniqueid == self.agent_uniqueid:
            return Role.AGENT
        if uniqueid == self.partner_uniqueid:
            return Role.PARTNER
        return None


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberJoined:
    role: Role
    channel: str = ""


@dataclass(frozen=True, slots=True)
class MemberLeft:
    role: Role


@dataclass(frozen=True, slots=True)
class PartnerOriginateFailed:
    """``OriginateResponse`` with ``Response: Failure`` for the partner leg."""

    reason: str


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequested:
    pass


@dataclass(frozen=True, slots=True)
class ChannelGone:
    """A party's channel hung up (covers parties that never reached the room)."""

    role: Role


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the clock is an input): see ``Conference.due_at``."""


# Beyond the partner's ring timeout, how long to wait for the PBX's word on the partner leg.
EXPIRY_MARGIN_S = 30.0

Event = (
    CommandResult
    | MemberJoined
    | MemberLeft
    | PartnerOriginateFailed
    | LeaveRequested
    | CancelRequested
    | ChannelGone
    | Tick
)


# -- questions the API asks before acting ------------------------------------------------------


def can_leave(c: Conference) -> bool:
    """The agent may leave only once the partner is in the room with the citizen."""
    return c.state is ConferenceState.ACTIVE and Role.PARTNER in c.members


def can_cancel(c: Conference) -> bool:
    return c.state in (ConferenceState.REQUESTED, ConferenceState.JOINING, ConferenceState.ACTIVE)


# -- transitions -------------------------------------------------------------------------------


def start(plan: ThreeWayPlan, now: float) -> tuple[Conference, list[Command]]:
    ref = plan.conference_id
    conf = Conference(
        id=plan.conference_id,
        handoff_id=plan.handoff_id,
        call_id=plan.call.call_id,
        citizen_channel=plan.call.citizen_channel,
        citizen_number=plan.call.citizen_number,
        agent_id=plan.call.agent_id,
        agent_channel=plan.call.agent_channel,
        agent_uniqueid=plan.call.agent_uniqueid,
        partner_uniqueid=f"{plan.conference_id}-partner",
        target=plan.target,
        state=ConferenceState.REQUESTED,
        outcome=None,
        members=frozenset(),
        timeline=(TimelineEntry(now, "requested", f"target {plan.target}"),),
        partner_dial=plan.target_dial,
        handoff_url=plan.handoff_url,
        forwarding_number=plan.forwarding_number,
        ring_timeout_s=plan.ring_timeout_s,
        due_at=now + plan.ring_timeout_s + EXPIRY_MARGIN_S,
    )
    commands: list[Command] = [
        SetVar(ref, plan.call.citizen_channel, "CONF_ROOM", plan.conference_id),
        SetVar(ref, plan.call.agent_channel, "CONF_ROOM", plan.conference_id),
        Redirect(
            ref,
            plan.call.citizen_channel,
            CONFERENCE_CONTEXT,
            "citizen",
            extra_channel=plan.call.agent_channel,
            extra_exten="agent",
        ),
    ]
    return conf, commands


# What may be presented as the citizen's number on the partner leg; anything else (a name, a
# quote, "anonymous", a SIP URI fragment from the raw CallerIDNum) is withheld, not passed on.
_PRESENTABLE = re.compile(r"^\+?[0-9]{3,20}$")


def presentable_number(number: str) -> str:
    """The citizen's number if it is one, else "" (withheld)."""
    return number if _PRESENTABLE.fullmatch(number) else ""


def _originate_partner(c: Conference) -> Originate:
    return Originate(
        ref=c.id,
        dial=c.partner_dial,
        application="ConfBridge",
        data=f"{c.id},{BRIDGE_PROFILE},{PARTNER_PROFILE}",
        caller_id=presentable_number(c.citizen_number),
        timeout_s=c.ring_timeout_s,
        channel_id=c.partner_uniqueid,
        variables={
            "PJSIP_HEADER(add,X-Handoff-Id)": c.handoff_id,
            "PJSIP_HEADER(add,Call-Info)": f"<{c.handoff_url}>;purpose=info",
            "REDIRECTING(from-num,i)": c.forwarding_number,
            "REDIRECTING(reason,i)": "cfu",
            "REDIRECTING(count,i)": "1",
        },
    )


def step(c: Conference, event: Event, now: float) -> tuple[Conference, list[Command]]:
    if c.done:
        return c, []
    match event:
        case CommandResult(command=Redirect(), ok=True):
            if c.state is ConferenceState.REQUESTED:
                return _to(c, ConferenceState.JOINING, now, "moved_to_room"), [
                    _originate_partner(c)
                ]
        case CommandResult(command=Redirect(), ok=False, unknown=True, reason=reason):
            # The reply was lost, not refused: the citizen joining the room will tell.
            return replace(c, timeline=_note(c, now, "pbx_reply_lost", reason)), []
        case CommandResult(command=Redirect(), ok=False, reason=reason):
            if c.state is ConferenceState.REQUESTED:
                return _to(
                    c, ConferenceState.FAILED, now, "pbx_refused", reason, Outcome.FAILED
                ), []
        case CommandResult(command=Originate(), ok=False, reason=reason):
            return _partner_failed(c, now, reason, Outcome.FAILED)
        case CommandResult(ok=False, reason=reason):
            return replace(c, timeline=_note(c, now, "command_refused", reason)), []
        case PartnerOriginateFailed(reason=reason):
            return _partner_failed(c, now, reason, outcome_of_originate_reason(reason))
        case MemberJoined(role=role, channel=channel):
            return _joined(c, role, channel, now)
        case MemberLeft(role=role) | ChannelGone(role=role):
            return _left(c, role, now, gone=isinstance(event, ChannelGone))
        case LeaveRequested():
            if can_leave(c):
                note = _note(c, now, "agent_leave_requested")
                return replace(c, timeline=note), [ConfbridgeKick(c.id, c.id, c.agent_channel)]
        case CancelRequested():
            if can_cancel(c):
                return _cancel(c, now)
        case Tick() if now >= c.due_at:
            if c.state is ConferenceState.REQUESTED and not c.members:
                # The move was never confirmed nor seen: citizen and agent are still talking.
                return _to(
                    c,
                    ConferenceState.FAILED,
                    now,
                    "expired",
                    "no word from the PBX",
                    Outcome.UNKNOWN,
                ), []
            # The partner never joined in time: citizen and agent go on (or back to the queue).
            return _partner_failed(c, now, "no result in time", Outcome.NO_ANSWER)
    return c, []


def _joined(
    c: Conference, role: Role, channel: str, now: float
) -> tuple[Conference, list[Command]]:
    if role in c.members:
        return c, []
    c = replace(c, members=c.members | {role}, timeline=_note(c, now, f"{role}_joined"))
    if c.state is ConferenceState.REQUESTED and role is not Role.PARTNER:
        # In the room before the Redirect's reply (late or lost): the move happened.
        moved = _to(c, ConferenceState.JOINING, now, "moved_to_room")
        return moved, [_originate_partner(moved)]
    if role is Role.PARTNER:
        c = replace(c, partner_channel=channel or c.partner_channel)
        if c.state is ConferenceState.CANCELLED:
            # The partner answered just as the agent cancelled: drop it again.
            return c, [ConfbridgeKick(c.id, c.id, c.partner_channel)]
        if c.state in (ConferenceState.REQUESTED, ConferenceState.JOINING):
            outcome = Outcome.ANSWERED
            if Role.AGENT in c.members:
                return _to(c, ConferenceState.ACTIVE, now, "three_way", "", outcome), []
            # The agent hung up while the partner was ringing: citizen and partner remain.
            return _to(c, ConferenceState.AGENT_LEFT, now, "partner_with_citizen", "", outcome), []
    return c, []


def _left(c: Conference, role: Role, now: float, gone: bool) -> tuple[Conference, list[Command]]:
    was_member = role in c.members
    if not was_member and not gone:
        return c, []
    c = replace(c, members=c.members - {role})
    if was_member:
        c = replace(c, timeline=_note(c, now, f"{role}_left"))
    s = c.state
    if role is Role.CITIZEN:
        # The citizen ended the call. The profiles kick the others; a partner still ringing
        # has to be hung up by us.
        cmds: list[Command] = []
        if Role.PARTNER not in c.members and s in (
            ConferenceState.REQUESTED,
            ConferenceState.JOINING,
        ):
            cmds.append(Hangup(c.id, c.partner_uniqueid))
            c = replace(c, outcome=Outcome.ABANDONED)
        c = replace(c, members=frozenset())  # the profiles end the room for everyone
        return _to(c, ConferenceState.ENDED, now, "ended", "citizen hung up"), cmds
    if role is Role.AGENT:
        if s is ConferenceState.ACTIVE:
            return _to(c, ConferenceState.AGENT_LEFT, now, "agent_left_room"), []
        if s in _TWO_PARTY:
            # Agent hung up on a plain two-party call: end it like any call.
            return _end_with_citizen(c, now, "agent hung up")
        return c, []  # still joining: if the partner fails, _partner_failed returns the citizen
    # The partner.
    if not was_member:
        return c, []  # an originate that never joined: OriginateResponse reports it
    if s is ConferenceState.ACTIVE:
        return _to(c, ConferenceState.PARTNER_LEFT, now, "partner_left_room"), []
    if s is ConferenceState.AGENT_LEFT:
        return _end_with_citizen(c, now, "partner hung up")
    return c, []


def _partner_failed(
    c: Conference, now: float, reason: str, outcome: Outcome
) -> tuple[Conference, list[Command]]:
    if Role.PARTNER in c.members or c.state not in (
        ConferenceState.REQUESTED,
        ConferenceState.JOINING,
    ):
        if c.state is ConferenceState.CANCELLED and c.outcome is None:
            return replace(c, outcome=Outcome.CANCELLED), []
        return c, []
    c = _to(c, ConferenceState.PARTNER_FAILED, now, "partner_failed", reason, outcome)
    if Role.AGENT not in c.members and Role.CITIZEN in c.members:
        # Nobody left to talk to the citizen: back to the agent queue, never hung up.
        note = _note(c, now, "citizen_to_queue")
        return replace(c, timeline=note), [
            Redirect(c.id, c.citizen_channel, RETURN_CONTEXT, RETURN_EXTEN)
        ]
    return c, []


def _cancel(c: Conference, now: float) -> tuple[Conference, list[Command]]:
    cmd: Command
    if Role.PARTNER in c.members:
        cmd = ConfbridgeKick(c.id, c.id, c.partner_channel)
    else:
        cmd = Hangup(c.id, c.partner_uniqueid)  # still ringing
    c = _to(c, ConferenceState.CANCELLED, now, "cancelled", "", Outcome.CANCELLED)
    return c, [cmd]


def _end_with_citizen(c: Conference, now: float, why: str) -> tuple[Conference, list[Command]]:
    """The citizen's only counterpart left: hang up as a normal two-party call would."""
    cmds: list[Command] = []
    if Role.CITIZEN in c.members:
        cmds.append(Hangup(c.id, c.call_id))
    c = replace(c, members=frozenset())  # the citizen's hang-up ends the room for everyone
    return _to(c, ConferenceState.ENDED, now, "ended", why), cmds


def _note(c: Conference, now: float, what: str, detail: str = "") -> tuple[TimelineEntry, ...]:
    return (*c.timeline, TimelineEntry(now, what, detail))


def _to(
    c: Conference,
    state: ConferenceState,
    now: float,
    what: str,
    detail: str = "",
    outcome: Outcome | None = None,
) -> Conference:
    return replace(
        c,
        state=state,
        outcome=outcome if outcome is not None else c.outcome,
        timeline=_note(c, now, what, detail),
    )
