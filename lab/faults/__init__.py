"""The fault drill (``make faults``): carry-transfer load while the drill breaks things on purpose.

One run of the load drill (SIPp citizens with media, an agent pool, a 110 desk; every call
bridged to an agent gets the carry key pressed) with, in turn:

- the partner platform unreachable (its port closed) and then back;
- the AMI TCP connection cut (a proxy between the bridge and AMI severs it);
- the bridge ``kill -9``ed and restarted on the same store;
- Asterisk ``core restart now``.

Per fault it reports the hotkeys refused cleanly (4xx/503) or unanswerable (the bridge was dead),
and the zeros that must stay zero: citizens dropped by the bridge (calls the PBX restart itself
killed are counted apart), hotkeys answered with a 5xx other than 503, a BlindTransfer sent twice
for one call, a second INVITE at 110 for one handoff, records not in a terminal state after the
drill, machines left in flight in the store, and outbox items lost or accepted twice by the
partner. The exit status is non-zero if any zero is not zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ..bridge import RunningBridge, start_bridge
from ..drill.driver import Drill, HotkeyClient
from ..drill.options import DrillCall, DrillOptions, _log_fields
from ..loadami import LoadAmi
from ..sandbox import REPO, load_topology
from ..sipp import SippProcess
from .partner import PartnerDesk, bridge_env
from .proxy import AmiProxy

FAULTS = ("partner_down", "ami_cut", "bridge_kill", "pbx_restart", "replica_kill")
TERMINAL = {"answered", "returned", "failed", "abandoned", "lost", "ended", "cancelled"}
DEFAULT_RESULTS = REPO / "bench" / "results" / "faults"
PARTNER_DESK_PORT = 18390


@dataclass(frozen=True)
class FaultPlan:
    """When each fault starts (seconds after the first citizen call) and how long the partner
    stays unreachable."""

    rate: float = 5.0
    duration: float = 120.0
    hold: float = 8.0
    partner_down_at: float = 8.0
    partner_down_s: float = 30.0
    ami_cut_at: float = 48.0
    bridge_kill_at: float = 68.0
    pbx_restart_at: float = 92.0
    # The replica-failure drill (``--replicas``): a standby replica beside the active one, the
    # hotkeys spread over both, the active one kill -9ed (and never restarted by the drill
    # until the standby has taken over). When set, it is the only fault.
    replica_kill_at: float | None = None
    lease_ttl_s: float = 3.0

    @classmethod
    def short(cls) -> FaultPlan:
        """CI's version: every fault, shorter gaps, a lighter load."""
        return cls(
            rate=3.0,
            duration=64.0,
            hold=6.0,
            partner_down_at=4.0,
            partner_down_s=12.0,
            ami_cut_at=20.0,
            bridge_kill_at=32.0,
            pbx_restart_at=46.0,
        )

    @classmethod
    def replicas(cls, short: bool = False) -> FaultPlan:
        """The replica-failure drill: carry-transfer load through two replicas, one killed."""
        if short:
            return cls(rate=3.0, duration=40.0, hold=6.0, replica_kill_at=15.0, lease_ttl_s=1.5)
        return cls(rate=5.0, duration=90.0, hold=8.0, replica_kill_at=40.0)

    def schedule(self) -> list[tuple[float, str]]:
        if self.replica_kill_at is not None:
            return [(self.replica_kill_at, "replica_kill")]
        return sorted(
            [
                (self.partner_down_at, "partner_down"),
                (self.ami_cut_at, "ami_cut"),
                (self.bridge_kill_at, "bridge_kill"),
                (self.pbx_restart_at, "pbx_restart"),
            ]
        )


@dataclass
class FaultRun:
    name: str
    started: float = 0.0  # epoch s
    recovered: float = 0.0  # the bridge healthy again (or the partner back)
    detail: dict[str, Any] = field(default_factory=dict)


