"""The three-way call state machine: pure transitions, commands returned as data.

Citizen and agent are redirected into one ConfBridge room; once the PBX has taken that, the
partner is originated into the same room presenting the citizen's number. The agent can then
``leave`` (citizen and partner stay) or ``cancel`` (the partner leg drops, citizen and agent keep
talking). The ConfBridge user profiles do the rest: the citizen is the marked user, so a citizen
hang-up ends the room for everyone.

Multi-party (a traffic accident with injuries: citizen + 12345 + 110 + 120): once the room has
settled, the agent may add more partners (``PartnerAdded``, each an added :class:`PartnerLeg` with
its own handoff record and Originate carrying the citizen's number) and drop one
(``DropRequested``) as long as someone stays with the citizen. The first partner keeps its own
fields (``partner_*``, leg key ``p1``); the state names what the citizen has: ACTIVE = agent and
at least one partner, AGENT_LEFT = partners without the agent. The room never leaves the citizen
alone: in a room that had a partner added, once the agent and every partner are gone and nobody
is still being called, the citizen goes back to the queue.

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
    PARTNER = "partner"  # the first partner and every added one (told apart by their Uniqueid)


class LegState(StrEnum):
    RINGING = "ringing"  # originated, not in the room yet
    IN = "in"  # in the room
    LEFT = "left"  # was in the room, gone (hung up, or the room ended)
    FAILED = "failed"  # never joined: no answer, busy, refused, or the citizen left first
    DROPPED = "dropped"  # the agent dropped it


LIVE_LEG = frozenset({LegState.RINGING, LegState.IN})
PRIMARY_KEY = "p1"  # how the API names the first partner's leg
# Partners alive at once in one room (the first included): 4 partners + citizen + agent = 6
# parties, well inside a ConfBridge room and what an emergency needs.
MAX_PARTNERS = 4
# Partners ever added to one room: a softphone retry loop cannot ring desks without end.
MAX_ADDED = 8


@dataclass(frozen=True, slots=True)
class PartnerLeg:
    """A partner added to a running room: its own desk, record and channel."""

    key: str  # "p2", "p3"...: how the API and the timeline name it
    uniqueid: str  # the Originate ChannelId we chose, so its events are known on sight
    target: str
    handoff_id: str  # its own record, addressed to its own target
    handoff_url: str
    dial: str
    forwarding_number: str
    ring_timeout_s: int
    state: LegState
    channel: str = ""
    outcome: Outcome | None = None
    reason: str = ""  # why it failed or ended, as the PBX or the agent said
    due_at: float = float("inf")  # while ringing: past this, a Tick settles it


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
    added: tuple[PartnerLeg, ...] = ()  # partners added to the running room, in order
    # The agent's leg left the room or hung up (not merely "not in the room yet": under load
    # the partner's join can be reported before the agent's own).
    agent_out: bool = False

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def next_due(self) -> float:
        """When a Tick next has something to settle (the first partner or a ringing leg)."""
        ringing = [leg.due_at for leg in self.added if leg.state is LegState.RINGING]
        return min([self.due_at, *ringing])

    def role_of(self, uniqueid: str) -> Role | None:
        if uniqueid == self.call_id:
            return Role.CITIZEN
        if uniqueid == self.agent_uniqueid:
            return Role.AGENT
        if uniqueid == self.partner_uniqueid or self.leg(uniqueid) is not None:
            return Role.PARTNER
        return None

    def leg(self, uniqueid: str) -> PartnerLeg | None:
        """The added partner leg with this Uniqueid (not the first partner's)."""
        return next((leg for leg in self.added if leg.uniqueid == uniqueid), None)

    def uniqueids(self) -> tuple[str, ...]:
        """Every channel of the room's parties, as we know them."""
        return (
            self.call_id,
            self.agent_uniqueid,
            self.partner_uniqueid,
            *(leg.uniqueid for leg in self.added),
        )


# -- events ------------------------------------------------------------------------------------


# ``leg``: the Uniqueid of an added partner leg the event is about ("" for the first partner,
# the citizen and the agent).


@dataclass(frozen=True, slots=True)
class MemberJoined:
    role: Role
    channel: str = ""
    leg: str = ""


@dataclass(frozen=True, slots=True)
class MemberLeft:
    role: Role
    leg: str = ""


@dataclass(frozen=True, slots=True)
class PartnerOriginateFailed:
    """``OriginateResponse`` with ``Response: Failure`` for the partner leg."""

    reason: str
    leg: str = ""


@dataclass(frozen=True, slots=True)
class PartnerAdded:
    """The agent added a partner (its record already written): call it into the room."""

    leg: PartnerLeg


@dataclass(frozen=True, slots=True)
class DropRequested:
    """The agent drops one partner leg (``p1`` the first, ``p2``... the added ones)."""

    key: str


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
    leg: str = ""


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
    | PartnerAdded
    | DropRequested
)


