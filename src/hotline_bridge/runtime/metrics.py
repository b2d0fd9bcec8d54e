"""Prometheus metrics: what ops watch on the dashboard and alert on.

Label sets are bounded: target names and outcomes come from configuration and enums, never a
phone number or a call id. Values that arrive from the PBX (queue names) or from callers of the
public hooks pass through :class:`_LabelGuard`, which folds anything that looks personal, odd or
one-too-many into ``other``. Counters that already exist elsewhere (AMI statistics, live calls,
the handoff outbox) are read at scrape time by collectors instead of being updated on the hot
path. ``ops/`` holds the dashboard and alert rules built on these names; ``tests/test_ops_rules.py``
fails if a name they use stops being exposed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hotline_bridge.conferences.machine import Conference
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.outcomes import Outcome
from hotline_bridge.handoffs.model import HandoffKind
from hotline_bridge.partners.link import PushOutcome
from hotline_bridge.transfers.machine import Transfer

log = structlog.get_logger(__name__)

# ``*_created`` series double the series count and no dashboard or rule reads them. The switch is
# process-wide; the bridge is the only exporter in its process.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

# Hotkey -> partner answered spans ring time (ring_timeout_s, 20 s by default); AMI round trips
# are sub-millisecond on loopback and seconds only when Asterisk is in trouble.
_HANDOFF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
# The handoffs pressed on a live call: each writes its record first.
_LIVE_CALL_KINDS = (HandoffKind.CARRY_TRANSFER.value, HandoffKind.THREE_WAY.value)
_AMI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)

# Queue results counted from the PBX's own queue events (Asterisk 12+; fields checked against
# the Asterisk 22 AMI event docs: every one carries ``Queue`` next to the caller's channel
# snapshot, whose CallerIDNum is the citizen's number and must never become a label).
_QUEUE_RESULTS = {
    "QueueCallerJoin": "offered",  # the citizen entered the agent queue
    "AgentConnect": "answered",  # a queue member answered and was bridged to the citizen
    "QueueCallerAbandon": "abandoned",  # the citizen hung up while waiting
}

OTHER = "other"  # where out-of-bounds label values go
_UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The handoff outbox as seen at scrape time."""

    depth: int  # items not yet delivered
    oldest_age_s: float  # age of the oldest undelivered item; 0 when the outbox is empty


class _LabelGuard:
    """Keeps one label's values few and impersonal.

    A value becomes ``other`` if it has a run of 7+ digits (a phone number or a Uniqueid, never a
    label), characters outside ``[A-Za-z0-9_.:-]``, more than 40 characters, or if ``limit``
    distinct values were already seen: a misbehaving source costs one extra series, not a
    cardinality explosion.
    """

    _SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
    _DIGIT_RUN = re.compile(r"[0-9]{7,}")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if not value:
            return _UNKNOWN
        if value in self._seen:
            return value
        if (
            not self._SHAPE.fullmatch(value)
            or self._DIGIT_RUN.search(value)
            or len(self._seen) >= self._limit
        ):
            return OTHER
        self._seen.add(value)
        return value


P = ParamSpec("P")