class FaultDrill(Drill):
    desk: PartnerDesk

    def __init__(self, opts: DrillOptions, plan: FaultPlan, proxy: AmiProxy):
        super().__init__(opts)
        self.plan = plan
        self.proxy = proxy
        self.faults: list[FaultRun] = []
        self.outbox_drained_s: float | None = None
        self.standby: RunningBridge | None = None
        self.spread: Spread | None = None

    async def _watch(
        self,
        citizen: SippProcess,
        partner: SippProcess,
        agents: SippProcess,
        pids: dict[str, int | None],
        t0: float,
    ) -> list[dict[str, Any]]:
        inject = asyncio.create_task(self._inject(t0))
        try:
            samples = await super()._watch(citizen, partner, agents, pids, t0)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(inject, 120)
        await self._wait_outbox_drained()
        return samples

    async def _inject(self, t0: float) -> None:
        if self.plan.replica_kill_at is not None:
            await self._start_standby()
        for at, name in self.plan.schedule():
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            run = FaultRun(name, started=time.time())
            self.faults.append(run)
            self._say(f"faults: {name}")
            try:
                await getattr(self, f"_{name}")(run)
            except Exception as exc:  # a fault that could not be injected is reported, not hidden
                run.detail["error"] = f"{type(exc).__name__}: {exc}"
            run.recovered = time.time()
            self._say(f"faults: {name} over after {run.recovered - run.started:.1f} s")

    async def _partner_down(self, run: FaultRun) -> None:
        await self.desk.down()
        await asyncio.sleep(self.plan.partner_down_s)
        await self.desk.up()
        run.detail["down_s"] = self.plan.partner_down_s

    async def _ami_cut(self, run: FaultRun) -> None:
        run.detail["severed"] = self.proxy.cut(refuse_for_s=2.0)
        await asyncio.sleep(0.5)
        await self._healthy(run)

    async def _bridge_kill(self, run: FaultRun) -> None:
        assert self.bridge is not None and self.bridge.proc is not None
        # Die in the middle of a promise: while a transfer the bridge accepted is still on its
        # way to the 110 desk (or after 5 s of waiting for one).
        deadline = time.monotonic() + 5.0
        # Polled: the calls' fields change with AMI events the drill does not signal.
        while time.monotonic() < deadline and not self._in_flight():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        run.detail["transfers_in_flight_at_kill"] = self._in_flight()
        self.bridge.proc.send_signal(signal.SIGKILL)
        run.detail["exit"] = await asyncio.to_thread(self.bridge.proc.wait, 10)
        before = self.bridge.log_path.stat().st_size
        await asyncio.to_thread(self.bridge.restart, 30.0)
        await self._healthy(run)
        with self.bridge.log_path.open("rb") as log:
            log.seek(before)
            restarted = log.read().decode("utf-8", "replace")
        # What the new process took back from the store and settled with the PBX's state.
        run.detail["transfers_restored"] = restarted.count('"carry transfer restored"')

    async def _start_standby(self) -> None:
        """Replica b beside the drill's bridge (replica a, active): same PBX, same store; the
        hotkeys from now on go to a and b in turn, as a load balancer would send them."""
        assert self.bridge is not None and self.hotkeys is not None
        port = self.opts.bridge_port + 1
        self.standby = await asyncio.to_thread(
            start_bridge,
            self.opts.topology,
            self.topo,
            self.workdir / "bridge-b",
            port=port,
            overrides={
                **self.bridge.env_overrides(),
                **replica_env("b", port, self.plan.lease_ttl_s),
                "HOTLINE_BRIDGE_BRIDGE__STORE_PATH": str(self.store_path),
            },
        )
        self.spread = Spread([self.hotkeys, HotkeyClient("127.0.0.1", port)])
        self.hotkeys = self.spread  # type: ignore[assignment]
        self._say(f"faults: standby replica b on :{port}, hotkeys spread over a and b")

    async def _replica_kill(self, run: FaultRun) -> None:
        assert self.bridge is not None and self.bridge.proc is not None
        assert self.standby is not None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self._in_flight():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        run.detail["transfers_in_flight_at_kill"] = self._in_flight()
        killed = time.monotonic()
        self.bridge.proc.send_signal(signal.SIGKILL)
        run.detail["exit"] = await asyncio.to_thread(self.bridge.proc.wait, 10)
        b = self.standby
        while time.monotonic() - killed < 60:
            with contextlib.suppress(OSError):
                status, body = await asyncio.to_thread(b.request_sync, "GET", "/healthz")
                if status == 200 and body.get("status") != "standby":
                    break
            await asyncio.sleep(0.05)
        run.detail["takeover_s"] = round(time.monotonic() - killed, 2)
        run.detail["lease_ttl_s"] = self.plan.lease_ttl_s
        before = 0
        with b.log_path.open("rb") as log:
            text = log.read().decode("utf-8", "replace")
        run.detail["transfers_restored"] = text[before:].count('"carry transfer restored"')
        run.detail["forwarded_by_standby"] = _forwarded(text)
        # The old active comes back, as the standby of the new one.
        a = self.bridge
        await asyncio.to_thread(a.restart, 30.0)
        status, body = await asyncio.to_thread(a.request_sync, "GET", "/healthz")
        run.detail["old_active_rejoined_as"] = body.get("status") if status == 200 else status
        self.bridge, self.standby = b, a  # the drill's checks ask the active one
        await self._healthy(run)

    def _in_flight(self) -> int:
        return sum(
            1
            for c in self.calls.values()
            if c.status == 202 and c.partner_bridged_at is None and c.hung_up_at is None
        )

    async def _pbx_restart(self, run: FaultRun) -> None:
        live = sum(1 for c in self.calls.values() if c.hung_up_at is None)
        run.detail["calls_up_at_restart"] = live
        old = self.ami
        self.proxy.next_generation()  # channel names start again from -00000000
        await asyncio.to_thread(self.sandbox.restart)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        ami, admin = self.topo["ami"], self.topo["sandbox_admin"]
        self.ami = await LoadAmi.connect(
            ami["host"],
            int(ami["port"]),
            admin["username"],
            admin["secret"],
            events="call",
            on_event=self.on_event,
        )
        self.watch.bridges.clear()  # bridges died with the PBX; new calls build their own
        await self._healthy(run)

    async def _healthy(self, run: FaultRun, within: float = 60.0) -> None:
        assert self.bridge is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, _ = await asyncio.to_thread(self.bridge.request_sync, "GET", "/healthz")
                if status == 200:
                    run.detail["healthy_after_s"] = round(time.time() - run.started, 2)
                    return
            await asyncio.sleep(0.2)
        run.detail["healthy_after_s"] = None

    async def _wait_outbox_drained(self, within: float = 60.0) -> None:
        """Before the run's checks: the partner is back, give the outbox time to catch up."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < within:
            if outbox_undelivered(self.store_path) == 0:
                self.outbox_drained_s = round(time.monotonic() - t0, 2)
                return
            await asyncio.sleep(0.5)

    @property
    def store_path(self) -> Path:
        return self.workdir / "bridge" / "handoffs.sqlite3"


def replica_env(name: str, port: int, ttl_s: float) -> dict[str, str]:
    return {
        "HOTLINE_BRIDGE_CLUSTER__NODE": "drill-pbx",
        "HOTLINE_BRIDGE_CLUSTER__REPLICA": name,
        "HOTLINE_BRIDGE_CLUSTER__URL": f"http://127.0.0.1:{port}",
        "HOTLINE_BRIDGE_CLUSTER__LEASE_TTL_S": str(ttl_s),
    }


def _forwarded(log_text: str) -> int | None:
    """What the standby forwarded before it took over (its 'replica active' line says)."""
    for line in log_text.splitlines():
        if '"replica active' in line:
            with contextlib.suppress(ValueError):
                return int(json.loads(line).get("forwarded_while_standby", 0))
    return None


class Spread:
    """Hotkeys to several replicas in turn; a replica that refuses the connection (dead) is
    skipped for the next, as a load balancer's retry on another upstream would."""

    def __init__(self, clients: list[HotkeyClient]) -> None:
        self.clients = clients
        self.turn = 0
        self.rerouted = 0
        self.sent = Counter[int]()

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, Any, float]:
        first = self.turn
        self.turn = (self.turn + 1) % len(self.clients)
        for i in range(len(self.clients)):
            client = self.clients[(first + i) % len(self.clients)]
            try:
                result = await client.post(path, body, token)
            except ConnectionRefusedError:
                self.rerouted += 1
                continue
            self.sent[client.port] += 1
            return result
        raise ConnectionRefusedError("no replica accepted the connection")

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