# -- questions the API asks before acting ------------------------------------------------------


def partners_in(c: Conference) -> int:
    """Partners in the room now (the first and the added ones)."""
    return (Role.PARTNER in c.members) + sum(leg.state is LegState.IN for leg in c.added)


def _ringing(c: Conference) -> bool:
    return any(leg.state is LegState.RINGING for leg in c.added)


def _first_partner_live(c: Conference) -> bool:
    return Role.PARTNER in c.members or c.state in (
        ConferenceState.REQUESTED,
        ConferenceState.JOINING,
    )


def can_leave(c: Conference) -> bool:
    """The agent may leave only once a partner is in the room with the citizen."""
    return c.state is ConferenceState.ACTIVE and partners_in(c) > 0


# Settled rooms where the agent is still with the citizen: where a partner may be added.
_ADDABLE = frozenset(
    {
        ConferenceState.ACTIVE,
        ConferenceState.CANCELLED,
        ConferenceState.PARTNER_FAILED,
        ConferenceState.PARTNER_LEFT,
    }
)


def add_refusal(c: Conference, target: str) -> str | None:
    """Why a partner cannot be added now (None: it can)."""
    if c.state not in _ADDABLE or not {Role.CITIZEN, Role.AGENT} <= c.members:
        return (
            f"cannot add a partner: the conference is {c.state}; the citizen and the agent "
            "must be in the room and the first partner's call settled"
        )
    live = [leg for leg in c.added if leg.state in LIVE_LEG]
    if (_first_partner_live(c) and c.target == target) or any(leg.target == target for leg in live):
        return f"target {target} is already in (or being called into) the room"
    if _first_partner_live(c) + len(live) >= MAX_PARTNERS:
        return f"the room already has {MAX_PARTNERS} partners"
    if len(c.added) >= MAX_ADDED:
        return f"{MAX_ADDED} partners were already added to this room"
    return None


def next_leg_key(c: Conference) -> str:
    return f"p{len(c.added) + 2}"


def drop_refusal(c: Conference, key: str) -> str | None:
    """Why the leg ``key`` cannot be dropped (None: it can). A partner in the room is dropped
    only if someone stays with the citizen: the agent or another partner."""
    if c.done:
        return f"the conference is {c.state}"
    if key == PRIMARY_KEY:
        in_room = Role.PARTNER in c.members
        if not in_room:
            return "the first partner is not in the room (cancel withdraws a ringing one)"
    else:
        leg = next((leg for leg in c.added if leg.key == key), None)
        if leg is None:
            return f"no partner leg {key} in this conference"
        if leg.state not in LIVE_LEG:
            return f"partner leg {key} is already {leg.state}"
        in_room = leg.state is LegState.IN
    if in_room and Role.AGENT not in c.members and partners_in(c) < 2:
        return "dropping the last partner would leave the citizen alone"
    return None


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
    return _call_into_room(
        c, c.partner_dial, c.ring_timeout_s, c.partner_uniqueid, c.handoff_id, c.handoff_url,
        c.forwarding_number,
    )  # fmt: skip


