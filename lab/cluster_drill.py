"""The cluster replica-failure drill (issue 14 §3): carry-transfer load spread over the cluster
sandbox's 3 PBXes, the hotkeys spread over all 3 replicas, one replica kill -9ed mid-run.

Per PBX, the load drill's peers ([agent_pool], [drill] of its topology): SIPp citizens with
media (``rate`` calls/s, each its own number) through the drill trunk into the pool's queue,
the pool's agents (one SIPp UAS, 40 agents), the drill's 110 desk (per-call number check); the
partner platform's receiver (lab.faults.partner) takes the records' pushes. As the single-PBX
drill does (lab.drill.driver), an admin AMI session per PBX watches BridgeEnter: the moment a
citizen and an agent share a bridge, the carry key is pressed through the next replica in turn
(keep-alive connections, as a load balancer would spread them). A refused connection (a dead
replica) is retried on the next one: it was never sent. A 503 (the call's PBX has no owner: a
takeover) is counted as refused and pressed again after half a second while the citizen is
still with the agent; a press lost with a dying replica's connection is counted and pressed
again (the bridge refuses a second transfer of one call; doubling would show at the 110 desk).

A call is carried when the 110 desk's channel entered a bridge of the citizen's call (AMI), and
the desk saw the citizen's own number (its SIPp log). Every offered call is accounted for:
carried, or not carried with the reason (refused while its PBX was being taken over, never
reached an agent, ...). The zeros: citizens hung up by the PBX (the citizen's SIPp log says who
ended each call), handoffs lost (accepted, not answered at 110), handoffs doubled (two dialogs
at 110 for one handoff or one citizen), outbox pushes doubled at the partner, records missing
there, calls not carried for no refusal.

    python -m lab.cluster_drill [--short] [--publish bench/results/faults]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from .bridge import RunningBridge
from .cluster import Cluster, Node, health, load_cluster, start_pbxes, start_replica, wait_placed
from .drill.driver import (
    CallWatch,
    HotkeyClient,
    drill_agents,
    drill_citizens,
    drill_desk,
    hang_up_channels,
    not_read_yet,
    pool_token,
    watch_pbx,
)
from .drill.options import DrillCall, _log_fields
from .drill.verify import read_sipp_logs
from .faults.partner import PartnerDesk, bridge_env
from .loadami import LoadAmi, Message
from .pgserver import PgServer
from .sandbox import Sandbox
from .sipp import SippProcess, stop_all

PARTNER_PORT = 18490
# SIPp media ports, per PBX i: agents echo on 26000+100i, the 110 desk on 26050+100i, the
# citizens stream from 27000+300i up (two ports per call). Clear of the PBXes' RTP ranges
# (28000-30999), of the tests' SIPp peers (6000 up) and of Linux's ephemeral ports (32768 up).
AGENT_MEDIA, DESK_MEDIA, CITIZEN_MEDIA, CITIZEN_MEDIA_SPAN = 26000, 26050, 27000, 300
RETRY_503_S = 0.5  # a refused press is pressed again this much later (Retry-After says 1 s)
TERMINAL = {"answered", "returned", "failed", "lost", "abandoned", "ended", "cancelled"}
NOT_YET_S = 3.0  # how long a 409 "not on a call" (the owner has not read the bridge yet) is retried


@dataclass(frozen=True)
class Plan:
    rate: float  # citizen calls/s per PBX
    duration: float
    hold: float
    kill_at: float

    @classmethod
    def of(cls, short: bool) -> Plan:
        return cls(1.0, 20.0, 6.0, 8.0) if short else cls(1.0, 60.0, 8.0, 25.0)

    @property
    def calls(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass
class Press:
    """What the hotkeys met for one call (on top of its DrillCall)."""

    via: str = ""  # the replica that answered 202
    refused_503: int = 0
    lost_in_flight: int = 0  # the connection died with the request (the replica was killed)
    not_yet_409: int = 0
    first_refused_at: float | None = None  # seconds into the run
    # Every transfer accepted for the call (transfer_id, handoff_id): more than one when a
    # transfer failed (its replica killed before it dialled) and the agent pressed again.
    accepted: list[tuple[str, str]] = field(default_factory=list)
    failed_then_pressed_again: int = 0


@dataclass
class PbxRun:
    node: Node
    index: int
    sandbox: Sandbox
    workdir: Path
    presses: dict[str, Press] = field(default_factory=dict)
    ami: LoadAmi | None = None
    citizens: SippProcess | None = None
    agents: SippProcess | None = None
    desk: SippProcess | None = None
    watch: CallWatch = field(init=False)  # the drill's calls on this PBX, as its AMI shows them

    def __post_init__(self) -> None:
        self.watch = CallWatch(self.topo)

    @property
    def topo(self) -> dict[str, Any]:
        return self.node.topology

    @property
    def calls(self) -> dict[str, DrillCall]:  # by the citizen's Uniqueid
        return self.watch.calls

    @property
    def offered(self) -> int:
        return self.watch.offered


class InFlightLost(Exception):
    """The connection died after the request was written: it may or may not have been served."""


class Front:
    """The hotkeys to the replicas in turn, as a load balancer spreads them; a replica that
    refuses the connection (dead) is skipped for the next one."""

    def __init__(self, cluster: Cluster) -> None:
        self.clients = {n: HotkeyClient("127.0.0.1", p) for n, p in cluster.replicas.items()}
        self.names = list(self.clients)
        self.turn = 0
        self.sent: Counter[str] = Counter()
        self.rerouted = 0

    async def post(self, path: str, body: bytes, token: str) -> tuple[str, int, Any]:
        first = self.turn
        self.turn = (self.turn + 1) % len(self.names)
        for i in range(len(self.names)):
            name = self.names[(first + i) % len(self.names)]
            try:
                status, answer, _ = await asyncio.wait_for(
                    self.clients[name].post(path, body, token), 10
                )
            except ConnectionRefusedError:
                self.rerouted += 1
                continue
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                raise InFlightLost(f"{name}: {type(exc).__name__}: {exc}") from None
            self.sent[name] += 1
            return name, status, answer
        raise ConnectionRefusedError("no replica accepted the connection")

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


class ClusterDrill:
    def __init__(self, plan: Plan, cluster: Cluster, work: Path) -> None:
        self.plan = plan
        self.cluster = cluster
        self.work = work
        self.pbxes = [
            PbxRun(n, i, Sandbox(n.topology_path), work / n.name)
            for i, n in enumerate(cluster.nodes)
        ]
        self.front = Front(cluster)
        self.replicas: dict[str, RunningBridge] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.t0 = 0.0
        self.killed_at: float | None = None  # monotonic
        self.takeover_s: float | None = None
        self.in_flight_at_kill = 0
        self.victim = ""  # the owner of the home PBX (pbx-1): its service runs the site scans

    # -- PBX events -------------------------------------------------------------------------------

    def _with_agent(self, pbx: PbxRun, rec: DrillCall) -> None:
        """A citizen has just met a pool agent on ``pbx``: press the carry key."""
        pbx.presses[rec.uid] = Press()
        task = asyncio.get_running_loop().create_task(self._press(pbx, rec))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the hotkey -------------------------------------------------------------------------------

    async def _press(self, pbx: PbxRun, rec: DrillCall) -> None:
        """The carry key, and again if the accepted transfer failed with the citizen still
        with the agent (as an agent whose phone shows "failed" would press it again)."""
        token = pool_token(pbx.topo, rec.agent_id)
        press = pbx.presses[rec.uid]
        while await self._press_once(pbx, rec, token) and await self._failed(rec, token):
            press.failed_then_pressed_again += 1

    async def _press_once(self, pbx: PbxRun, rec: DrillCall, token: str) -> bool:
        """Until a 202 (True), or the call is over or refused for good (False)."""
        press = pbx.presses[rec.uid]
        path = f"/v1/agents/{rec.agent_id}/carry-transfer"
        # The call this press is for: a press read late never acts on the agent's next call.
        payload = json.dumps({"target": "110", "call_id": rec.uid}).encode()
        not_yet_since: float | None = None
        while rec.hung_up_at is None and rec.partner_bridged_at is None:
            rec.press_at = time.time()
            try:
                via, status, body = await self.front.post(path, payload, token)
            except InFlightLost as exc:
                press.lost_in_flight += 1
                rec.error = f"in flight: {exc}"
                await asyncio.sleep(RETRY_503_S)
                continue
            except ConnectionRefusedError as exc:
                rec.error = str(exc)
                await asyncio.sleep(RETRY_503_S)
                continue
            rec.answer_at, rec.status = time.time(), status
            if status == 202:
                press.via, rec.error = via, ""
                rec.ref, rec.handoff_id = body.get("transfer_id", ""), body.get("handoff_id", "")
                press.accepted.append((rec.ref, rec.handoff_id))
                return True
            if status == 503:
                press.refused_503 += 1
                if press.first_refused_at is None:
                    press.first_refused_at = round(time.monotonic() - self.t0, 2)
                await asyncio.sleep(RETRY_503_S)
                continue
            if status == 409 and not_read_yet(str(body)):
                # The owner has not read this BridgeEnter yet (or, after a takeover, rebuilt
                # the call; the press names its call, so a later one is "has not reached the
                # bridge yet"): pressed again shortly, for a while.
                press.not_yet_409 += 1
                not_yet_since = not_yet_since or time.monotonic()
                if time.monotonic() - not_yet_since < NOT_YET_S:
                    await asyncio.sleep(0.01)
                    continue
            rec.error = f"HTTP {status}: {body}"
            return False
        return False

    async def _failed(self, rec: DrillCall, token: str) -> bool:
        """Whether the accepted transfer ended ``failed`` while the citizen is still up. A
        transfer reaches 110 within milliseconds; only one that has not is asked about (through
        a live replica), until the desk has the citizen or the call is over."""
        await asyncio.sleep(1.0)
        while rec.partner_bridged_at is None and rec.hung_up_at is None:
            status, body = await self._get(f"/v1/transfers/{rec.ref}", token)
            if status == 200 and body.get("state") == "failed":
                return rec.hung_up_at is None
            if status == 200 and body.get("state") in TERMINAL:
                return False
            await asyncio.sleep(0.5)
        return False

    async def _get(self, path: str, token: str) -> tuple[int, Any]:
        for name, rb in self.replicas.items():
            if name == self.victim and self.killed_at is not None:
                continue
            with contextlib.suppress(OSError):
                return await rb.request("GET", path, token=token)
        return 0, None

    # -- the run ----------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        cluster = self.cluster
        pg = PgServer().start()
        desk = PartnerDesk(self.work / "partner", PARTNER_PORT)
        procs: list[SippProcess] = []
        try:
            await asyncio.to_thread(start_pbxes, cluster)
            await desk.up()
            dsn = pg.create_db("hotline")
            drill = cluster.nodes[0].topology["drill"]
            overrides = {
                **bridge_env(PARTNER_PORT),
                # The drill's 110 desk and queue, on every PBX (same endpoint names on each).
                "HOTLINE_BRIDGE_TARGETS__110__DIAL": (
                    f"PJSIP/{drill['partner_number']}@{drill['partner_endpoint']}"
                ),
                "HOTLINE_BRIDGE_BRIDGE__RETURN_QUEUE": cluster.nodes[0].topology["agent_pool"][
                    "queue"
                ],
            }
            for name in cluster.replicas:
                self.replicas[name] = start_replica(
                    cluster, name, dsn, self.work / name, overrides=overrides
                )
            owned = await asyncio.to_thread(wait_placed, cluster, self.replicas)
            self.victim = owned[cluster.nodes[0].name]
            killed_nodes = sorted(n for n, r in owned.items() if r == self.victim)
            for pbx in self.pbxes:
                await self._connect(pbx)
                left = await self._hang_up_leftovers(pbx)
                if left:
                    _say(f"cluster drill: {pbx.node.name}: hung up {left} leftover channels")
                procs += await self._start_peers(pbx)
            self.t0 = time.monotonic()
            for pbx in self.pbxes:
                assert pbx.citizens is not None
                await pbx.citizens.start(settle=0)
            killer = asyncio.create_task(self._kill(killed_nodes))
            await self._watch()
            await killer
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=30)
            await asyncio.sleep(1.0)  # the last BYEs and AMI events
            results = []
            for pbx in self.pbxes:
                assert pbx.citizens is not None and pbx.desk is not None
                results.append(
                    {"citizens": pbx.citizens.snapshot(), "partner": await pbx.desk.stop(5)}
                )
            return await self._report(owned, killed_nodes, results, desk)
        finally:
            await stop_all(*(p.citizens for p in self.pbxes if p.citizens), *reversed(procs))
            for pbx in self.pbxes:
                with contextlib.suppress(Exception):
                    await self._hang_up_leftovers(pbx)
                if pbx.ami is not None:
                    await pbx.ami.close()
            await self.front.close()
            for rb in self.replicas.values():
                rb.stop()
            await desk.close()
            pg.stop()
            for pbx in self.pbxes:
                pbx.sandbox.stop()

    async def _connect(self, pbx: PbxRun) -> None:
        def on_event(msg: Message) -> None:
            rec = pbx.watch.on_event(msg)
            if rec is not None:
                self._with_agent(pbx, rec)

        pbx.ami = await watch_pbx(pbx.topo, on_event)

    async def _hang_up_leftovers(self, pbx: PbxRun) -> int:
        assert pbx.ami is not None
        return await hang_up_channels(pbx.ami, pbx.watch.prefixes)

    async def _start_peers(self, pbx: PbxRun) -> list[SippProcess]:
        plan, topo, i = self.plan, pbx.topo, pbx.index
        if 2 * plan.calls + 10 > CITIZEN_MEDIA_SPAN:
            raise RuntimeError(f"{plan.calls} calls per PBX need more than its media port span")
        # One number per call, a fresh block per run and per PBX (139, the PBX's digit, 7 more).
        base = int(time.time()) % 900 * 10_000
        numbers = [f"139{i + 1}{(base + k) % 10**7:07d}" for k in range(plan.calls)]
        work, hold = pbx.workdir, plan.hold
        pbx.desk = drill_desk(topo, work, hold=hold, media_port=DESK_MEDIA + 100 * i, trace=False)
        pbx.agents = drill_agents(
            topo, work, hold=hold, media_port=AGENT_MEDIA + 100 * i, trace=False
        )
        pbx.citizens = drill_citizens(
            topo,
            work,
            numbers,
            rate=plan.rate,
            hold=hold,
            media_port=CITIZEN_MEDIA + CITIZEN_MEDIA_SPAN * i,
            trace=False,
        )
        await pbx.desk.start(settle=0)
        await pbx.agents.start()
        return [pbx.desk, pbx.agents]

    async def _kill(self, killed_nodes: list[str]) -> None:
        """kill -9 the victim at ``kill_at`` (once a transfer of its PBX is in flight, or 5 s
        later), then until the survivors serve every PBX it owned: the takeover time."""
        await asyncio.sleep(max(0.0, self.t0 + self.plan.kill_at - time.monotonic()))
        mine = [p for p in self.pbxes if p.node.name in killed_nodes]
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self._in_flight(mine):  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        self.in_flight_at_kill = self._in_flight(mine)
        victim = self.replicas[self.victim].proc
        assert victim is not None
        victim.send_signal(signal.SIGKILL)
        self.killed_at = time.monotonic()
        _say(f"cluster drill: replica {self.victim} kill -9ed at {self.killed_at - self.t0:.1f} s")
        survivors = [rb for n, rb in self.replicas.items() if n != self.victim]
        while time.monotonic() - self.killed_at < 60:
            here = set()
            for rb in survivors:
                nodes = (await asyncio.to_thread(health, rb)).get("nodes") or {}
                here |= {n for n, st in nodes.items() if st.get("here") and st.get("ready")}
            if set(killed_nodes) <= here:
                self.takeover_s = time.monotonic() - self.killed_at
                _say(
                    f"cluster drill: {killed_nodes} served by survivors "
                    f"{self.takeover_s:.2f} s later"
                )
                return
            await asyncio.sleep(0.05)

    @staticmethod
    def _in_flight(pbxes: list[PbxRun]) -> int:
        return sum(
            1
            for p in pbxes
            for c in p.calls.values()
            if c.status == 202 and c.partner_bridged_at is None and c.hung_up_at is None
        )

    async def _watch(self) -> None:
        """Until every PBX's citizens placed and ended all their calls; progress every 5 s."""
        limit = self.plan.duration + self.plan.hold + 90
        last = 0.0
        while any(p.citizens is not None and p.citizens.running for p in self.pbxes):
            await asyncio.sleep(0.2)
            elapsed = time.monotonic() - self.t0
            if elapsed - last >= 5:
                last = elapsed
                _say(
                    f"cluster drill t={elapsed:5.1f}s "
                    + " ".join(self._progress(p) for p in self.pbxes)
                )
            if elapsed > limit:
                _say(f"cluster drill: still running after {limit:.0f} s; stopping the citizens")
                for p in self.pbxes:
                    if p.citizens is not None:
                        await p.citizens.stop(timeout=3)
                break

    @staticmethod
    def _progress(p: PbxRun) -> str:
        calls = p.calls.values()
        pressed = sum(1 for c in calls if c.status == 202)
        carried = sum(1 for c in calls if c.partner_bridged_at is not None)
        return (
            f"{p.node.name}: offered={p.offered} with-agent={len(p.calls)} "
            f"pressed={pressed} carried={carried}"
        )

    # -- after the run ----------------------------------------------------------------------------

    async def _report(
        self,
        owned: dict[str, str],
        killed_nodes: list[str],
        results: list[dict[str, Any]],
        desk: PartnerDesk,
    ) -> dict[str, Any]:
        survivor = next(rb for n, rb in self.replicas.items() if n != self.victim)
        states: Counter[str] = Counter()
        not_carried: Counter[str] = Counter()
        zeros: Counter[str] = Counter()
        per_pbx: dict[str, dict[str, Any]] = {}
        hotkeys: Counter[str] = Counter()
        handoffs: set[str] = set()
        unmatched = 0
        refused_at: list[float] = []
        for pbx, res in zip(self.pbxes, results, strict=True):
            found = read_sipp_logs(pbx.calls, res, "bridge", ["partner"])
            unmatched += len(found.partner_unmatched)
            # Dialogs at 110 per citizen number: two for one citizen is a doubled handoff, even
            # under two handoff ids (a press lost in flight and pressed again).
            dialogs: dict[str, set[str]] = {}
            for line in res["partner"].log_lines:
                if " drill-partner-invite " in line:
                    num = _log_fields(line).get("from", "")
                    dialogs.setdefault(num, set()).add(line.split(" ", 1)[0])
            zeros["handoffs_doubled"] += sum(1 for ids in dialogs.values() if len(ids) > 1)
            numbers = {rec.number for rec in pbx.calls.values()}
            zeros["numbers_wrong_at_110"] += sum(1 for num in dialogs if num not in numbers)
            zeros["citizens_dropped_by_the_bridge"] += sum(
                1 for by in found.citizen_end.values() if by == "pbx"
            )
            tokens = pbx.topo["agent_pool"]["token_prefix"]
            pressed = carried = refused_calls = 0
            for rec in pbx.calls.values():
                press = pbx.presses[rec.uid]
                hotkeys["refused_503"] += press.refused_503
                hotkeys["lost_in_flight"] += press.lost_in_flight
                hotkeys["not_yet_409_retried"] += press.not_yet_409
                if press.refused_503:
                    refused_calls += 1
                    if press.first_refused_at is not None:
                        refused_at.append(press.first_refused_at)
                if press.via:
                    hotkeys[f"accepted_via_{press.via}"] += 1
                # Carried: the desk's channel bridged into this call (AMI), and the desk saw
                # this citizen's number (From = PAI, checked by its scenario).
                ok = rec.partner_bridged_at is not None and rec.number in dialogs
                carried += ok
                hotkeys["transfers_failed_then_pressed_again"] += press.failed_then_pressed_again
                if press.accepted:
                    pressed += 1
                    final: list[str] = []
                    for ref, hid in press.accepted:
                        handoffs.add(hid)
                        status, body = await survivor.request(
                            "GET", f"/v1/transfers/{ref}", token=f"{tokens}{rec.agent_id}"
                        )
                        final.append(body.get("state", "") if status == 200 else f"http {status}")
                    states.update(final)
                    rec.record_state = final[-1]
                    # The last transfer carried the citizen; any before it failed (nothing
                    # dialled). An earlier one answered too would be a second handoff.
                    if final[-1] != "answered" or not ok:
                        zeros["handoffs_lost"] += 1
                    zeros["handoffs_doubled"] += sum(1 for st in final[:-1] if st != "failed")
                    if rec.desk_invites > 1:
                        zeros["handoffs_doubled"] += 1
                if not ok:
                    if press.refused_503 or press.lost_in_flight:
                        why = "refused while its PBX was taken over (503 until the citizen left)"
                        if press.lost_in_flight and not press.refused_503:
                            why = "press lost in flight with the killed replica"
                    elif press.accepted:
                        why = f"accepted, not carried (transfer {rec.record_state})"
                    else:
                        why = f"not pressed: {rec.error or 'the citizen left first'}"
                    not_carried[why] += 1
                    if not (press.refused_503 or press.lost_in_flight):
                        zeros["calls_not_carried_without_a_refusal"] += 1
            never = pbx.offered - len(pbx.calls)
            if never:
                not_carried["never reached an agent"] += never
                zeros["calls_not_carried_without_a_refusal"] += never
            per_pbx[pbx.node.name] = {
                "offered": pbx.offered,
                "with_agent": len(pbx.calls),
                "pressed_202": pressed,
                "carried": carried,
                "calls_refused_at_least_once": refused_calls,
            }
        for _ in range(60):  # the outbox drains (a dead drainer's claims come back)
            if handoffs <= desk.received_records():
                break
            await asyncio.sleep(0.5)
        zeros["outbox_pushes_doubled"] = len(desk.doubled())
        zeros["records_missing_at_partner"] = len(handoffs - desk.received_records())
        total = {k: sum(v[k] for v in per_pbx.values()) for k in next(iter(per_pbx.values()))}
        p = self.plan
        order = (
            "citizens_dropped_by_the_bridge",
            "handoffs_lost",
            "handoffs_doubled",
            "outbox_pushes_doubled",
            "records_missing_at_partner",
            "numbers_wrong_at_110",
            "calls_not_carried_without_a_refusal",
        )
        return {
            "kind": "cluster replica-failure drill",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "plan": {
                "pbxes": len(self.pbxes),
                "replicas": list(self.cluster.replicas),
                "rate_per_pbx": p.rate,
                "duration_s": p.duration,
                "hold_s": p.hold,
                "kill_at_s": p.kill_at,
                "killed": self.victim,
                "lease_ttl_s": self.cluster.lease_ttl_s,
                "agents_per_pbx": self.pbxes[0].topo["agent_pool"]["count"],
                "press": "on the admin AMI's BridgeEnter, through the next replica in turn",
            },
            "owners_before": owned,
            "killed_replica_owned": killed_nodes,
            "killed_at_s": round(self.killed_at - self.t0, 2) if self.killed_at else None,
            "takeover_s": round(self.takeover_s, 2) if self.takeover_s is not None else None,
            "transfers_in_flight_at_kill": self.in_flight_at_kill,
            # What the survivors took back from the store and settled with the PBX's state.
            "transfers_restored_by_survivors": sum(
                rb.log_path.read_text(errors="replace").count('"carry transfer restored"')
                for n, rb in self.replicas.items()
                if n != self.victim
            ),
            "calls": total,
            "per_pbx": per_pbx,
            "not_carried": dict(not_carried),
            "final_states": dict(states),
            "hotkeys": {
                **dict(hotkeys),
                "rerouted_refused_connection": self.front.rerouted,
                "first_503_at_s": min(refused_at) if refused_at else None,
                "last_503_at_s": max(refused_at) if refused_at else None,
            },
            "desk_invites_of_no_accepted_press": unmatched,
            "forwarded": {
                n: health(rb).get("forwarded")
                for n, rb in self.replicas.items()
                if n != self.victim
            },
            "zeros": {k: zeros[k] for k in order},
        }


