"""Where a carry-number transfer happens: checks, the record, the machine, the PBX commands.

Order of work for one hotkey press, all before the first ``await``: resolve the agent's call,
check the target, claim the call (a second press gets 409), write the handoff record (durable),
start the machine; only then are the machine's commands handed to the interpreter. AMI events
and command results are fed back through :meth:`on_event` and :meth:`on_result` in arrival order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import structlog

from ..calls.model import LiveCall
from ..calls.service import CallService
from ..commands import Command, CommandResult
from ..errors import Invalid, NotFound
from ..events import PbxEvent
from ..handoffs.model import HandoffInput
from ..privacy import mask_number
from ..recorder import HandoffRecorder
from ..settings import Settings
from . import machine
from .machine import Transfer, TransferState

log = structlog.get_logger(__name__)

_KEEP_FINISHED = 10_000  # finished transfers kept in memory for GET; the record keeps the rest
_EXPIRY_MARGIN_S = 30.0


class TransferService:
    def __init__(
        self,
        settings: Settings,
        calls: CallService,
        recorder: HandoffRecorder,
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Transfer, Transfer], None] | None = None,
    ) -> None:
        self._settings = settings
        self._calls = calls
        self._recorder = recorder
        self._submit = submit
        self._clock = clock
        self._on_change = on_change
        self.transfers: OrderedDict[str, Transfer] = OrderedDict()
        self._active_by_citizen: dict[str, str] = {}

    # -- the hotkey ------------------------------------------------------------------------

    def carry_transfer(self, call: LiveCall, target: str, handoff: HandoffInput) -> Transfer:
        tgt = self._settings.targets.get(target)
        if tgt is None:
            known = ", ".join(sorted(self._settings.targets)) or "none"
            raise Invalid(f"unknown target {target!r}; known targets: {known}")
        transfer_id = f"t-{uuid.uuid4().hex[:20]}"
        self._calls.claim(call.call_id, transfer_id)
        now = self._clock()
        try:
            handoff_id = self._recorder.open(
                kind="carry_transfer", call=call, target=target, handoff=handoff, now=now
            )
        except Exception:
            self._calls.release(call.call_id, transfer_id)
            raise
        bridge = self._settings.bridge
        plan = machine.CarryPlan(
            transfer_id=transfer_id,
            handoff_id=handoff_id,
            handoff_url=self._recorder.url(handoff_id),
            call_id=call.call_id,
            citizen_channel=call.citizen_channel,
            citizen_number=call.citizen_number,
            agent_id=call.agent_id,
            agent_channel=call.agent_channel,
            target=target,
            target_number=tgt.number,
            target_dial=tgt.dial,
            forwarding_number=tgt.forwarding_number,
            ring_timeout_s=tgt.ring_timeout_s or bridge.ring_timeout_s,
            return_dial=f"PJSIP/{self._agent_endpoint(call.agent_id)}",
            return_queue=bridge.return_queue,
            return_timeout_s=bridge.return_timeout_s,
        )
        transfer, commands = machine.start(plan, now)
        self._remember(transfer)
        self._active_by_citizen[call.call_id] = transfer_id
        self._recorder.note(handoff_id, "transfer_requested", f"target {target}", now)
        log.info(
            "carry transfer requested",
            transfer_id=transfer_id,
            handoff_id=handoff_id,
            call_id=call.call_id,
            agent=call.agent_id,
            target=target,
            citizen=mask_number(call.citizen_number),
        )
        self._submit(commands)
        self._schedule_expiry(transfer_id, plan.ring_timeout_s + plan.return_timeout_s)
        return transfer

    def get(self, transfer_id: str) -> Transfer:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            raise NotFound(f"no transfer {transfer_id}")
        return transfer

    # -- feedback from the PBX ---------------------------------------------------------------

    def on_result(self, result: CommandResult) -> None:
        transfer = self.transfers.get(result.command.ref)
        if transfer is not None:
            self._step(transfer, result)

    def on_event(self, event: PbxEvent) -> None:
        name = event.get("Event", "")
        if name == "BridgeEnter":
            self._maybe_returned(event.get("BridgeUniqueid", ""))
            return
        transfer = self._active(event.get("Uniqueid", ""))
        if transfer is None:
            return
        domain_event: machine.Event | None = None
        if name == "UserEvent":
            kind = event.get("UserEvent", "")
            if event.get("HandoffId") != transfer.handoff_id:
                return
            if kind == "HandoffDialing":
                domain_event = machine.PartnerDialing()
            elif kind == "HandoffResult":
                domain_event = machine.PartnerResult(event.get("DialStatus", ""))
        elif name == "DialState" and event.get("DialStatus") == "RINGING":
            domain_event = machine.PartnerRinging()
        elif name == "DialEnd" and event.get("DialStatus") == "ANSWER":
            # The partner answered: Dial's own HandoffResult comes only when that call is over.
            # (A DialEnd in the return path arrives in RETURNING, where the machine ignores it.)
            domain_event = machine.PartnerResult("ANSWER")
        elif name == "Hangup":
            domain_event = machine.CitizenHungUp()
        if domain_event is not None:
            self._step(transfer, domain_event)

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect: a transfer whose citizen channel is gone can no longer be observed."""
        for transfer in list(self.transfers.values()):
            if not transfer.done and transfer.call_id not in live_uniqueids:
                self._step(transfer, machine.Expired())

    def _maybe_returned(self, bridge_id: str) -> None:
        for chan in self._calls.model.bridge_members(bridge_id):
            transfer = self._active(chan.uniqueid)
            if transfer is None or transfer.state is not TransferState.RETURNING:
                continue
            call = self._calls.model.call(transfer.call_id)
            if call is not None:
                self._step(transfer, machine.CitizenReturned(call.agent_id))

    # -- plumbing ----------------------------------------------------------------------------

    def _active(self, citizen_uid: str) -> Transfer | None:
        transfer_id = self._active_by_citizen.get(citizen_uid)
        return self.transfers.get(transfer_id) if transfer_id else None

    def _step(self, transfer: Transfer, event: machine.Event) -> None:
        now = self._clock()
        new, commands = machine.step(transfer, event, now)
        if new is transfer:
            return
        self.transfers[new.id] = new
        for entry in new.timeline[len(transfer.timeline) :]:
            self._recorder.note(new.handoff_id, entry.what, entry.detail, entry.at)
        if new.state is not transfer.state:
            log.info(
                "carry transfer state",
                transfer_id=new.id,
                handoff_id=new.handoff_id,
                call_id=new.call_id,
                state=new.state.value,
                outcome=new.outcome.value if new.outcome else None,
            )
        if new.done:
            self._active_by_citizen.pop(new.call_id, None)
            self._calls.release(new.call_id, new.id)
        if self._on_change is not None:
            self._on_change(transfer, new)
        self._submit(commands)

    def _remember(self, transfer: Transfer) -> None:
        self.transfers[transfer.id] = transfer
        while len(self.transfers) > _KEEP_FINISHED:
            oldest_id, oldest = next(iter(self.transfers.items()))
            if not oldest.done:
                break
            del self.transfers[oldest_id]

    def _schedule_expiry(self, transfer_id: str, seconds: float) -> None:
        def expire() -> None:
            transfer = self.transfers.get(transfer_id)
            if transfer is not None and not transfer.done:
                self._step(transfer, machine.Expired())

        asyncio.get_running_loop().call_later(seconds + _EXPIRY_MARGIN_S, expire)

    def _agent_endpoint(self, agent_id: str) -> str:
        agent = self._settings.agent(agent_id)
        return agent.endpoint if agent else agent_id
