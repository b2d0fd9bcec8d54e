"""How a capability talks to the PBX without knowing AMI: the ports the runtime implements.

A capability hands its commands (data) to a :data:`Submit` function it was given for itself, so
every result comes back to the capability that issued the command (registration, not id
prefixes). It registers one :class:`PbxFeedback` to see every PBX event in arrival order, to
reconcile its in-flight state after a reconnect, and to be told that time passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.core.events import PbxEvent

Submit = Callable[[Sequence[Command]], None]
ResultHandler = Callable[[CommandResult], None]


class PbxFeedback(Protocol):
    """What a capability registers to follow the PBX."""

    def on_event(self, event: PbxEvent) -> None:
        """One AMI event, in socket arrival order; must be safe to receive twice."""
        ...

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a (re)connect: settle what can no longer be observed (its channels are gone)."""
        ...

    def tick(self, now: float) -> None:
        """Time passed (epoch seconds): step what is due. The only way time reaches a machine:
        each keeps a ``due_at`` in its state, and no capability schedules timers of its own."""
        ...


class PbxPort(Protocol):
    """The runtime's side: a submit function per capability, and event registration."""

    def submitter(self, on_result: ResultHandler) -> Submit: ...

    def listen(self, feedback: PbxFeedback) -> None: ...
