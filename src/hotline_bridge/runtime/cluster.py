"""A replica of a site with several PBXes (``[[cluster.nodes]]``, issue 14 §2).

Each PBX (node) has a lease row in the shared store; the replica holding it owns that PBX's AMI
and serves it in this process: the ordinary service (:func:`~hotline_bridge.runtime.app.serve`)
with the node's settings (:func:`~.placement.node_settings`), on a loopback port of its own. A
replica may own several PBXes, or none. Every ``ttl/3`` it reads the lease rows and asks for the
free ones :func:`~.placement.claims` names; a newly granted PBX's service restores the
transfers, three-way calls and reminders in flight on that PBX from the store (the store keeps
each PBX's machines apart) and settles them against Asterisk's state, as after a restart.
With the node's ``agi_port`` that service also answers the PBX's FastAGI hooks (entry, receive,
keys) on that loopback port, from the moment this replica owns the PBX until it stops serving
it: the PBX's ``HOTLINE_AGI`` names the port, whoever owns it now (replicas on the PBX's host);
while nobody listens the dialplan goes on without the hooks (``AGISTATUS`` FAILURE).

The replica's API port (``[http]``) is the front every client may use: a request about an
agent's call, a call, a transfer or a conference goes to the service of the PBX it concerns:
here when this replica owns it, else to the owning replica (its URL in the lease row) with
``X-Hotline-Forwarded`` (a forwarded request is served here, never forwarded again). Which PBX
has the agent's call is asked of the PBXes' services: this replica's at once, the other owners'
in parallel (``/cluster/v1/whereis``). While a PBX has no owner (a replica is taking over) and
the call is not found elsewhere, the answer is 503 with ``Retry-After``: nothing was attempted.

Leases are renewed every ``ttl/3`` from a thread of its own (a busy event loop cannot let them
lapse); losing any of them, or not renewing one for ``2/3 ttl``, exits the process at once
(status 75), as a single-PBX replica does: its other PBXes are taken over by the others.

Failback: the same thread keeps this replica's presence lease (a new epoch per start). A PBX this
replica took over from its preferred replica is handed back when :func:`~.placement.handback`
says so (that replica alive and this one owner for a while, nothing in flight on the PBX): the
front answers 503 for that PBX's calls, the PBX's service stops (AMI closed, hooks' port freed),
then the lease is released; the preferred replica claims it at once and rebuilds the calls from
Asterisk's state and the store, as after a takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import aiohttp
import structlog
from aiohttp import web

from hotline_bridge.calls.api import CALLS
from hotline_bridge.conferences.api import CONFERENCES
from hotline_bridge.config.settings import ClusterNode, ClusterSettings, Settings
from hotline_bridge.handoffs.model import HandoffRecord
from hotline_bridge.handoffs.store import HandoffStore, MachineRow
from hotline_bridge.handoffs.store.lease import Lease, release
from hotline_bridge.handoffs.store.opening import Leases, open_leases
from hotline_bridge.keys.plugin import PHONE_KEYS
from hotline_bridge.notices.api import NOTICES
from hotline_bridge.runtime.app import AMI, Runtime, stop_on_signals
from hotline_bridge.runtime.placement import (
    Failback,
    Handback,
    Route,
    Sighting,
    claims,
    failback_policy,
    handback,
    home_node,
    machine_kind,
    node_settings,
    owners,
    presence_name,
    route,
    sightings,
)
from hotline_bridge.runtime.replica import (
    LeaseKeeper,
    ReplicaPort,
    claim,
    relay,
    retry_later,
)
from hotline_bridge.transfers.api import TRANSFERS
from hotline_bridge.web.http import error_response
from hotline_bridge.workorders.api import WORK_ORDERS

log = structlog.get_logger(__name__)

FORWARDED = "X-Hotline-Forwarded"  # set on a request one replica sent on to another
WHEREIS = "/cluster/v1/whereis"
_WHEREIS_TIMEOUT = aiohttp.ClientTimeout(total=1.0)
_DRAIN_S = 2.0  # a hand-back waits this long for requests and hooks under way, else waits on
_STOP_S = 10.0  # a handed-back PBX's service's stop, at most (it ends its streams first)

ServeNode = Callable[
    [Settings, str, asyncio.Event, Callable[[Runtime], None]], Coroutine[Any, Any, None]
]


class NodeMachines:
    """The store as one PBX's service sees it: its machines apart from the other PBXes' (the
    records, outbox and call log are the site's)."""

    def __init__(self, store: HandoffStore, node: str) -> None:
        self._store = store
        self._node = node

    def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None:
        self._store.keep_machine(machine_kind(kind, self._node), item_id, state, done=done)

    def create(
        self, record: HandoffRecord, *, outbox: bool = True, machine: MachineRow | None = None
    ) -> bool:
        if machine is not None:
            machine = replace(machine, kind=machine_kind(machine.kind, self._node))
        return self._store.create(record, outbox=outbox, machine=machine)

    def machines(self, kind: str, *, done: bool, limit: int | None = None) -> list[tuple[str, str]]:
        return self._store.machines(machine_kind(kind, self._node), done=done, limit=limit)

    def prune_machines(self, kind: str, finished_before: datetime) -> int:
        return self._store.prune_machines(machine_kind(kind, self._node), finished_before)

    def reopen(self) -> HandoffStore:
        """The same view over a new connection (the write-behind thread's)."""
        return cast(HandoffStore, NodeMachines(self._store.reopen(), self._node))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def node_store(node: str) -> Callable[[HandoffStore], HandoffStore]:
    return lambda store: cast(HandoffStore, NodeMachines(store, node))


@dataclass
class NodeService:
    """One PBX served in this process."""

    node: ClusterNode
    stop: asyncio.Event
    since: datetime  # the store's time when this replica was granted the PBX
    task: asyncio.Task[None] | None = None
    runtime: Runtime | None = None
    handback: Handback | None = None  # the last failback decision
    draining: bool = False  # being handed back: its calls' requests are answered 503
    posting: int = 0  # requests other than GET relayed to it and not answered yet

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.node.api_port}"

    def ready(self) -> bool:
        rt = self.runtime
        return rt is not None and rt.app[AMI].state == "ready" and rt.app[CALLS].pbx_ready

    def hooks(self) -> dict[str, Any] | None:
        """This PBX's FastAGI hooks as this replica serves them (None: the node has none)."""
        rt = self.runtime
        if rt is None or rt.agi is None:
            return None
        h = rt.agi.health()
        keys = ("state", "address", "answered", "error", "bind_retries")
        return {k: h[k] for k in keys if k in h}

    def in_flight(self) -> int | None:
        """What a hand-back must not cut: transfers and three-way calls not finished, reminder
        calls on the line, hook requests being answered, hotkeys and other writes under way
        (None: not up yet). Reads and event streams are not counted: a client reads again, a
        stream reconnects. A reminder waiting for its retry is not counted either: the store
        keeps it and the new owner rings it when it is due."""
        rt = self.runtime
        if rt is None:
            return None
        app = rt.app
        n = len(app[TRANSFERS].book.live()) + len(app[CONFERENCES].book.live())
        # Its answer or its hang-up reaches only this replica's AMI session: handed over
        # ringing, the new owner would find the channel gone and ring the desk again.
        if (notices := app.get(NOTICES)) is not None:
            n += notices.ringing()
        if (orders := app.get(WORK_ORDERS)) is not None:
            n += orders.reminders.ringing()
        return n + (rt.agi.in_progress if rt.agi is not None else 0) + self.posting

    def drain(self, on: bool) -> None:
        """Answer this PBX's calls' requests 503 and refuse its phone keys (a hand-back is
        under way), or serve them again (it was put off)."""
        self.draining = on
        rt = self.runtime
        keys = rt.app.get(PHONE_KEYS) if rt is not None else None
        if keys is not None:
            keys.held = "this PBX is being handed to another replica; press again" if on else None

    def has(self, r: Route) -> bool:
        """Whether the call, transfer or conference ``r`` names is on this PBX."""
        rt = self.runtime
        if rt is None:
            return False
        app = rt.app
        if r.subject == "agent":
            return app[CALLS].model.call_of_agent(r.key) is not None
        if r.subject == "call":
            return app[CALLS].model.call(r.key) is not None
        if r.subject == "transfer":
            return r.key in app[TRANSFERS].book.items
        if r.subject == "conference":
            return r.key in app[CONFERENCES].book.items
        return False