def _never_raises(hook: Callable[P, None]) -> Callable[P, None]:
    """The hooks run inside call handling: a metrics bug must cost a sample, never a call."""

    @functools.wraps(hook)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            log.exception("metrics hook failed", hook=hook.__name__)

    return guarded


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, queues: Iterable[str] = ()
    ) -> None:
        """``queues``: agent queues known from configuration; their series start at 0, so the
        first call of a fresh process is not lost to ``rate()``."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._target = _LabelGuard(limit=32)
        self._queue = _LabelGuard(limit=16)
        self._action = _LabelGuard(limit=32)
        self.transfers = Counter(
            "hotline_transfers",
            "Carry-number transfers finished, by target, partner outcome and final state "
            "(answered, returned to an agent, failed, abandoned, lost).",
            ["target", "outcome", "state"],
            registry=r,
        )
        self.three_way = Counter(
            "hotline_three_way_calls",
            "Three-way calls finished, by target and partner outcome.",
            ["target", "outcome"],
            registry=r,
        )
        self.handoff_latency = Histogram(
            "hotline_handoff_answer_seconds",
            "From the hotkey press to the partner answering, by kind (carry_transfer, three_way) "
            "and target.",
            ["kind", "target"],
            buckets=_HANDOFF_BUCKETS,
            registry=r,
        )
        self.ami_action_latency = Histogram(
            "hotline_ami_action_seconds",
            "AMI action round trip, by action.",
            ["action"],
            buckets=_AMI_BUCKETS,
            registry=r,
        )
        self.record_write_latency = Histogram(
            "hotline_handoff_record_write_seconds",
            "The handoff record's write on a press (validation and the store's commit), which "
            "comes before any AMI action: by kind (carry_transfer, three_way).",
            ["kind"],
            buckets=_AMI_BUCKETS,
            registry=r,
        )
        for kind in _LIVE_CALL_KINDS:
            self.record_write_latency.labels(kind)
        self.citizen_calls = Counter(
            "hotline_citizen_calls",
            "Citizen calls in an agent queue by what became of them (offered, answered, "
            "abandoned), from the PBX's queue events; the manual answer rate is "
            "answered / offered.",
            ["queue", "result"],
            registry=r,
        )
        self.handoff_pushes = Counter(
            "hotline_handoff_pushes",
            "Attempts to push a handoff outbox item to the partner platform, by outcome "
            "(delivered, failed, rejected).",
            ["outcome"],
            registry=r,
        )
        for outcome in PushOutcome:
            self.handoff_pushes.labels(outcome.value)
        self.supervision_flags = Counter(
            "hotline_supervision_flags",
            "Time-limit warnings raised on matters at handling units, by kind (due_soon, "
            "overdue: an overdue matter is escalated to 督办) and stage (sign, complete).",
            ["kind", "stage"],
            registry=r,
        )
        self.matters_overdue = Gauge(
            "hotline_matters_overdue",
            "Matters at handling units past a time limit now, by stage (sign: not yet signed "
            "for; complete: not yet closed), as of the last supervision scan.",
            ["stage"],
            registry=r,
        )
        for stage in ("sign", "complete"):
            self.matters_overdue.labels(stage).set(0)
            for kind in ("due_soon", "overdue"):
                self.supervision_flags.labels(kind, stage)
        self.overflow_active = Gauge(
            "hotline_overflow_active",
            "1 while new citizen calls overflow to the remote seat group (the citizens' queue is "
            "short of seats), 0 otherwise.",
            registry=r,
        )
        self.overflow_transitions = Counter(
            "hotline_overflow_transitions",
            "Overflow to remote seats switched, by the state it switched to (on, off).",
            ["to"],
            registry=r,
        )
        self.overflow_calls = Counter(
            "hotline_overflow_calls",
            "Citizen calls the dialplan sent to the remote seat group (overflowed), and those of "
            "them the remote site did not take, back in the local queue (fell_back).",
            ["result"],
            registry=r,
        )
        self.overflow_polls_failed = Counter(
            "hotline_overflow_polls_failed",
            "Looks at the citizens' queue that failed (AMI down, timeout, bad answer): overflow "
            "was not renewed, and lapses back to the local queue if they go on.",
            registry=r,
        )
        self.overflow_active.set(0)
        for to in ("on", "off"):
            self.overflow_transitions.labels(to)
        for result in ("overflowed", "fell_back"):
            self.overflow_calls.labels(result)
        for queue in queues:
            for result in _QUEUE_RESULTS.values():
                self.citizen_calls.labels(self._queue(queue), result)
        # Restarts (process_start_time_seconds), memory and file descriptors of the bridge itself.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._outbox: _OutboxCollector | None = None

    @_never_raises
    def supervision_scanned(
        self, flags: Iterable[tuple[str, str]], overdue: dict[str, int]
    ) -> None:
        """One supervision scan: the (kind, stage) of each warning it raised, and the counts of
        matters past a limit now."""
        for kind, stage in flags:
            self.supervision_flags.labels(kind, stage).inc()
        for stage, n in overdue.items():
            self.matters_overdue.labels(stage).set(n)

    @_never_raises
    def overflow_changed(self, active: bool) -> None:
        """Overflow to remote seats switched on or off."""
        self.overflow_active.set(1 if active else 0)
        self.overflow_transitions.labels("on" if active else "off").inc()

    @_never_raises
    def overflow_call(self, result: str) -> None:
        """A citizen call overflowed, or fell back from the remote site to the local queue."""
        if result in ("overflowed", "fell_back"):
            self.overflow_calls.labels(result).inc()

    @_never_raises
    def overflow_polled(self, ok: bool) -> None:
        if not ok:
            self.overflow_polls_failed.inc()

    @_never_raises
    def on_pbx_event(self, event: PbxEvent) -> None:
        """Queue events, straight from the PBX: the plan's manual answer rate comes from here."""
        result = _QUEUE_RESULTS.get(event.get("Event"))
        if result is not None:
            self.citizen_calls.labels(self._queue(event.get("Queue")), result).inc()

    @_never_raises
    def transfer_changed(self, old: Transfer, t: Transfer) -> None:
        """Counts a transfer once, on its transition to a terminal state."""
        if not t.done or old.done:
            return
        target = self._target(t.target)
        outcome = t.outcome.value if t.outcome else _UNKNOWN
        self.transfers.labels(target, outcome, t.state.value).inc()
        answered = next((e.at for e in t.timeline if e.what == "partner_answered"), None)
        if answered is not None:
            self.handoff_latency.labels("carry_transfer", target).observe(
                answered - t.timeline[0].at
            )

    @_never_raises
    def conference_changed(self, old: Conference, c: Conference) -> None:
        target = self._target(c.target)
        # The outcome turns ANSWERED exactly once, when the partner joins while the call is still
        # being set up; a partner who joins after the agent cancelled does not count as answered.
        if c.outcome is Outcome.ANSWERED and old.outcome is not Outcome.ANSWERED:
            answered = c.timeline[-1].at
            self.handoff_latency.labels("three_way", target).observe(answered - c.timeline[0].at)
        if c.done and not old.done:
            self.three_way.labels(target, c.outcome.value if c.outcome else _UNKNOWN).inc()

    @_never_raises
    def observe_ami_action(self, action: str, seconds: float) -> None:
        self.ami_action_latency.labels(self._action(action)).observe(seconds)

    @_never_raises
    def handoff_recorded(self, kind: str, seconds: float) -> None:
        """A press's record was written (before its first AMI action), in ``seconds``."""
        if kind in _LIVE_CALL_KINDS:
            self.record_write_latency.labels(kind).observe(seconds)

    @_never_raises
    def handoff_pushed(self, outcome: PushOutcome) -> None:
        """One push attempt of an outbox item to the partner finished (call once per attempt)."""
        self.handoff_pushes.labels(PushOutcome(outcome).value).inc()

    def watch_outbox(self, read: Callable[[], OutboxStats]) -> None:
        """Expose the handoff outbox, read at scrape time (depth and age of the oldest item).

        Call once, when the partner link exists: before that nothing drains the outbox, and a
        depth that only grows would be noise.
        """
        if self._outbox is not None:
            raise RuntimeError("watch_outbox called twice")
        self._outbox = _OutboxCollector(read)
        self.registry.register(self._outbox)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class GaugeCollector(Collector):
    """Reads current values at scrape time from the objects that already hold them."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        v = self._read()
        yield _gauge("hotline_ami_connected", "1 when the AMI session is ready.", v["ami_ready"])
        # CounterMetricFamily appends ``_total`` itself: these are exposed as ``*_total``.
        yield _counter(
            "hotline_ami_reconnects", "AMI sessions re-established.", v["ami_reconnects"]
        )
        yield _counter("hotline_ami_events", "AMI events read from the socket.", v["ami_events"])
        yield _counter(
            "hotline_ami_action_timeouts", "AMI actions that timed out.", v["ami_timeouts"]
        )
        yield _gauge("hotline_live_calls", "Citizens talking to an agent now.", v["live_calls"])
        yield _gauge(
            "hotline_live_transfers", "Carry transfers not yet settled.", v["live_transfers"]
        )
        yield _gauge(
            "hotline_live_conferences", "Three-way calls not yet ended.", v["live_conferences"]
        )


class ConnectionsCollector(Collector):
    """The API listener's open connections and the ones its guard refused."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        open_now, refused = self._read()
        yield _gauge("hotline_http_connections", "Open connections to the API listener.", open_now)
        yield _counter(
            "hotline_http_connections_refused",
            "Connections answered 503 at once: total or per-peer cap reached.",
            refused,
        )


class _OutboxCollector(Collector):
    def __init__(self, read: Callable[[], OutboxStats]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._read()
        except Exception:
            # A busy or broken store must not fail the whole scrape (that would read as "bridge
            # down"); the outbox series go missing instead, which the dashboard shows as a gap.
            log.warning("outbox stats unavailable", exc_info=True)
            return
        yield _gauge(
            "hotline_handoff_outbox_depth",
            "Handoff outbox items not yet delivered to the partner platform.",
            stats.depth,
        )
        yield _gauge(
            "hotline_handoff_outbox_oldest_age_seconds",
            "Age of the oldest undelivered handoff outbox item (0 when empty).",
            stats.oldest_age_s,
        )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)
