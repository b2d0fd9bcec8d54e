"""The port through which calls, transfers and three-way calls write the handoff record.

The hot path only needs four things from the record keeper: the call's jurisdiction to route by,
open a record (durably, before any AMI action), append what happened, and the URL the partner
fetches it from. ``handoffs`` provides the implementation over its store; tests may pass a simple
in-memory one.
"""

from __future__ import annotations

from typing import Protocol

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.directory.model import DialPlanEntry
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.store.base import MachineRow


class HandoffRecorder(Protocol):
    def open(
        self,
        *,
        kind: str,
        call: LiveCall,
        target: str,
        handoff: HandoffInput,
        now: float,
        desk: DialPlanEntry | None = None,
        handoff_id: str | None = None,
        machine: MachineRow | None = None,
    ) -> str:
        """Create and durably store the record (queued for the partner link if the desk's
        target is a linked platform); return its id (``handoff_id`` if given, else a new one).
        ``machine``: the first state of the machine that drives it, kept in the same
        transaction. Raises ``errors.Invalid``."""
        ...

    def jurisdiction(self, call_id: str) -> str:
        """The call's jurisdiction as the entry hook found it (``unknown`` if it did not)."""
        ...

    def note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        """Append one timeline event (``what`` is the machine's timeline name)."""
        ...

    def url(self, handoff_id: str) -> str: ...