def _call_into_room(
    c: Conference,
    dial: str,
    ring_timeout_s: int,
    channel_id: str,
    handoff_id: str,
    handoff_url: str,
    forwarding_number: str,
) -> Originate:
    """One partner's leg (the first or an added one), presenting the citizen's number and
    carrying that partner's own record in the handoff headers."""
    return Originate(
        ref=c.id,
        dial=dial,
        application="ConfBridge",
        data=f"{c.id},{BRIDGE_PROFILE},{PARTNER_PROFILE}",
        caller_id=presentable_number(c.citizen_number),
        timeout_s=ring_timeout_s,
        channel_id=channel_id,
        variables={
            "PJSIP_HEADER(add,X-Handoff-Id)": handoff_id,
            "PJSIP_HEADER(add,Call-Info)": f"<{handoff_url}>;purpose=info",
            "REDIRECTING(from-num,i)": forwarding_number,
            "REDIRECTING(reason,i)": "cfu",
            "REDIRECTING(count,i)": "1",
        },
    )


def step(c: Conference, event: Event, now: float) -> tuple[Conference, list[Command]]:
    if c.done:
        return c, []
    match event:
        case PartnerAdded(leg=leg):
            return _add(c, leg, now)
        case DropRequested(key=key):
            return _drop(c, key, now)
        case CommandResult(command=Originate(channel_id=uid), ok=False, reason=reason) if c.leg(
            uid
        ):
            return _leg_failed(c, uid, now, reason, Outcome.FAILED)
        case PartnerOriginateFailed(reason=reason, leg=uid) if uid:
            return _leg_failed(c, uid, now, reason, outcome_of_originate_reason(reason))
        case MemberJoined(channel=channel, leg=uid) if uid:
            return _leg_joined(c, uid, channel, now)
        case MemberLeft(leg=uid) | ChannelGone(leg=uid) if uid:
            return _leg_gone(c, uid, now, gone=isinstance(event, ChannelGone))
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
        case Tick() if now >= c.next_due:
            return _tick(c, now)
    return c, []


def _tick(c: Conference, now: float) -> tuple[Conference, list[Command]]:
    cmds: list[Command] = []
    for leg in c.added:
        if leg.state is LegState.RINGING and now >= leg.due_at and not c.done:
            c, more = _leg_failed(c, leg.uniqueid, now, "no result in time", Outcome.NO_ANSWER)
            cmds += [Hangup(c.id, leg.uniqueid), *more]
    if c.done or now < c.due_at:
        return c, cmds
    if c.state is ConferenceState.REQUESTED and not c.members:
        # The move was never confirmed nor seen: citizen and agent are still talking.
        return _to(
            c,
            ConferenceState.FAILED,
            now,
            "expired",
            "no word from the PBX",
            Outcome.UNKNOWN,
        ), cmds
    # The partner never joined in time: citizen and agent go on (or back to the queue).
    c, more = _partner_failed(c, now, "no result in time", Outcome.NO_ANSWER)
    return c, cmds + more


def _joined(
    c: Conference, role: Role, channel: str, now: float
) -> tuple[Conference, list[Command]]:
    if role in c.members:
        return c, []
    c = replace(
        c,
        members=c.members | {role},
        timeline=_note(c, now, f"{role}_joined"),
        agent_out=c.agent_out and role is not Role.AGENT,
    )
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
            if not c.agent_out:
                # The agent is in the room, or on its way: the Redirect moved it with the
                # citizen, and its join can be reported after a fast partner's.
                return _to(c, ConferenceState.ACTIVE, now, "three_way", "", outcome), []
            # The agent hung up while the partner was ringing: citizen and partner remain.
            return _to(c, ConferenceState.AGENT_LEFT, now, "partner_with_citizen", "", outcome), []
    return c, []