def outbox_undelivered(store: Path) -> int:
    if not store.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return int(
            db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
        )


def store_facts(store: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        inflight = db.execute(
            "SELECT kind, count(*) FROM machines WHERE done = 0 GROUP BY kind"
        ).fetchall()
        pushed = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT handoff_id FROM outbox WHERE kind = 'handoff.created'"
            )
        }
        return {
            "inflight": {k: n for k, n in inflight},
            "undelivered": int(
                db.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
            ),
            "records_pushed": pushed,
        }


def partner_invites(log_file: Path) -> Counter[str]:
    """INVITEs at the 110 desk per X-Handoff-Id (from partner_drill_uas.xml's log lines)."""
    seen: Counter[str] = Counter()
    if log_file.exists():
        for line in log_file.read_text(errors="replace").splitlines():
            if " drill-partner-invite " in line:
                seen[_log_fields(line).get("id", "")] += 1
    return seen


def window_of(rec: DrillCall, faults: list[FaultRun], settle: float) -> str:
    """The fault a call belongs to: its press (or its bridging to an agent) fell between the
    fault's start and its recovery plus ``settle``; the PBX restart also takes every call that
    was up when it began."""
    for f in faults:
        if (
            f.name == "pbx_restart"
            and (rec.bridged_at or 0) <= f.started
            and (rec.hung_up_at is None or rec.hung_up_at >= f.started)
        ):
            return f.name
    at = rec.press_at or rec.bridged_at or 0.0
    for f in reversed(faults):  # the latest fault that had begun: windows may overlap
        if f.started <= at <= f.recovered + settle:
            return f.name
    return "none"


