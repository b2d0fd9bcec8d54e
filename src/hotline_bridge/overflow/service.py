"""Overflow to remote seats, the imperative shell: polls the citizens' queue, steps the machine,
hands its commands (global dialplan variables) to the PBX, and counts the calls the dialplan
overflowed or brought back to the local queue (its ``OverflowDialing`` / ``OverflowFallback``
UserEvents).

The queue is read through a :data:`QueueReader` the runtime gives (AMI ``QueueSummary``); a read
that fails, times out or answers nonsense is a failed poll: nothing changes, nothing is renewed
(the PBX's lease then runs out by itself), it is counted, and it never raises out of the loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from hotline_bridge.config.settings import OverflowSettings
from hotline_bridge.core.commands import CommandResult
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.feedback import Submit
from hotline_bridge.overflow import machine
from hotline_bridge.overflow.machine import Overflow, Policy, Sample

log = structlog.get_logger(__name__)

# Reads one queue: the items of AMI QueueSummary for it (one per queue, usually exactly one).
QueueReader = Callable[[str], Awaitable[Sequence[PbxEvent]]]

OVERFLOWED = "overflowed"  # the dialplan dialled the remote seat group
FELL_BACK = "fell_back"  # the remote site did not take it: the citizen went to the local queue
_CALL_RESULTS = {"OverflowDialing": OVERFLOWED, "OverflowFallback": FELL_BACK}


def policy_of(settings: OverflowSettings) -> Policy:
    assert settings.dial is not None, "checked by the settings when enabled"
    return Policy(
        start_waiting=settings.start_waiting,
        start_oldest_wait_s=settings.start_oldest_wait_s,
        stop_waiting=settings.stop_waiting,
        stop_oldest_wait_s=settings.stop_oldest_wait_s,
        stop_hold_s=settings.stop_hold_s,
        lease_s=settings.lease_s,
        dial=settings.dial,
        ring_timeout_s=settings.ring_timeout_s,
    )


class BadSample(ValueError):
    """The PBX's answer does not describe the queue (missing, or not numbers)."""


def sample_of(items: Sequence[PbxEvent], queue: str, at: float) -> Sample:
    """The queue's QueueSummary item as a :class:`Sample` (pure)."""
    for item in items:
        if item.get("Queue") != queue:
            continue
        try:
            return Sample(
                waiting=int(item.get("Callers", "")),
                oldest_wait_s=float(item.get("LongestHoldTime", "")),
                available=int(item.get("Available", "")),
                at=at,
            )
        except ValueError:
            raise BadSample(f"queue {queue}: fields are not numbers") from None
    raise BadSample(f"queue {queue} not in the PBX's QueueSummary")


class OverflowService:
    def __init__(
        self,
        settings: OverflowSettings,
        queue: str,
        read_queue: QueueReader,
        submit: Submit,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.policy = policy_of(settings)
        self.state = Overflow()
        self._read = read_queue
        self._submit = submit
        self._clock = clock
        self.polls_failed = 0
        self._failing = False
        # Observers (metrics): a transition (active now), a call result, a poll's outcome.
        self.on_transition: Callable[[bool], None] = lambda active: None
        self.on_call: Callable[[str], None] = lambda result: None
        self.on_poll: Callable[[bool], None] = lambda ok: None

    async def poll(self) -> None:
        """Read the queue once and act on it. Never raises."""
        try:
            items = await self._read(self.queue)
            sample = sample_of(items, self.queue, self._clock())
        except Exception as exc:  # the AMI edge's errors, a bad answer: all one failed poll
            self.polls_failed += 1
            self.on_poll(False)
            if not self._failing:  # logged once per outage; the metric counts every one
                self._failing = True
                error = str(exc) or type(exc).__name__
                log.warning("overflow poll failed", queue=self.queue, error=error)
            self._step(machine.PollFailed(str(exc)))
            return
        self.on_poll(True)
        if self._failing:
            self._failing = False
            log.info("overflow poll recovered", queue=self.queue, failed_so_far=self.polls_failed)
        self._step(sample)

    def _step(self, event: machine.Event) -> None:
        old = self.state
        self.state, commands = machine.step(old, event, self.policy)
        if self.state.active != old.active:
            log.info(
                "overflow on" if self.state.active else "overflow off",
                queue=self.queue,
                reason=self.state.reason,
            )
            self.on_transition(self.state.active)
        if commands:
            self._submit(commands)

    def on_result(self, result: CommandResult) -> None:
        # A lost "on" is re-sent with the next sample; a lost "off" is covered by the lease.
        if not result.ok:
            log.warning("overflow switch not set", reason=result.reason)

    # -- PbxFeedback -------------------------------------------------------------------------------

    def on_event(self, event: PbxEvent) -> None:
        if event.get("Event") != "UserEvent":
            return
        result = _CALL_RESULTS.get(event.get("UserEvent"))
        if result is not None:
            self.on_call(result)

    def reconcile(self, live_uniqueids: set[str]) -> None:
        return None

    def tick(self, now: float) -> None:
        return None

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        s, last = self.state, self.state.last
        return {
            "enabled": self.settings.enabled,
            "queue": self.queue,
            "active": s.active,
            "reason": s.reason,
            "changed_at": s.changed_at,
            "calm_since": s.calm_since,
            "lease_until": int(last.at + self.policy.lease_s) if s.active and last else None,
            "polls_failed": self.polls_failed,
            "last_sample": None
            if last is None
            else {
                "waiting": last.waiting,
                "oldest_wait_s": last.oldest_wait_s,
                "available": last.available,
                "at": last.at,
            },
        }
