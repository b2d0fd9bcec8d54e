"""Prometheus metrics: what ops watch on the dashboard and alert on.

Label sets are bounded: target names and outcomes come from configuration and enums, never a
phone number or a call id. Counters that already exist elsewhere (AMI statistics, live calls)
are read at scrape time by a collector instead of being updated on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .conferences.machine import Conference, Role
from .events import PbxEvent
from .transfers.machine import Transfer

# Hotkey -> partner answered spans ring time; AMI round trips are sub-millisecond.
_HANDOFF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
_AMI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.transfers = Counter(
            "hotline_transfers_total",
            "Carry-number transfers finished, by target and partner outcome.",
            ["target", "outcome", "state"],
            registry=r,
        )
        self.three_way = Counter(
            "hotline_three_way_calls_total",
            "Three-way calls finished, by target and partner outcome.",
            ["target", "outcome"],
            registry=r,
        )
        self.handoff_latency = Histogram(
            "hotline_handoff_answer_seconds",
            "From the hotkey press to the partner answering.",
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
        self.citizen_calls = Counter(
            "hotline_citizen_calls_total",
            "Citizen calls in the agent queue by what became of them (offered, answered, "
            "abandoned); the manual answer rate is answered / offered.",
            ["queue", "result"],
            registry=r,
        )

    def on_pbx_event(self, event: PbxEvent) -> None:
        """Queue events, straight from the PBX: the plan's manual answer rate comes from here."""
        name = event.get("Event")
        if name == "QueueCallerJoin":
            self.citizen_calls.labels(event.get("Queue"), "offered").inc()
        elif name == "AgentConnect":
            self.citizen_calls.labels(event.get("Queue"), "answered").inc()
        elif name == "QueueCallerAbandon":
            self.citizen_calls.labels(event.get("Queue"), "abandoned").inc()

    def transfer_changed(self, old: Transfer, t: Transfer) -> None:
        if not t.done or old.done:
            return
        outcome = t.outcome.value if t.outcome else "none"
        self.transfers.labels(t.target, outcome, t.state.value).inc()
        answered = next((e.at for e in t.timeline if e.what == "partner_answered"), None)
        if answered is not None:
            self.handoff_latency.labels("carry_transfer", t.target).observe(
                answered - t.timeline[0].at
            )

    def conference_changed(self, old: Conference, c: Conference) -> None:
        if Role.PARTNER in c.members and Role.PARTNER not in old.members:
            joined = c.timeline[-1].at
            self.handoff_latency.labels("three_way", c.target).observe(joined - c.timeline[0].at)
        if c.done and not old.done:
            self.three_way.labels(c.target, c.outcome.value if c.outcome else "none").inc()

    def observe_ami_action(self, action: str, seconds: float) -> None:
        self.ami_action_latency.labels(action).observe(seconds)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class GaugeCollector(Collector):
    """Reads current values at scrape time from the objects that already hold them."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        v = self._read()
        yield _gauge("hotline_ami_connected", "1 when the AMI session is ready.", v["ami_ready"])
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


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)
