"""Counters of the AMI session, shared by the client and the protocol (read by metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AmiStats:
    """Monotonic counters (for metrics)."""

    connects: int = 0  # sessions that reached ready
    reconnects: int = 0  # ready sessions after the first one
    connect_failures: int = 0  # attempts that never reached ready
    disconnects: int = 0  # ready sessions lost
    keepalive_failures: int = 0  # sessions dropped because Ping went unanswered
    keepalive_slow: int = 0  # Pings unanswered in time while other data kept arriving
    actions_sent: int = 0  # including Login and keep-alive Pings
    actions_timed_out: int = 0
    events_received: int = 0  # every event read from the socket
    events_dropped: int = 0  # of which dropped by the event-name filter
    handler_errors: int = 0
    resyncs: int = 0  # completed resync-hook rounds
