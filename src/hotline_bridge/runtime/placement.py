"""Several PBXes over several replicas (issue 14 §2): the pure decisions.

- :func:`claims`: which free PBX leases a replica asks for now. A node's preferred replica asks
  at once; any other waits ``grace`` per node it already owns (counted from when the lease ran
  out, or from its own start), so at start-up each PBX goes to its preferred replica and after a
  death the survivors share the dead one's PBXes, the least loaded first. A free node whose
  preferred replica is alive is left to it for a while (``defer``): a handed-back PBX goes home.
- :func:`sightings` and :func:`handback`: failback. Each replica keeps a presence lease
  (:func:`presence_name`; a new epoch per process start); an owner that is not a node's preferred
  replica hands the node back once the preferred one has been seen alive (one incarnation) and
  this one has owned the node for ``settle`` each (no flapping), and only while nothing is in
  flight on that PBX; a PBX that does not go quiet within ``max_wait`` stays put.
- :func:`route`: what a request is about (an agent, a call, a transfer, a conference), so the
  replica in front can find the PBX it concerns; everything else goes to the home service.
- :func:`owners`: which replica (and URL) owns each PBX, from the lease rows.
- :func:`node_settings`: one PBX's service settings, derived from the cluster's: its AMI, its
  loopback API (and FastAGI) port; the site-wide scans (units' time limits, follow-up calls) run
  in the home node's service only, so two owners never both place a follow-up call.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hotline_bridge.config.settings import ClusterNode, ClusterSettings, Settings
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
    present: Collection[str] = (),
    defer: timedelta = timedelta(0),
) -> list[str]:
    """The free nodes ``me`` should ask the lease of now (in order). A node held by anyone
    (``me`` included: its keeper renews it) is not asked for. A free node whose preferred
    replica is ``present`` (alive) waits ``defer`` longer for the others: it was handed back to
    that replica, which claims it at once (bounded: a preferred replica that does not claim it
    is not waited for beyond that)."""
    owned = sum(1 for n in nodes if (lease := leases.get(n.name)) is not None
                and held(lease, now) and lease.holder == me)  # fmt: skip
    free = [n for n in nodes if not held(leases.get(n.name), now)]
    out = [n.name for n in free if n.prefer == me]  # its own first, at once
    for node in free:
        if node.prefer == me:
            continue
        lease = leases.get(node.name)
        free_since = max(lease.expires_at, started_at) if lease is not None else started_at
        wait = grace * (owned + len(out)) + (defer if node.prefer in present else timedelta(0))
        if now - free_since >= wait:
            out.append(node.name)
    return out


# -- failback ----------------------------------------------------------------------------------

_PRESENCE = "replica:"  # a node name never has a colon (Identifier): no clash with node leases


def presence_name(replica: str) -> str:
    """The lease row that says ``replica`` is alive (renewed with its node leases)."""
    return _PRESENCE + replica


@dataclass(frozen=True, slots=True)
class Sighting:
    """A replica seen alive: its presence lease's epoch (one per process start, so a restart is
    a new sighting) and when this observer first saw that epoch held."""

    epoch: int
    since: datetime


def sightings(
    seen: Mapping[str, Sighting], presence: Mapping[str, Lease | None], now: datetime
) -> dict[str, Sighting]:
    """The replicas alive now (by name, from their presence leases) and since when, carried over
    from the last look (``seen``) while the epoch is the same. An observer that just started
    sees everyone alive since now: it only ever waits longer, never shorter."""
    out = {}
    for replica, lease in presence.items():
        if lease is None or not held(lease, now):
            continue
        before = seen.get(replica)
        same = before is not None and before.epoch == lease.epoch
        out[replica] = before if same and before is not None else Sighting(lease.epoch, now)
    return out


@dataclass(frozen=True, slots=True)
class Failback:
    settle: timedelta  # the preferred replica alive, and the owner owning, at least this long
    max_wait: timedelta  # for the PBX to go quiet; then it stays with its owner


def failback_policy(cluster: ClusterSettings) -> Failback | None:
    """The cluster's failback bounds (None: PBXes stay where they were taken over)."""
    if not cluster.failback:
        return None
    return Failback(
        settle=timedelta(seconds=cluster.failback_settle_ttls * cluster.lease_ttl_s),
        max_wait=timedelta(seconds=cluster.failback_max_wait_s),
    )


Act = Literal["keep", "wait", "release", "stay"]


@dataclass(frozen=True, slots=True)
class Handback:
    act: Act  # keep: not due; wait: due, something in flight; release: hand it back now;
    # stay: due but never quiet within max_wait, kept until the preferred replica restarts
    why: str
    due_since: datetime | None = None  # when the hand-back became due (max_wait counts from it)


def handback(
    node: ClusterNode,
    me: str,
    *,
    owned_since: datetime,
    preferred: Sighting | None,
    in_flight: int | None,
    due_since: datetime | None,
    now: datetime,
    policy: Failback,
) -> Handback:
    """Whether ``me``, owner of ``node`` since ``owned_since``, hands it back to its preferred
    replica now. ``preferred``: that replica's sighting (None: not alive); ``in_flight``: the
    transfers, three-way calls, hook requests and API requests under way on that PBX here (None:
    its service is not up, so unknown); ``due_since``: the last decision's."""
    if node.prefer is None or node.prefer == me:
        return Handback("keep", "no other preferred replica")
    if preferred is None:
        return Handback("keep", "its preferred replica is not alive")
    if now - preferred.since < policy.settle:
        return Handback("keep", "its preferred replica has not been alive long enough")
    if now - owned_since < policy.settle:
        return Handback("keep", "owned here for too short a time (hold-down after a takeover)")
    due = due_since or now
    waited_out = now - due >= policy.max_wait
    if in_flight == 0 and (due_since is None or not waited_out):
        return Handback("release", "its preferred replica is back and the PBX is quiet", due)
    if waited_out:  # from here on it stays, however quiet, until the preferred one restarts
        return Handback("stay", "not quiet within the maximum wait: it stays here", due)
    busy = "its service is not up here" if in_flight is None else f"{in_flight} in flight on it"
    return Handback("wait", busy, due)


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