def tally(
    calls: list[DrillCall],
    faults: list[FaultRun],
    settle: float,
) -> dict[str, dict[str, int]]:
    per: dict[str, Counter[str]] = {name: Counter() for name in ("none", *FAULTS)}
    for rec in calls:
        w = per[window_of(rec, faults, settle)]
        w["calls"] += 1
        status = rec.status if isinstance(rec.status, int) else None
        if status == 202:
            w["accepted"] += 1
            if rec.carried:
                w["carried"] += 1
        elif status is not None and (400 <= status < 500 or status == 503):
            w["refused_cleanly"] += 1
        elif status is not None and status >= 500:
            w["answered_5xx"] += 1
        elif rec.error:
            w["bridge_unreachable"] += 1
        if rec.citizen_end == "pbx":
            if window_of(rec, faults, settle) == "pbx_restart":
                w["citizens_killed_by_pbx_restart"] += 1
            else:
                w["citizens_dropped_by_bridge"] += 1
        if status == 202 and not rec.record_state:
            w["records_unreadable"] += 1  # the bridge could not say what became of it
        elif rec.record_state and rec.record_state.split(" ")[0] not in TERMINAL:
            w["records_not_terminal"] += 1
    return {k: dict(v) for k, v in per.items()}


def judge_zeros(
    per: dict[str, dict[str, int]],
    proxy: AmiProxy,
    desk: PartnerDesk,
    invites: Counter[str],
    facts: dict[str, Any],
) -> dict[str, int]:
    total = Counter[str]()
    for w in per.values():
        total.update(w)
    missing_at_partner = facts["records_pushed"] - desk.received_records()
    return {
        "citizens_dropped_by_bridge": total["citizens_dropped_by_bridge"],
        "hotkeys_answered_5xx": total["answered_5xx"],
        "blind_transfers_doubled": len(proxy.doubled("BlindTransfer")),
        "partner_invites_doubled": sum(1 for hid, n in invites.items() if hid and n > 1),
        "records_not_terminal": total["records_not_terminal"],
        "transfers_unreadable_after_drill": total["records_unreadable"],
        "machines_left_in_flight": sum(facts["inflight"].values()),
        "outbox_items_undelivered": facts["undelivered"],
        "records_missing_at_partner": len(missing_at_partner),
        "outbox_items_doubled_at_partner": len(desk.doubled()),
    }


