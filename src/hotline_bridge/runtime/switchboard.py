"""Routes PBX feedback to the capabilities, in order, and rebuilds state after reconnects.

Every AMI event is handed synchronously, in socket arrival order, first to the call model and
then to every capability that registered (transfers, three-way calls, reminders...); nothing is
scheduled per event, so one call's events are always handled in the order Asterisk sent them.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from hotline_bridge.calls.service import CallService
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.feedback import PbxFeedback, ResultHandler, Submit
from hotline_bridge.runtime.interpreter import Interpreter

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
        "AgentCalled",
        "AgentConnect",
        "AgentComplete",
        "AgentRingNoAnswer",
        "QueueCallerAbandon",
    }
)


class Switchboard:
    """The runtime's :class:`~hotline_bridge.core.feedback.PbxPort`: capabilities register here.

    The call model always sees an event first (the others read it); then every registered
    capability, in registration order. Results never pass here: each capability's submit
    function (``submitter``) sends them straight back to the capability that issued them.
    """

    def __init__(self, calls: CallService, interpreter: Interpreter) -> None:
        self.calls = calls
        self._interpreter = interpreter
        self._listeners: list[PbxFeedback] = []
        self.events_handled = 0

    def submitter(self, on_result: ResultHandler) -> Submit:
        return self._interpreter.submitter(on_result)

    def listen(self, feedback: PbxFeedback) -> None:
        self._listeners.append(feedback)

    def on_event(self, event: PbxEvent) -> None:
        self.events_handled += 1
        try:
            self.calls.on_event(event)
        except Exception:
            log.exception("call model failed on event", ami_event=event.get("Event", ""))
        for listener in self._listeners:
            try:
                listener.on_event(event)
            except Exception:
                # One bad event must not stop the stream for every other call or capability.
                log.exception("event handling failed", ami_event=event.get("Event", ""))

    def tick(self, now: float) -> None:
        """One beat of the runtime's clock: every capability steps what is due."""
        for listener in self._listeners:
            try:
                listener.tick(now)
            except Exception:
                log.exception("tick failed", listener=type(listener).__name__)

    def link_down(self) -> None:
        self.calls.pbx_ready = False

    def rebuild(self, channels: Iterable[PbxEvent]) -> None:
        """Replace the call model with Asterisk's own view after a (re)connect."""
        self.calls.rebuild(channels)
        live = set(self.calls.model.channels)
        for listener in self._listeners:
            listener.reconcile(live)
        self.calls.pbx_ready = True