def _left(c: Conference, role: Role, now: float, gone: bool) -> tuple[Conference, list[Command]]:
    was_member = role in c.members
    if not was_member and not gone:
        return c, []
    c = replace(c, members=c.members - {role}, agent_out=c.agent_out or role is Role.AGENT)
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
        c, more = _close_legs(c, now, "citizen hung up")
        c = replace(c, members=frozenset())  # the profiles end the room for everyone
        return _to(c, ConferenceState.ENDED, now, "ended", "citizen hung up"), cmds + more
    if role is Role.AGENT:
        if s is ConferenceState.ACTIVE:
            return _to(c, ConferenceState.AGENT_LEFT, now, "agent_left_room"), []
        if s in _TWO_PARTY:
            if partners_in(c) or _ringing(c):
                # An added partner is on its way: the citizen waits for it, not the queue yet.
                return _to(c, ConferenceState.AGENT_LEFT, now, "agent_left_room"), []
            # Agent hung up on a plain two-party call: end it like any call.
            return _end_with_citizen(c, now, "agent hung up")
        return c, []  # still joining: if the partner fails, _partner_failed returns the citizen
    # The partner.
    if not was_member:
        return c, []  # an originate that never joined: OriginateResponse reports it
    if c.added:
        return _settle(c, now)  # a multi-party room: the others may still be there
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
    cmds: list[Command] = []
    if Role.PARTNER in c.members:
        cmds.append(ConfbridgeKick(c.id, c.id, c.partner_channel))
    elif c.state is not ConferenceState.ACTIVE:
        cmds.append(Hangup(c.id, c.partner_uniqueid))  # still ringing
    for leg in c.added:  # cancel withdraws every partner: citizen and agent stay together
        if leg.state in LIVE_LEG:
            c, more = _drop_leg(c, leg, now)
            cmds += more
    c = _to(c, ConferenceState.CANCELLED, now, "cancelled", "", Outcome.CANCELLED)
    return c, cmds


# -- added partner legs -------------------------------------------------------------------------


def _add(c: Conference, leg: PartnerLeg, now: float) -> tuple[Conference, list[Command]]:
    if any(known.key == leg.key for known in c.added) or add_refusal(c, leg.target):
        return c, []  # a duplicate, or the room moved on since the service checked
    c = replace(
        c,
        added=(*c.added, leg),
        timeline=_note(c, now, "partner_added", f"{leg.key} target {leg.target}"),
    )
    return c, [_originate_leg(c, leg)]


def _originate_leg(c: Conference, leg: PartnerLeg) -> Originate:
    return _call_into_room(
        c, leg.dial, leg.ring_timeout_s, leg.uniqueid, leg.handoff_id, leg.handoff_url,
        leg.forwarding_number,
    )  # fmt: skip


def _set_leg(c: Conference, leg: PartnerLeg, now: float, what: str, detail: str = "") -> Conference:
    added = tuple(leg if known.key == leg.key else known for known in c.added)
    note = f"{leg.key} target {leg.target}" + (f": {detail}" if detail else "")
    return replace(c, added=added, timeline=_note(c, now, what, note))


def _leg_joined(
    c: Conference, uid: str, channel: str, now: float
) -> tuple[Conference, list[Command]]:
    leg = c.leg(uid)
    if leg is None or leg.state is not LegState.RINGING:
        if leg is not None and leg.state is LegState.DROPPED and channel:
            return c, [ConfbridgeKick(c.id, c.id, channel)]  # answered as it was dropped
        return c, []
    leg = replace(leg, state=LegState.IN, channel=channel, outcome=Outcome.ANSWERED)
    c = _set_leg(c, leg, now, "added_partner_joined")
    if c.state in _TWO_PARTY and Role.AGENT in c.members:
        return _to(c, ConferenceState.ACTIVE, now, "room_active", f"{leg.key} joined"), []
    return c, []