async def run_faults(plan: FaultPlan, *, label: str = "", progress: bool = True) -> dict[str, Any]:
    replicas = plan.replica_kill_at is not None
    # The partner desk runs the product's receiver in this process: its info lines are noise here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    opts = DrillOptions(
        mode="bridge",
        rate=plan.rate,
        duration=plan.duration,
        hold=plan.hold,
        results=REPO / ".sandbox" / "faults",
        label=label or "faults",
        progress=progress,
        plot=False,
    )
    drill_topo = load_topology(opts.topology)
    started_at = time.time()
    proxy = AmiProxy(drill_topo["ami"]["host"], int(drill_topo["ami"]["port"]))
    await proxy.start()
    opts.bridge_overrides = {
        "HOTLINE_BRIDGE_AMI__PORT": str(proxy.port),
        **bridge_env(PARTNER_DESK_PORT),
        **(replica_env("a", opts.bridge_port, plan.lease_ttl_s) if replicas else {}),
    }
    drill = FaultDrill(opts, plan, proxy)
    drill.workdir.mkdir(parents=True, exist_ok=True)
    desk = drill.desk = PartnerDesk(drill.workdir, PARTNER_DESK_PORT)  # a fresh store per run
    await desk.up()
    try:
        report = await drill.run()
    finally:
        if drill.standby is not None:
            await asyncio.to_thread(drill.standby.stop)
        await desk.close()
        await proxy.close()
    calls = list(drill.calls.values())
    settle = plan.hold + 5
    per = tally(calls, drill.faults, settle)
    invites = partner_invites(drill.workdir / "partner_logs.log")
    facts = store_facts(drill.store_path)
    zeros = judge_zeros(per, proxy, desk, invites, facts)
    result = {
        "kind": "replica-failure drill" if replicas else "fault drill",
        "started_at": started_at,
        "plan": asdict(plan),
        "machine": report.get("machine"),
        "faults": [asdict(f) for f in drill.faults],
        "per_fault": per,
        "zeros": zeros,
        "ok": not any(zeros.values()) and all("error" not in f.detail for f in drill.faults),
        "partner": {
            "records_received": len(desk.received_records()),
            "retries_recognised": sum(desk.duplicates.values()),
            "refused": dict(desk.refused),
        },
        "ami_proxy": {"connections": proxy.connections, "cuts": proxy.cuts},
        "hotkeys_spread": (
            {
                "per_port": dict(drill.spread.sent),
                "rerouted_from_a_dead_replica": drill.spread.rerouted,
            }
            if drill.spread is not None
            else None
        ),
        "outbox_drained_after_load_s": drill.outbox_drained_s,
        "drill": {
            "calls": report.get("calls"),
            "transfers": report.get("transfers"),
            "workdir": str(drill.workdir.relative_to(REPO)),
        },
    }
    return result


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        f"# {result['kind'].capitalize()}, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(result['started_at'] or 0))} UTC",
        "",
        f"Carry-transfer load at {plan['rate']:g} calls/s for {plan['duration']:g} s (media on,"
        f" {plan['hold']:g} s calls); verdict: **{'PASS' if result['ok'] else 'FAIL'}**.",
        "",
        "| fault | started at (s) | bridge healthy after (s) | detail |",
        "|---|---|---|---|",
    ]
    first_at = plan["replica_kill_at"] or plan["partner_down_at"]  # the first fault's schedule
    t0 = min((f["started"] for f in result["faults"]), default=0.0) - first_at
    for f in result["faults"]:
        detail = {k: v for k, v in f["detail"].items() if k != "healthy_after_s"}
        lines.append(
            f"| {f['name']} | {f['started'] - t0:.1f} | {f['detail'].get('healthy_after_s', '')} "
            f"| {json.dumps(detail)} |"
        )
    cols = [
        "calls",
        "accepted",
        "carried",
        "refused_cleanly",
        "bridge_unreachable",
        "answered_5xx",
        "citizens_dropped_by_bridge",
        "citizens_killed_by_pbx_restart",
        "records_not_terminal",
        "records_unreadable",
    ]
    lines += ["", "| window | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, w in result["per_fault"].items():
        if not w.get("calls") and name != "none":
            continue  # a fault this drill did not inject
        lines.append(f"| {name} | " + " | ".join(str(w.get(c, 0)) for c in cols) + " |")
    lines += ["", "| must be zero | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result["zeros"].items()]
    p = result["partner"]
    lines += [
        "",
        f"Partner: {p['records_received']} records received, {p['retries_recognised']} retries "
        f"recognised as duplicates, refusals {p['refused']}; outbox drained "
        f"{result['outbox_drained_after_load_s']} s after the load. AMI proxy: "
        f"{result['ami_proxy']['connections']} connections, {result['ami_proxy']['cuts']} cut(s).",
        "",
    ]
    if result.get("hotkeys_spread"):
        spread = result["hotkeys_spread"]
        lines += [
            f"Hotkeys spread over the replicas (by port): {spread['per_port']}; "
            f"{spread['rerouted_from_a_dead_replica']} refused connections retried on the other "
            "replica (never sent, so safe to retry).",
            "",
        ]
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(result["started_at"] or time.time()))
    prefix = "replicas" if result.get("kind") == "replica-failure drill" else "faults"
    j, m = out / f"{prefix}-{stamp}.json", out / f"{prefix}-{stamp}.md"
    j.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    m.write_text(markdown(result))
    return j, m
