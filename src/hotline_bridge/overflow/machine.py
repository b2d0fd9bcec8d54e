"""Overflow to remote seats (远程话务座席), pure: ``(state, event, now) -> (state, commands)``.

The input is a sample of the citizens' queue (callers waiting, the oldest wait, agents free);
the output is what the PBX's dialplan must read: the global switch ``HOTLINE_OVERFLOW`` (on/off)
and its lease ``HOTLINE_OVERFLOW_UNTIL`` (epoch seconds), renewed by every sample while on. The
dialplan overflows only while ``${EPOCH}`` is below the lease, so when the bridge dies or loses
sight of the queue, overflow lapses back to the local queue by itself: a failed poll renews
nothing.

Hysteresis, so a queue hovering at a threshold does not flip the switch on every sample:

- off -> on as soon as the queue is short of seats: ``start_waiting`` callers waiting with no
  agent free, or the oldest caller waiting ``start_oldest_wait_s`` (agents logged in but not
  answering count as short too);
- on -> off only once the queue has been calm (``waiting <= stop_waiting`` and the oldest wait
  ``<= stop_oldest_wait_s``, both below the start thresholds) for ``stop_hold_s`` without a
  break: any sample that is not calm restarts the wait.

A sample older than the last one taken (a late reply) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hotline_bridge.core.commands import Command, SetGlobal

REF = "overflow"  # the commands' ref: one switch per bridge
FLAG = "HOTLINE_OVERFLOW"  # on | off
UNTIL = "HOTLINE_OVERFLOW_UNTIL"  # epoch seconds; the dialplan overflows only before it
DIAL = "HOTLINE_OVERFLOW_DIAL"  # the remote seat group's dial string
RING_TIMEOUT = "HOTLINE_OVERFLOW_RING_TIMEOUT"  # seconds before falling back to the queue


@dataclass(frozen=True, slots=True)
class Policy:
    """The thresholds (``[overflow]`` of the settings, checked there: stop below start)."""

    start_waiting: int
    start_oldest_wait_s: float
    stop_waiting: int
    stop_oldest_wait_s: float
    stop_hold_s: float
    lease_s: float
    dial: str
    ring_timeout_s: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the queue (AMI ``QueueSummary``), taken at ``at`` (epoch seconds)."""

    waiting: int
    oldest_wait_s: float
    available: int  # agents logged in, not paused, not on a call
    at: float


@dataclass(frozen=True, slots=True)
class PollFailed:
    """The queue could not be read: nothing changes, nothing is renewed."""

    reason: str


Event = Sample | PollFailed


@dataclass(frozen=True, slots=True)
class Overflow:
    active: bool = False
    published: bool = False  # the PBX has been told the current state at least once
    calm_since: float | None = None  # while active: start of the current calm stretch
    changed_at: float | None = None
    last_sample_at: float | None = None
    reason: str = ""  # why the last transition happened (for logs and the status API)
    last: Sample | None = None


def short_of_seats(policy: Policy, s: Sample) -> str | None:
    """Why the queue is short of seats now, or None."""
    if s.waiting >= policy.start_waiting and s.available == 0:
        return f"{s.waiting} waiting, no agent free"
    if s.waiting > 0 and s.oldest_wait_s >= policy.start_oldest_wait_s:
        return f"oldest caller waiting {s.oldest_wait_s:.0f} s"
    return None


def calm(policy: Policy, s: Sample) -> bool:
    return s.waiting <= policy.stop_waiting and s.oldest_wait_s <= policy.stop_oldest_wait_s


def step(state: Overflow, event: Event, policy: Policy) -> tuple[Overflow, list[Command]]:
    """The next state and what the PBX must be told. Pure; safe to repeat a sample."""
    match event:
        case PollFailed():
            return state, []
        case Sample() as s:
            if state.last_sample_at is not None and s.at <= state.last_sample_at:
                return state, []  # stale or repeated: the newer sample already decided
            return _sampled(replace(state, last_sample_at=s.at, last=s), s, policy)
    return state, []


def _sampled(state: Overflow, s: Sample, policy: Policy) -> tuple[Overflow, list[Command]]:
    if not state.active:
        why = short_of_seats(policy, s)
        if why is not None:
            new = replace(state, active=True, calm_since=None, changed_at=s.at, reason=why)
            return _published(new), publish(new, policy)
        if not state.published:  # first sample: clear whatever a previous run left
            return _published(state), publish(state, policy)
        return state, []
    if not calm(policy, s):
        return replace(state, calm_since=None), publish(state, policy)
    since = state.calm_since if state.calm_since is not None else s.at
    if s.at - since >= policy.stop_hold_s:
        why = f"queue calm for {s.at - since:.0f} s"
        new = replace(state, active=False, calm_since=None, changed_at=s.at, reason=why)
        return new, publish(new, policy)
    new = replace(state, calm_since=since)
    return new, publish(new, policy)


def _published(state: Overflow) -> Overflow:
    return state if state.published else replace(state, published=True)


def publish(state: Overflow, policy: Policy) -> list[Command]:
    """What the dialplan reads: on with a fresh lease (and where to overflow to), or off.

    While on, the lease is renewed on every sample; the dial string and ring timeout come along
    so the PBX never holds a switch without them (a ``core reload`` clears globals)."""
    if not state.active or state.last is None:
        return [SetGlobal(REF, FLAG, "off"), SetGlobal(REF, UNTIL, "0")]
    until = int(state.last.at + policy.lease_s)
    return [
        SetGlobal(REF, DIAL, policy.dial),
        SetGlobal(REF, RING_TIMEOUT, str(policy.ring_timeout_s)),
        SetGlobal(REF, UNTIL, str(until)),
        SetGlobal(REF, FLAG, "on"),
    ]