def markdown(r: dict[str, Any]) -> str:
    p, c, h = r["plan"], r["calls"], r["hotkeys"]
    lines = [
        f"# Cluster replica-failure drill, {r['when']}",
        "",
        f"{p['pbxes']} sandbox PBXes ({p['agents_per_pbx']} pool agents each), replicas "
        f"{', '.join(p['replicas'])} on PostgreSQL (lease ttl {p['lease_ttl_s']} s); "
        f"{p['rate_per_pbx']} citizen calls/s per PBX for {p['duration_s']} s (SIPp with G.711 "
        f"media, hold {p['hold_s']} s), every call carried to 110 through the hotkey API, pressed "
        f"{p['press']}; replica {p['killed']} (owner of {', '.join(r['killed_replica_owned'])}) "
        f"kill -9ed at {r['killed_at_s']} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| owners before | {r['owners_before']} |",
        f"| takeover (kill -9 to its PBXes served by survivors) | {r['takeover_s']} s |",
        f"| transfers in flight on its PBX at the kill; restored by a survivor | "
        f"{r['transfers_in_flight_at_kill']}; {r['transfers_restored_by_survivors']} |",
        f"| calls offered / with an agent / pressed (202) / carried | {c['offered']} / "
        f"{c['with_agent']} / {c['pressed_202']} / {c['carried']} |",
        f"| per PBX | {r['per_pbx']} |",
        f"| not carried, and why | {r['not_carried'] or 'none'} |",
        f"| hotkeys refused (503 answers; calls refused at least once) | "
        f"{h.get('refused_503', 0)}; {c['calls_refused_at_least_once']} |",
        f"| hotkeys (all outcomes) | {h} |",
        f"| transfers' final states (failed: killed before dialling, pressed again) | "
        f"{r['final_states']} |",
        f"| forwarded by the survivors | {r['forwarded']} |",
        "",
        "| zero | value |",
        "|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in r["zeros"].items()]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    j, m = out / f"cluster-{stamp}.json", out / f"cluster-{stamp}.md"
    j.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    m.write_text(markdown(result))
    return j, m


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(short: bool, out: Path | None = None) -> dict[str, Any]:
    # The partner desk runs the product's receiver in this process: its info lines are noise here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = Path(tempfile.mkdtemp(prefix="hb-cluster-drill-"))
    result = await ClusterDrill(Plan.of(short), load_cluster(), work).run()
    result["workdir"] = str(work)
    if out is not None:
        result["published"] = [str(p) for p in write(result, out)]
    return result


def passed(result: dict[str, Any]) -> bool:
    return not any(result["zeros"].values()) and result["takeover_s"] is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cluster_drill", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI's version (~40 s)")
    parser.add_argument("--publish", type=Path, help="write cluster-<stamp>.json/.md here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.short, args.publish))
    print(markdown(result))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
