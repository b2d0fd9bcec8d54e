"""Several PBXes over several replicas (issue 14 §2): the pure decisions.

- :func:`claims`: which free PBX leases a replica asks for now. A node's preferred replica asks
  at once; any other waits ``grace`` per node it already owns (counted from when the lease ran
  out, or from its own start), so at start-up each PBX goes to its preferred replica and after a
  death the survivors share the dead one's PBXes, the least loaded first.
- :func:`route`: what a request is about (an agent, a call, a transfer, a conference), so the
  replica in front can find the PBX it concerns; everything else goes to the home service.
- :func:`owners`: which replica (and URL) owns each PBX, from the lease rows.
- :func:`node_settings`: one PBX's service settings, derived from the cluster's: its AMI, its
  loopback API (and FastAGI) port; the site-wide scans (units' time limits, follow-up calls) run
  in the home node's service only, so two owners never both place a follow-up call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hotline_bridge.config.settings import ClusterNode, Settings
from hotline_bridge.handoffs.store.lease import Lease

Subject = Literal["agent", "call", "transfer", "conference", "home"]


@dataclass(frozen=True, slots=True)
class Route:
    subject: Subject
    key: str = ""  # the agent id, call id, transfer id or conference id


_ROUTES: tuple[tuple[re.Pattern[str], Subject], ...] = (
    (re.compile(r"^/v1/agents/([^/]+)/(?:carry-transfer|three-way|current-handoff)$"), "agent"),
    (re.compile(r"^/v1/calls/([^/]+)/(?:carry-transfer|three-way)$"), "call"),
    (re.compile(r"^/v1/transfers/([^/]+)$"), "transfer"),
    (re.compile(r"^/v1/conferences/([^/]+)(?:/[a-z-]+)?$"), "conference"),
)


def route(path: str) -> Route:
    """What a request path is about; ``home`` for anything not tied to one PBX's call."""
    for pattern, subject in _ROUTES:
        m = pattern.match(path)
        if m:
            return Route(subject, m.group(1))
    return Route("home")


def held(lease: Lease | None, now: datetime) -> bool:
    return lease is not None and lease.expires_at > now


def owners(leases: Mapping[str, Lease | None], now: datetime) -> dict[str, Lease]:
    """The running leases by node (an expired one: nobody owns that PBX now)."""
    return {node: lease for node, lease in leases.items() if lease is not None and held(lease, now)}


def claims(
    nodes: Sequence[ClusterNode],
    me: str,
    leases: Mapping[str, Lease | None],
    now: datetime,
    *,
    started_at: datetime,
    grace: timedelta,
) -> list[str]:
    """The free nodes ``me`` should ask the lease of now (in order). A node held by anyone
    (``me`` included: its keeper renews it) is not asked for."""
    owned = sum(1 for n in nodes if (lease := leases.get(n.name)) is not None
                and held(lease, now) and lease.holder == me)  # fmt: skip
    free = [n for n in nodes if not held(leases.get(n.name), now)]
    out = [n.name for n in free if n.prefer == me]  # its own first, at once
    for node in free:
        if node.prefer == me:
            continue
        lease = leases.get(node.name)
        free_since = max(lease.expires_at, started_at) if lease is not None else started_at
        if now - free_since >= grace * (owned + len(out)):
            out.append(node.name)
    return out


def home_node(nodes: Sequence[ClusterNode]) -> str:
    """The node whose service runs the site-wide scans: the first listed."""
    return nodes[0].name


def node_settings(settings: Settings, node: ClusterNode) -> Settings:
    """The settings of ``node``'s service on the replica that owns it."""
    cluster = settings.cluster
    assert cluster is not None and cluster.nodes
    home = node.name == home_node(cluster.nodes)
    agi = settings.agi.model_copy(
        update={"enabled": settings.agi.enabled and node.agi_port is not None}
        | ({"port": node.agi_port} if node.agi_port is not None else {})
    )
    update: dict[str, object] = {
        "ami": settings.ami.model_copy(update={"host": node.ami_host, "port": node.ami_port}),
        "http": settings.http.model_copy(
            update={
                "host": "127.0.0.1",
                "port": node.api_port,
                "tls_cert_file": None,
                "tls_key_file": None,
            }
        ),
        "ops": settings.ops.model_copy(update={"port": None}),
        "agi": agi,
        "cluster": None,
    }
    if not home:
        update["units"] = settings.units.model_copy(update={"scan_interval_s": 0.0})
        update["follow_up"] = settings.follow_up.model_copy(update={"dial": None})
    return settings.model_copy(update=update)


def machine_kind(kind: str, node: str) -> str:
    """The store's name for a node's machines of ``kind``: each PBX's owner restores only the
    transfers, rooms and reminders that live on that PBX."""
    return f"{kind}@{node}"