def _leg_gone(c: Conference, uid: str, now: float, gone: bool) -> tuple[Conference, list[Command]]:
    leg = c.leg(uid)
    if leg is None or leg.state is not LegState.IN:
        # A ringing leg's hang-up: its OriginateResponse (or the Tick) says why it failed.
        return c, []
    c = _set_leg(c, replace(leg, state=LegState.LEFT, reason="hung up"), now, "added_partner_left")
    return _settle(c, now)


def _leg_failed(
    c: Conference, uid: str, now: float, reason: str, outcome: Outcome
) -> tuple[Conference, list[Command]]:
    leg = c.leg(uid)
    if leg is None or leg.state is not LegState.RINGING:
        return c, []
    leg = replace(leg, state=LegState.FAILED, outcome=outcome, reason=reason)
    c = _set_leg(c, leg, now, "added_partner_failed", reason)
    return _settle(c, now)


def _drop(c: Conference, key: str, now: float) -> tuple[Conference, list[Command]]:
    if drop_refusal(c, key) is not None:
        return c, []
    if key == PRIMARY_KEY:
        # Its ConfbridgeLeave moves the room on (_left); someone stays with the citizen.
        note = _note(c, now, "partner_drop_requested", f"{PRIMARY_KEY} target {c.target}")
        return replace(c, timeline=note), [ConfbridgeKick(c.id, c.id, c.partner_channel)]
    leg = next(leg for leg in c.added if leg.key == key)
    c, cmds = _drop_leg(c, leg, now)
    c, more = _settle(c, now)
    return c, cmds + more


def _drop_leg(c: Conference, leg: PartnerLeg, now: float) -> tuple[Conference, list[Command]]:
    cmd: Command
    if leg.state is LegState.IN:
        cmd = ConfbridgeKick(c.id, c.id, leg.channel)
    else:
        cmd = Hangup(c.id, leg.uniqueid)  # still ringing
    outcome = leg.outcome or Outcome.CANCELLED
    dropped = replace(leg, state=LegState.DROPPED, outcome=outcome, reason="dropped by the agent")
    return _set_leg(c, dropped, now, "partner_dropped"), [cmd]


def _close_legs(c: Conference, now: float, why: str) -> tuple[Conference, list[Command]]:
    """The room ends: ringing legs are hung up, the ones in the room leave with it."""
    cmds: list[Command] = []
    for leg in c.added:
        if leg.state is LegState.RINGING:
            cmds.append(Hangup(c.id, leg.uniqueid))
            gone = replace(leg, state=LegState.FAILED, outcome=Outcome.ABANDONED, reason=why)
            c = _set_leg(c, gone, now, "added_partner_failed", why)
        elif leg.state is LegState.IN:
            c = _set_leg(
                c, replace(leg, state=LegState.LEFT, reason=why), now, "added_partner_left"
            )
    return c, cmds


def _settle(c: Conference, now: float) -> tuple[Conference, list[Command]]:
    """A partner went away from a multi-party room: who does the citizen have now?"""
    if partners_in(c) > 0:
        return c, []
    if c.state is ConferenceState.ACTIVE:
        return _to(c, ConferenceState.PARTNER_LEFT, now, "partner_left_room"), []
    if c.state is ConferenceState.AGENT_LEFT and not _ringing(c):
        # Nobody left to talk to the citizen: back to the agent queue, never hung up.
        cmds: list[Command] = []
        if Role.CITIZEN in c.members:
            cmds.append(Redirect(c.id, c.citizen_channel, RETURN_CONTEXT, RETURN_EXTEN))
        c = replace(c, members=frozenset(), timeline=_note(c, now, "citizen_to_queue"))
        return _to(c, ConferenceState.ENDED, now, "ended", "agent and every partner gone"), cmds
    return c, []


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
