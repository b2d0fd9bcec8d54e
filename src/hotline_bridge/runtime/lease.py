"""Who drives a PBX: the lease one replica holds, and what a replica does about it. Pure.

A replica claims its node's lease every ``ttl/3``; the store grants it if the lease is free,
lapsed or already this replica's (an atomic compare-and-set) and answers with whoever holds it
now. ``epoch`` counts changes of holder: a fencing number for logs and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Lease:
    node: str
    holder: str
    url: str  # where the holder takes requests
    expires_at: float
    epoch: int


Role = Literal["active", "standby"]


def role_of(lease: Lease | None, me: str, now: float) -> Role:
    """Active only while the lease is this replica's and has not lapsed."""
    if lease is not None and lease.holder == me and now < lease.expires_at:
        return "active"
    return "standby"


def grant(current: Lease | None, node: str, me: str, url: str, ttl_s: float, now: float) -> Lease:
    """The lease after ``me`` claims it at ``now`` (what the store writes, atomically)."""
    if current is None:
        return Lease(node, me, url, now + ttl_s, 1)
    if current.holder == me:
        return Lease(node, me, url, now + ttl_s, current.epoch)
    if now >= current.expires_at:
        return Lease(node, me, url, now + ttl_s, current.epoch + 1)
    return current


def owner_url(lease: Lease | None, now: float) -> str | None:
    """Where to forward a request: the active holder, if there is one."""
    if lease is None or now >= lease.expires_at:
        return None
    return lease.url
