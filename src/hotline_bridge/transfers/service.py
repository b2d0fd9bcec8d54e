"""Where a carry-number transfer happens: checks, the record, the machine, the PBX commands.

One hotkey press, all before the first ``await``: resolve the agent's call, check the target,
claim the call (a second press gets 409), write the handoff record (durable), start the machine;
only then are its commands handed to the interpreter (see ``calls.book``). AMI events and
command results come back through :meth:`on_event` and :meth:`on_result` in arrival order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.config.settings import Settings
from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.directory.configured import configured_directory
from hotline_bridge.directory.model import Directory, Purpose
from hotline_bridge.handoffs.book import BookSpec, HandoffBook, route
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.ports import HandoffRecorder
from hotline_bridge.transfers import machine
from hotline_bridge.transfers.machine import Transfer, TransferState

CARRY_TRANSFER = BookSpec(
    kind="carry_transfer", label="carry transfer", id_key="transfer_id", id_prefix="t"
)


class TransferService:
    def __init__(
        self,
        settings: Settings,
        calls: CallService,
        recorder: HandoffRecorder,
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[Transfer, Transfer], None] | None = None,
        directory: Directory | None = None,
    ) -> None:
        self._settings = settings
        # None: the settings' [targets] tables (unit tests); the runtime passes the configured one.
        self._directory = directory or configured_directory(settings).directory
        self._calls = calls
        self.book: HandoffBook[Transfer] = HandoffBook(
            CARRY_TRANSFER,
            calls,
            recorder,
            submit,
            clock,
            on_change,
        )
        self._active_by_citizen: dict[str, str] = {}

    @property
    def transfers(self) -> dict[str, Transfer]:
        return self.book.items

    # -- the hotkey ------------------------------------------------------------------------

    def carry_transfer(self, call: LiveCall, target: str, handoff: HandoffInput) -> Transfer:
        desk = route(
            self._directory,
            target,
            self.book.recorder.jurisdiction(call.call_id),
            handoff,
            Purpose.TRANSFER,
            self.book.clock(),
        )
        bridge = self._settings.bridge
        agent = self._settings.agent(call.agent_id)
        ring_timeout_s = desk.ring_timeout_s or bridge.ring_timeout_s

        def start(
            ref: str, handoff_id: str, url: str, now: float
        ) -> tuple[Transfer, list[Command]]:
            plan = machine.CarryPlan(
                transfer_id=ref,
                handoff_id=handoff_id,
                handoff_url=url,
                call=call,
                target=target,
                target_number=desk.number,
                target_dial=desk.dial,
                forwarding_number=desk.forwarding_number,
                ring_timeout_s=ring_timeout_s,
                return_dial=f"PJSIP/{agent.endpoint if agent else call.agent_id}",
                return_queue=bridge.return_queue,
                return_timeout_s=bridge.return_timeout_s,
            )
            return machine.start(plan, now)

        transfer = self.book.open(call, target, handoff, start, desk)
        self._active_by_citizen[call.call_id] = transfer.id
        return transfer

    def get(self, transfer_id: str) -> Transfer:
        return self.book.get(transfer_id)

    # -- feedback from the PBX ---------------------------------------------------------------

    def on_result(self, result: CommandResult) -> None:
        transfer = self.book.items.get(result.command.ref)
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

    def tick(self, now: float) -> None:
        """Time passed: a transfer past its ``due_at`` is given up (the machine decides)."""
        for transfer in self.book.live():
            if now >= transfer.due_at:
                self._step(transfer, machine.Tick(), now)
        self.book.prune(now)

    def restore(self) -> list[Transfer]:
        """After a restart: the transfers the last process left in flight, back in the book;
        the PBX's state settles them once the link is up (:meth:`reconcile`)."""
        restored = self.book.restore()
        for transfer in restored:
            if not transfer.done:
                self._active_by_citizen[transfer.call_id] = transfer.id
        return restored

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a (re)connect: each transfer in flight is told where the PBX shows its citizen
        (the machine derives the true state; events missed meanwhile are gone)."""
        model = self._calls.model
        for transfer in self.book.live():
            chan = model.channels.get(transfer.call_id)
            if transfer.call_id not in live_uniqueids or chan is None:
                seen = machine.Reconciled("gone")
            elif not chan.bridge_id:
                seen = machine.Reconciled("dialplan")
            elif (call := model.call(transfer.call_id)) is not None and call.agent_id:
                seen = machine.Reconciled(
                    "with_agent", call.agent_id, call.agent_channel == transfer.agent_channel
                )
            else:
                seen = machine.Reconciled("with_partner")
            self._step(transfer, seen)

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
        return self.book.items.get(transfer_id) if transfer_id else None

    def _step(self, transfer: Transfer, event: machine.Event, now: float | None = None) -> None:
        new, commands = machine.step(transfer, event, self.book.clock() if now is None else now)
        self.book.advance(transfer, new, commands)
        if new.done:
            self._active_by_citizen.pop(new.call_id, None)
