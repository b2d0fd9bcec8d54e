"""Where a three-way call happens: checks, the record, the machine, the PBX commands.

Same discipline as carry transfers: everything decided and recorded before the first command
leaves; ConfBridge join/leave, OriginateResponse and hang-up events are translated into machine
events by who the channel is (citizen, agent, partner: known by Uniqueid, the partner's because
we chose it with Originate ``ChannelId``).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import structlog

from ..calls.model import LiveCall
from ..calls.service import CallService
from ..commands import Command, CommandResult
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..events import PbxEvent
from ..handoffs.model import HandoffInput
from ..privacy import mask_number
from ..recorder import HandoffRecorder
from ..settings import Settings
from . import machine
from .machine import Conference, Role

log = structlog.get_logger(__name__)

_KEEP_FINISHED = 10_000


class ConferenceService:
    def __init__(
        self,
        settings: Settings,
        calls: CallService,
        recorder: HandoffRecorder,
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Conference, Conference], None] | None = None,
    ) -> None:
        self._settings = settings
        self._calls = calls
        self._recorder = recorder
        self._submit = submit
        self._clock = clock
        self._on_change = on_change
        self.conferences: OrderedDict[str, Conference] = OrderedDict()
        self._active_by_uid: dict[str, str] = {}  # any party's Uniqueid -> conference id

    def three_way(self, call: LiveCall, target: str, handoff: HandoffInput) -> Conference:
        tgt = self._settings.targets.get(target)
        if tgt is None:
            known = ", ".join(sorted(self._settings.targets)) or "none"
            raise Invalid(f"unknown target {target!r}; known targets: {known}")
        conference_id = f"c-{uuid.uuid4().hex[:20]}"
        self._calls.claim(call.call_id, conference_id)
        now = self._clock()
        try:
            handoff_id = self._recorder.open(
                kind="three_way", call=call, target=target, handoff=handoff, now=now
            )
        except Exception:
            self._calls.release(call.call_id, conference_id)
            raise
        plan = machine.ThreeWayPlan(
            conference_id=conference_id,
            handoff_id=handoff_id,
            handoff_url=self._recorder.url(handoff_id),
            call_id=call.call_id,
            citizen_channel=call.citizen_channel,
            citizen_number=call.citizen_number,
            agent_id=call.agent_id,
            agent_channel=call.agent_channel,
            agent_uniqueid=call.agent_uniqueid,
            target=target,
            target_dial=tgt.dial,
            forwarding_number=tgt.forwarding_number,
            ring_timeout_s=tgt.ring_timeout_s or self._settings.bridge.ring_timeout_s,
        )
        conf, commands = machine.start(plan, now)
        self._remember(conf)
        for uid in (conf.call_id, conf.agent_uniqueid, conf.partner_uniqueid):
            self._active_by_uid[uid] = conference_id
        self._recorder.note(handoff_id, "three_way_requested", f"target {target}", now)
        log.info(
            "three-way requested",
            conference_id=conference_id,
            handoff_id=handoff_id,
            call_id=call.call_id,
            agent=call.agent_id,
            target=target,
            citizen=mask_number(call.citizen_number),
        )
        self._submit(commands)
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
        conf = self.conferences.get(conference_id)
        if conf is None:
            raise NotFound(f"no conference {conference_id}")
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

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect: parties whose channels vanished while the link was down are gone."""
        for conf in list(self.conferences.values()):
            for uid in (conf.call_id, conf.agent_uniqueid, conf.partner_uniqueid):
                role = conf.role_of(uid)
                if role is not None and uid not in live_uniqueids and not conf.done:
                    conf = self._step(conf, machine.ChannelGone(role))

    # -- plumbing ----------------------------------------------------------------------------

    def _step(self, conf: Conference, event: machine.Event) -> Conference:
        now = self._clock()
        new, commands = machine.step(conf, event, now)
        if new is conf:
            return conf
        self.conferences[new.id] = new
        for entry in new.timeline[len(conf.timeline) :]:
            self._recorder.note(new.handoff_id, entry.what, entry.detail, entry.at)
        if new.state is not conf.state:
            log.info(
                "three-way state",
                conference_id=new.id,
                handoff_id=new.handoff_id,
                call_id=new.call_id,
                state=new.state.value,
                members=sorted(r.value for r in new.members),
            )
        if new.done:
            for uid in (new.call_id, new.agent_uniqueid, new.partner_uniqueid):
                self._active_by_uid.pop(uid, None)
            self._calls.release(new.call_id, new.id)
        if self._on_change is not None:
            self._on_change(conf, new)
        self._submit(commands)
        return new

    def _remember(self, conf: Conference) -> None:
        self.conferences[conf.id] = conf
        while len(self.conferences) > _KEEP_FINISHED:
            oldest_id, oldest = next(iter(self.conferences.items()))
            if not oldest.done:
                break
            del self.conferences[oldest_id]


__all__ = ["ConferenceService", "Role"]
