"""Where a three-way call happens: checks, the record, the machine, the PBX commands.

Same discipline as carry transfers (``calls.book``): everything decided and recorded before the
first command leaves. ConfBridge join/leave, OriginateResponse and hang-up events become machine
events by who the channel is (citizen, agent, partner: known by Uniqueid, the partner's because
we chose it with Originate ``ChannelId``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.conferences import machine
from hotline_bridge.conferences.machine import Conference, PartnerLeg, Role
from hotline_bridge.config.settings import Settings
from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.core.errors import Conflict, Forbidden
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.directory.configured import configured_directory
from hotline_bridge.directory.model import Directory, Purpose
from hotline_bridge.handoffs.book import BookSpec, HandoffBook, route
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.ports import HandoffRecorder

THREE_WAY = BookSpec(
    kind="three_way",
    label="three-way",
    id_key="conference_id",
    id_prefix="c",
)


class ConferenceService:
    def __init__(
        self,
        settings: Settings,
        calls: CallService,
        recorder: HandoffRecorder,
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Conference, Conference], None] | None = None,
        directory: Directory | None = None,
    ) -> None:
        self._settings = settings
        # None: the settings' [targets] tables (unit tests); the runtime passes the configured one.
        self._directory = directory or configured_directory(settings).directory
        self.book: HandoffBook[Conference] = HandoffBook(
            THREE_WAY,
            calls,
            recorder,
            submit,
            clock,
            on_change,
        )
        self._active_by_uid: dict[str, str] = {}  # any party's Uniqueid -> conference id

    @property
    def conferences(self) -> dict[str, Conference]:
        return self.book.items

    def three_way(self, call: LiveCall, target: str, handoff: HandoffInput) -> Conference:
        desk = route(
            self._directory,
            target,
            self.book.recorder.jurisdiction(call.call_id),
            handoff,
            Purpose.THREE_WAY,
            self.book.clock(),
        )
        ring_timeout_s = desk.ring_timeout_s or self._settings.bridge.ring_timeout_s

        def start(
            ref: str, handoff_id: str, url: str, now: float
        ) -> tuple[Conference, list[Command]]:
            plan = machine.ThreeWayPlan(
                conference_id=ref,
                handoff_id=handoff_id,
                handoff_url=url,
                call=call,
                target=target,
                target_dial=desk.dial,
                forwarding_number=desk.forwarding_number,
                ring_timeout_s=ring_timeout_s,
            )
            return machine.start(plan, now)

        conf = self.book.open(call, target, handoff, start, desk)
        for uid in conf.uniqueids():
            self._active_by_uid[uid] = conf.id
        return conf

    def add_partner(
        self,
        conference_id: str,
        agent_id: str | None,
        target: str,
        handoff: HandoffInput,
        call_id: str | None = None,
    ) -> tuple[Conference, PartnerLeg]:
        """Call one more partner into a running room (multi-party). Like the first partner:
        routed by the directory for the call's jurisdiction, its own record written before the
        Originate leaves, the citizen's number and the handoff headers on its INVITE.
        ``call_id``: the call the press was for; a room on another call is a 409."""
        conf = self._owned(conference_id, agent_id)
        if call_id is not None and conf.call_id != call_id:
            raise Conflict(f"conference {conference_id} is not on call {call_id}: nothing done")
        refusal = machine.add_refusal(conf, target)
        if refusal is not None:
            raise Conflict(refusal)
        now = self.book.clock()
        recorder = self.book.recorder
        desk = route(
            self._directory,
            target,
            recorder.jurisdiction(conf.call_id),
            handoff,
            Purpose.THREE_WAY,
            now,
        )
        handoff_id = recorder.open(
            kind=THREE_WAY.kind,
            call=_call_of(conf),
            target=target,
            handoff=handoff,
            now=now,
            desk=desk,
        )
        key = machine.next_leg_key(conf)
        ring_timeout_s = desk.ring_timeout_s or self._settings.bridge.ring_timeout_s
        leg = machine.PartnerLeg(
            key=key,
            uniqueid=f"{conf.id}-{key}",
            target=target,
            handoff_id=handoff_id,
            handoff_url=recorder.url(handoff_id),
            dial=desk.dial,
            forwarding_number=desk.forwarding_number,
            ring_timeout_s=ring_timeout_s,
            state=machine.LegState.RINGING,
            due_at=now + ring_timeout_s + machine.EXPIRY_MARGIN_S,
        )
        self._active_by_uid[leg.uniqueid] = conf.id
        new = self._step(conf, machine.PartnerAdded(leg), now)
        recorder.note(handoff_id, "three_way_requested", f"target {target}, room {conf.id}", now)
        if new.leg(leg.uniqueid) is None:  # the room moved on between the check and the step
            recorder.note(
                handoff_id, "ended", "the room changed before the partner was called", now
            )
            raise Conflict("cannot add a partner: the conference changed, try again")
        return new, leg

    def drop_partner(self, conference_id: str, agent_id: str | None, key: str) -> Conference:
        """Drop one partner leg (``p1`` the first, ``p2``... the added ones)."""
        conf = self._owned(conference_id, agent_id)
        refusal = machine.drop_refusal(conf, key)
        if refusal is not None:
            raise Conflict(f"cannot drop {key}: {refusal}")
        return self._step(conf, machine.DropRequested(key))

    def leave(self, conference_id: str, agent_id: str | None) -> Conference:
        conf = self._owned(conference_id, agent_id)
        if not machine.can_leave(conf):
            raise Conflict(f"cannot leave: the conference is {conf.state}, the partner must be in")
        return self._step(conf, machine.LeaveRequested())

    def cancel(self, conference_id: str, agent_id: str | None) -> Conference:
        conf = self._owned(conference_id, agent_id)
        if not machine.can_cancel(conf):
            raise Conflict(f"cannot cancel: the conference is {conf.state}")
        return self._step(conf, machine.CancelRequested())

    def get(self, conference_id: str) -> Conference:
        return self.book.get(conference_id)

    def of_agent_channel(self, uniqueid: str) -> Conference:
        """The live three-way call this channel is the agent of (a key dialled in the room)."""
        conf_id = self._active_by_uid.get(uniqueid)
        conf = self.conferences.get(conf_id) if conf_id else None
        if conf is None or conf.done or conf.agent_uniqueid != uniqueid:
            raise Conflict("this channel is not the agent of a live three-way call")
        return conf

    def _owned(self, conference_id: str, agent_id: str | None) -> Conference:
        conf = self.get(conference_id)
        if agent_id is not None and conf.agent_id != agent_id:
            raise Forbidden(f"conference {conference_id} belongs to another agent")
        return conf

    # -- feedback from the PBX ---------------------------------------------------------------

    def on_result(self, result: CommandResult) -> None:
        conf = self.conferences.get(result.command.ref)
        if conf is not None:
            self._step(conf, result)

    def on_event(self, event: PbxEvent) -> None:
        name = event.get("Event", "")
        if name not in ("ConfbridgeJoin", "ConfbridgeLeave", "OriginateResponse", "Hangup"):
            return
        uid = event.get("Uniqueid", "")
        conf_id = self._active_by_uid.get(uid)
        if conf_id is None and name == "OriginateResponse":
            # Fallback when the failed originate carries no Uniqueid: the room is in Data.
            conf_id = event.get("Data", "").split(",", 1)[0]
        conf = self.conferences.get(conf_id or "")
        if conf is None or conf.done:
            return
        role = conf.role_of(uid)
        leg = uid if conf.leg(uid) is not None else ""  # an added partner's leg
        domain_event: machine.Event | None = None
        if name == "OriginateResponse":
            if event.get("Response") == "Failure":
                domain_event = machine.PartnerOriginateFailed(event.get("Reason", ""), leg)
        elif role is None:
            return
        elif name == "ConfbridgeJoin" and event.get("Conference") == conf.id:
            domain_event = machine.MemberJoined(role, event.get("Channel", ""), leg)
        elif name == "ConfbridgeLeave" and event.get("Conference") == conf.id:
            domain_event = machine.MemberLeft(role, leg)
        elif name == "Hangup":
            domain_event = machine.ChannelGone(role, leg)
        if domain_event is not None:
            self._step(conf, domain_event)

    def tick(self, now: float) -> None:
        """Time passed: a three-way call past its ``due_at`` is settled by the machine."""
        for conf in self.book.live():
            if now >= conf.next_due:
                self._step(conf, machine.Tick(), now)
        self.book.prune(now)

    def restore(self) -> list[Conference]:
        """After a restart: the three-way calls the last process left in flight, back in the
        book; parties gone meanwhile are settled by :meth:`reconcile` once the link is up."""
        restored = self.book.restore()
        for conf in restored:
            for uid in conf.uniqueids():
                self._active_by_uid[uid] = conf.id
        return restored

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect: parties whose channels vanished while the link was down are gone."""
        for conf in self.book.live():
            for uid in conf.uniqueids():
                role = conf.role_of(uid)
                if role is not None and uid not in live_uniqueids and not conf.done:
                    leg = conf.leg(uid)
                    if leg is not None and leg.state is machine.LegState.RINGING:
                        # Its OriginateResponse went with the link: it never joined.
                        conf = self._step(
                            conf, machine.PartnerOriginateFailed("gone while unlinked", uid)
                        )
                    else:
                        conf = self._step(conf, machine.ChannelGone(role, uid if leg else ""))

    # -- plumbing ----------------------------------------------------------------------------

    def _step(self, conf: Conference, event: machine.Event, now: float | None = None) -> Conference:
        new, commands = machine.step(conf, event, self.book.clock() if now is None else now)
        self.book.advance(conf, new, commands)
        self._note_legs(conf, new)
        if new.done:
            for uid in new.uniqueids():
                self._active_by_uid.pop(uid, None)
        return new

    def _note_legs(self, old: Conference, new: Conference) -> None:
        """Each added partner's own record hears what happened to its leg."""
        if new.added == old.added:
            return
        before = {leg.key: leg.state for leg in old.added}
        for leg in new.added:
            if before.get(leg.key, leg.state) is leg.state:
                continue
            at = new.timeline[-1].at if new.timeline else self.book.clock()
            for what, detail in _LEG_NOTES[leg.state](leg):
                self.book.recorder.note(leg.handoff_id, what, detail, at)


# What an added leg's own record says when the leg reaches a state.
_LEG_NOTES: dict[machine.LegState, Callable[[PartnerLeg], list[tuple[str, str]]]] = {
    machine.LegState.RINGING: lambda leg: [],
    machine.LegState.IN: lambda leg: [("partner_joined", leg.channel.rsplit("-", 1)[0])],
    machine.LegState.FAILED: lambda leg: [("partner_failed", leg.reason), ("ended", leg.reason)],
    machine.LegState.LEFT: lambda leg: [("ended", leg.reason)],
    machine.LegState.DROPPED: lambda leg: [("partner_dropped", ""), ("ended", leg.reason)],
}


def _call_of(conf: Conference) -> LiveCall:
    """The citizen-agent call a room came from, as a record needs it."""
    return LiveCall(
        call_id=conf.call_id,
        citizen_number=conf.citizen_number,
        citizen_channel=conf.citizen_channel,
        agent_id=conf.agent_id,
        agent_channel=conf.agent_channel,
        agent_uniqueid=conf.agent_uniqueid,
        bridge_id="",
        linkedid="",
        since=0.0,
    )


__all__ = ["ConferenceService", "Role"]
