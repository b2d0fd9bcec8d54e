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
from hotline_bridge.conferences.machine import Conference, Role
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
        for uid in (conf.call_id, conf.agent_uniqueid, conf.partner_uniqueid):
            self._active_by_uid[uid] = conf.id
        return conf

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
        domain_event: machine.Event | None = None
        if name == "OriginateResponse":
            if event.get("Response") == "Failure":
                domain_event = machine.PartnerOriginateFailed(event.get("Reason", ""))
        elif role is None:
            return
        elif name == "ConfbridgeJoin" and event.get("Conference") == conf.id:
            domain_event = machine.MemberJoined(role, event.get("Channel", ""))
        elif name == "ConfbridgeLeave" and event.get("Conference") == conf.id:
            domain_event = machine.MemberLeft(role)
        elif name == "Hangup":
            domain_event = machine.ChannelGone(role)
        if domain_event is not None:
            self._step(conf, domain_event)

    def tick(self, now: float) -> None:
        """Time passed: a three-way call past its ``due_at`` is settled by the machine."""
        for conf in self.book.live():
            if now >= conf.due_at:
                self._step(conf, machine.Tick(), now)
        self.book.prune(now)

    def restore(self) -> list[Conference]:
        """After a restart: the three-way calls the last process left in flight, back in the
        book; parties gone meanwhile are settled by :meth:`reconcile` once the link is up."""
        restored = self.book.restore()
        for conf in restored:
            for uid in (conf.call_id, conf.agent_uniqueid, conf.partner_uniqueid):
                self._active_by_uid[uid] = conf.id
        return restored

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect: parties whose channels vanished while the link was down are gone."""
        for conf in self.book.live():
            for uid in (conf.call_id, conf.agent_uniqueid, conf.partner_uniqueid):
                role = conf.role_of(uid)
                if role is not None and uid not in live_uniqueids and not conf.done:
                    conf = self._step(conf, machine.ChannelGone(role))

    # -- plumbing ----------------------------------------------------------------------------

    def _step(self, conf: Conference, event: machine.Event, now: float | None = None) -> Conference:
        new, commands = machine.step(conf, event, self.book.clock() if now is None else now)
        self.book.advance(conf, new, commands)
        if new.done:
            for uid in (new.call_id, new.agent_uniqueid, new.partner_uniqueid):
                self._active_by_uid.pop(uid, None)
        return new


__all__ = ["ConferenceService", "Role"]
