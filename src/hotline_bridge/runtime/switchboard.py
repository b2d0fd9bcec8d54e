"""Routes PBX feedback to the capabilities, in order, and rebuilds state after reconnects.

Every AMI event is handed synchronously, in socket arrival order, first to the call model and
then to transfers and three-way calls; nothing is scheduled per event, so one call's events are
always handled in the order Asterisk sent them. Command results are routed by their ``ref``.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from hotline_bridge.calls.service import CallService
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.core.commands import CommandResult
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.transfers.service import TransferService
from hotline_bridge.workorders.service import ReminderService

log = structlog.get_logger(__name__)

# The only events the bridge needs; everything else is dropped by the AMI edge before parsing.
EVENTS = frozenset(
    {
        "FullyBooted",
        "Newchannel",
        "Newstate",
        "NewCallerid",
        "Hangup",
        "BridgeEnter",
        "BridgeLeave",
        "DialState",
        "DialEnd",
        "UserEvent",
        "ConfbridgeJoin",
        "ConfbridgeLeave",
        "OriginateResponse",
        "BlindTransfer",
        "QueueCallerJoin",
        "AgentConnect",
        "QueueCallerAbandon",
    }
)


class Switchboard:
    def __init__(
        self,
        calls: CallService,
        transfers: TransferService,
        conferences: ConferenceService,
        reminders: ReminderService | None = None,
    ) -> None:
        self.calls = calls
        self.transfers = transfers
        self.conferences = conferences
        self.reminders = reminders  # 110 duty-line reminders of work orders (ref "r-")
        self.events_handled = 0

    def on_event(self, event: PbxEvent) -> None:
        self.events_handled += 1
        try:
            self.calls.on_event(event)
            self.transfers.on_event(event)
            self.conferences.on_event(event)
            if self.reminders is not None:
                self.reminders.on_event(event)
        except Exception:
            # One bad event must not stop the stream for every other call.
            log.exception("event handling failed", ami_event=event.get("Event", ""))

    def on_result(self, result: CommandResult) -> None:
        ref = result.command.ref
        if ref.startswith("t-"):
            self.transfers.on_result(result)
        elif ref.startswith("c-"):
            self.conferences.on_result(result)
        elif ref.startswith("r-") and self.reminders is not None:
            self.reminders.on_result(result)

    def link_down(self) -> None:
        self.calls.pbx_ready = False

    def rebuild(self, channels: Iterable[PbxEvent]) -> None:
        """Replace the call model with Asterisk's own view after a (re)connect."""
        self.calls.rebuild(channels)
        live = set(self.calls.model.channels)
        self.transfers.reconcile(live)
        self.conferences.reconcile(live)
        if self.reminders is not None:
            self.reminders.reconcile(live)
        self.calls.pbx_ready = True