@dataclass
class Front:
    """The replica's API port: routes each request to the PBX service it concerns."""

    settings: Settings
    cluster: ClusterSettings
    local: dict[str, NodeService] = field(default_factory=dict)
    leases: dict[str, Lease | None] = field(default_factory=dict)
    now: datetime | None = None  # the store's time at the last reading of the leases
    read_at: float = 0.0  # monotonic time of that reading
    forwarded: int = 0  # requests sent on to another replica
    _agents: dict[str, str] | None = None  # token -> agent id
    port: ReplicaPort = field(init=False)

    def __post_init__(self) -> None:
        self.port = ReplicaPort(self.settings)

    async def start(self) -> None:
        await self.port.start(
            [
                web.get("/healthz", self.healthz),
                web.get(WHEREIS, self.whereis),
                web.route("*", "/{tail:.*}", self.dispatch),
            ]
        )

    async def stop(self) -> None:
        await self.port.stop()

    # -- who owns what ---------------------------------------------------------------------

    def _owners(self) -> dict[str, Lease]:
        if self.now is None:
            return {}
        # The store's time, moved on by the time since it was read.
        now = self.now + timedelta(seconds=time.monotonic() - self.read_at)
        return owners(self.leases, now)

    def _mine(self, lease: Lease) -> bool:
        return lease.holder == self.cluster.replica

    def _home(self) -> NodeService | None:
        for node in self.cluster.nodes:
            svc = self.local.get(node.name)
            if svc is not None and not svc.draining:
                return svc
        return None

    # -- routes ------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        held = self._owners()
        nodes = {}
        for node in self.cluster.nodes:
            lease = held.get(node.name)
            here = self.local.get(node.name)
            nodes[node.name] = {
                "owner": lease.holder if lease else None,
                "url": lease.url if lease else None,
                "epoch": lease.epoch if lease else None,
                "here": here is not None,
                "ready": here.ready() if here is not None else None,
                "agi": here.hooks() if here is not None else None,
            }
            if here is not None and here.handback is not None and here.handback.act != "keep":
                nodes[node.name]["handback"] = {"act": here.handback.act, "why": here.handback.why}
        return web.json_response(
            {
                "status": "active" if self.local else "standby",
                "replica": self.cluster.replica,
                "owns": sorted(self.local),
                "forwarded": self.forwarded,
                "nodes": nodes,
            }
        )

    async def whereis(self, request: web.Request) -> web.Response:
        """Which of this replica's PBXes has the call (asked by the other replicas)."""
        if not self._known_token(request):
            return error_response(401, "a known bearer token is required")
        r = Route(request.query.get("subject", "home"), request.query.get("key", ""))  # type: ignore[arg-type]
        node = next((name for name, svc in self.local.items() if svc.has(r)), None)
        return web.json_response({"node": node, "replica": self.cluster.replica})

    def _agent_of(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        if self._agents is None:
            self._agents = {a.token.get_secret_value(): a.id for a in self.settings.agents}
        return self._agents.get(header[len("Bearer ") :])

    def _known_token(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :]
        s = self.settings
        known = {a.token.get_secret_value() for a in s.agents}
        known |= {c.token.get_secret_value() for c in s.api_clients}
        return token in known

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        r = route(request.path)
        forwarded = FORWARDED in request.headers
        by_token = False
        if r.subject == "home" and (agent := self._agent_of(request)) is not None:
            # An agent's own view (its calls, its events): served by the PBX of its call.
            r, by_token = Route("agent", agent), True
        if r.subject != "home":
            for svc in self.local.values():
                if svc.has(r):
                    if svc.draining:
                        return retry_later("this PBX is being handed back to its replica")
                    return await self._to_local(request, svc)
            if not forwarded:
                found, unsure = await self._ask_others(request, r)
                if found is not None:
                    return await self._to_replica(request, found)
                if unsure and not by_token:
                    return retry_later("the PBX of this call has no bridge right now (taking over)")
        home = self._home()
        if home is not None:
            return await self._to_local(request, home)
        if not forwarded:
            for node in self.cluster.nodes:
                lease = self._owners().get(node.name)
                if lease is not None and not self._mine(lease):
                    return await self._to_replica(request, lease.url)
        return retry_later("no replica owns a PBX right now (taking over)")

    async def _ask_others(self, request: web.Request, r: Route) -> tuple[str | None, bool]:
        """The URL of the replica whose PBX has the call, if any; and whether some PBX could
        not be asked (no owner now, or its owner did not answer)."""
        held = self._owners()
        unsure = any(node.name not in held for node in self.cluster.nodes)
        urls = sorted({lease.url for lease in held.values() if not self._mine(lease)})
        if not urls:
            return None, unsure
        session = self.port.session
        auth = {"Authorization": request.headers.get("Authorization", "")}

        async def ask(url: str) -> str | None:
            async with session.get(
                url.rstrip("/") + WHEREIS,
                params={"subject": r.subject, "key": r.key},
                headers=auth,
                timeout=_WHEREIS_TIMEOUT,
            ) as answer:
                body = await answer.json() if answer.status == 200 else {}
                return url if body.get("node") else None

        answers = await asyncio.gather(*(ask(u) for u in urls), return_exceptions=True)
        found = next((a for a in answers if isinstance(a, str)), None)
        unsure = unsure or any(isinstance(a, BaseException) for a in answers)
        return found, unsure

    async def _to_local(self, request: web.Request, svc: NodeService) -> web.StreamResponse:
        write = request.method != "GET"
        svc.posting += write
        try:
            return await relay(
                self.port.session, request, svc.url, f"the bridge of {svc.node.name}"
            )
        finally:
            svc.posting -= write

    async def _to_replica(self, request: web.Request, url: str) -> web.StreamResponse:
        self.forwarded += 1
        extra = {FORWARDED: self.cluster.replica}
        return await relay(self.port.session, request, url, "the owning replica", extra)


async def run_cluster(settings: Settings, serve_node: ServeNode) -> None:
    """Serve the front; own the PBXes the leases give this replica; hand back those whose
    preferred replica is back; stop on SIGINT/SIGTERM."""
    cluster = settings.cluster
    assert cluster is not None and cluster.nodes
    names = [n.name for n in cluster.nodes]
    by_name = {n.name: n for n in cluster.nodes}
    preferred = sorted({n.prefer for n in cluster.nodes if n.prefer is not None})
    presences = {presence_name(r): r for r in preferred}
    every = cluster.lease_ttl_s / 3
    policy = failback_policy(cluster)
    leases: Leases = await asyncio.to_thread(open_leases, settings)
    front = Front(settings, cluster)
    await front.start()
    keeper = LeaseKeeper(settings, cluster)
    me = presence_name(cluster.replica)
    await asyncio.to_thread(_be_present, leases, me, cluster)
    keeper.present_as(me)
    keeper.start()
    log.info(
        "cluster replica up", replica=cluster.replica, nodes=names, home=home_node(cluster.nodes)
    )
    stop = stop_on_signals()
    started_at: datetime | None = None
    seen: dict[str, Sighting] = {}
    failed: BaseException | None = None
    try:
        while not stop.is_set():
            try:
                now, rows = await asyncio.to_thread(leases.snapshot, [*names, *presences])
            except Exception as exc:  # the store is out of reach: nothing is claimed
                log.error("leases not read", error=str(exc))
            else:
                started_at = started_at or now
                seen = sightings(seen, {r: rows.pop(p) for p, r in presences.items()}, now)
                front.leases, front.now, front.read_at = dict(rows), now, time.monotonic()
                wanted = claims(
                    cluster.nodes,
                    cluster.replica,
                    rows,
                    now,
                    started_at=started_at,
                    grace=timedelta(seconds=every),
                    present=seen.keys(),
                    defer=timedelta(seconds=cluster.lease_ttl_s),
                )
                for name in wanted:
                    decision = await claim(leases, name, cluster)
                    if decision is None:
                        continue
                    front.leases[name] = decision.lease
                    if decision.granted and name not in front.local:
                        keeper.add(name)
                        front.local[name] = _start_node(settings, by_name[name], serve_node, now)
                if policy is not None:
                    await _failback(front, policy, seen, now, keeper, leases)
            failed = _failure(front.local)
            if failed is not None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        for svc in front.local.values():
            svc.stop.set()
        tasks = [svc.task for svc in front.local.values() if svc.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(keeper.stop)  # releases the leases: no waiting for them to lapse
        await front.stop()
        leases.close()
    if failed is not None:
        raise failed


def _be_present(leases: Leases, resource: str, cluster: ClusterSettings) -> None:
    """Take this replica's presence lease with a new epoch (a former run's may still be held):
    the others count how long it has been alive from this start."""
    ttl = timedelta(seconds=cluster.lease_ttl_s)
    leases.release(resource, cluster.replica)
    leases.acquire(resource, cluster.replica, ttl, cluster.url)


async def _failback(
    front: Front,
    policy: Failback,
    seen: Mapping[str, Sighting],
    now: datetime,
    keeper: LeaseKeeper,
    leases: Leases,
) -> None:
    """Decide (:func:`~.placement.handback`) for each PBX served here, and act on it."""
    me = front.cluster.replica
    for name, svc in list(front.local.items()):
        node = svc.node
        before = svc.handback
        hb = handback(
            node,
            me,
            owned_since=svc.since,
            preferred=seen.get(node.prefer) if node.prefer else None,
            in_flight=svc.in_flight(),
            due_since=before.due_since if before is not None else None,
            now=now,
            policy=policy,
        )
        svc.handback = hb
        changed = hb.act != (before.act if before is not None else "keep")
        if hb.act != "release" and changed:
            level = log.warning if hb.act == "stay" else log.info
            level("failback", node=name, to=node.prefer, act=hb.act, why=hb.why)
        if hb.act == "release" and await _hand_back(front, svc, keeper, leases, now):
            del front.local[name]


async def _hand_back(
    front: Front, svc: NodeService, keeper: LeaseKeeper, leases: Leases, now: datetime
) -> bool:
    """Stop serving ``svc``'s PBX and release its lease; False (kept, still due) if something
    got under way meanwhile."""
    name, cluster = svc.node.name, front.cluster
    svc.drain(True)  # from here its calls' requests are answered 503 (Retry-After)
    deadline = time.monotonic() + _DRAIN_S
    while (n := svc.in_flight()) != 0:
        if time.monotonic() >= deadline:
            svc.drain(False)
            log.info("failback put off: something got under way", node=name, in_flight=n)
            return False
        await asyncio.sleep(0.05)
    log.warning("handing the PBX back to its preferred replica", node=name, to=svc.node.prefer)
    started = time.monotonic()
    svc.stop.set()
    if svc.task is not None:
        done, _ = await asyncio.wait([svc.task], timeout=_STOP_S)
        if not done:  # AMI and the hooks are closed first; what is left is open streams
            svc.task.cancel()
            await asyncio.gather(svc.task, return_exceptions=True)
    await asyncio.to_thread(keeper.drop, name)  # no renewal from here
    try:
        await asyncio.to_thread(leases.release, name, cluster.replica)
    except Exception as exc:  # it lapses by itself within ttl
        log.error("lease not released; it lapses", node=name, error=str(exc))
    front.leases[name] = release(front.leases.get(name), asker=cluster.replica, now=now)
    log.warning(
        "PBX handed back",
        node=name,
        to=svc.node.prefer,
        stop_s=round(time.monotonic() - started, 3),
    )
    return True


def _start_node(
    settings: Settings, node: ClusterNode, serve_node: ServeNode, now: datetime
) -> NodeService:
    svc = NodeService(node, asyncio.Event(), now)

    def started(runtime: Runtime) -> None:
        svc.runtime = runtime

    log.warning("replica owns a PBX now: serving it", node=node.name, api_port=node.api_port)
    svc.task = asyncio.create_task(
        serve_node(node_settings(settings, node), node.name, svc.stop, started),
        name=f"node-{node.name}",
    )
    return svc


def _failure(local: Mapping[str, NodeService]) -> BaseException | None:
    """A PBX's service that ended on its own: this replica stops (its leases lapse)."""
    for name, svc in local.items():
        if svc.task is not None and svc.task.done() and not svc.stop.is_set():
            exc = svc.task.exception()
            log.critical("a PBX's service ended; the replica stops", node=name, error=str(exc))
            return exc or RuntimeError(f"the service of {name} ended")
    return None
