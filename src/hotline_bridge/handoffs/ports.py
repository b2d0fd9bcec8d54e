"""The port through which calls, transfers and three-way calls write the handoff record.

The hot path only needs three things from the record keeper: open a record (durably, before any
AMI action), append what happened, and the URL the partner fetches it from. ``handoffs`` provides
the implementation over its store; tests may pass a simple in-memory one.
"""

from __future__ import annotations

from typing import Protocol

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)


class HandoffRecorder(Protocol):
    def open(
        self,
        *,
        kind: str,
        call: LiveCall,
        target: str,
        handoff: HandoffInput,
        now: float,
    ) -> str:
        """Create and durably store the record; return its id. Raises ``errors.Invalid``."""
        ...

    def note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        """Append one timeline event (``what`` is the machine's timeline name)."""
        ...

    def url(self, handoff_id: str) -> str: ...
