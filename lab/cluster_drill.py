"""The cluster replica-failure drill (issue 14 §3): carry-transfer load spread over the cluster
sandbox's 3 PBXes, the hotkeys spread over all 3 replicas, one replica kill -9ed mid-run.

Per PBX: SIPp citizens (``rate`` calls/s), its two agents' phones, its 110 desk holding the
carried citizens; the partner platform's receiver (lab.faults.partner) takes the records' pushes.
The drill finds each agent's call through a replica (round robin) and presses the carry key
through the next one; a refused connection (a dead replica) is retried on another (it was never
sent), a 503 is counted as refused and pressed again after a second (the citizen stays with the
agent meanwhile). Zeros: citizens hung up by the PBX (BYE received by a citizen), handoffs lost
(a 202 not answered at the end) or doubled (two INVITEs at 110 for one X-Handoff-Id, or two
transfers answered for one call), outbox pushes doubled at the partner, records missing there.

    python -m lab.cluster_drill [--short] [--publish bench/results/faults]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .bridge import RunningBridge
from .calls import agent_uas, citizen_uac, hang_up_leftovers, partner_uas
from .cluster import health, load_cluster, start_pbxes, start_replica
from .cluster import wait_owned as wait_all_owned
from .faults.partner import PartnerDesk, bridge_env
from .pgserver import PgServer
from .sipp import SippProcess, stop_all

PARTNER_PORT = 18490
KILLED = "a"  # owns pbx-1, the home PBX: its service runs the site-wide scans too


async def _press(
    replicas: dict[str, RunningBridge],
    order: list[str],
    agent: str,
    token: str,
    tally: Counter[str],
) -> tuple[str, int, Any]:
    """POST the carry key through the first replica of ``order`` that takes the connection."""
    for name in order:
        try:
            status, body = await replicas[name].request(
                "POST", f"/v1/agents/{agent}/carry-transfer", {"target": "110"}, token
            )
            return name, status, body
        except ConnectionRefusedError:
            tally["rerouted_refused_connection"] += 1
        except OSError:
            tally["lost_connection_in_flight"] += 1  # may have been sent: the poll sees
            return name, 0, None
    return "", 0, None


async def run(short: bool, out: Path | None) -> dict[str, Any]:
    rate, duration, kill_at, hold = (0.5, 24.0, 9.0, 6.0) if short else (1.0, 60.0, 25.0, 8.0)
    cluster = load_cluster()
    work = Path(tempfile.mkdtemp(prefix="hb-cluster-drill-"))
    pbxes = start_pbxes(cluster)
    pg = PgServer().start()
    desk = PartnerDesk(work / "partner", PARTNER_PORT)
    await desk.up()
    replicas: dict[str, RunningBridge] = {}
    procs: list[SippProcess] = []
    citizens: list[SippProcess] = []
    desks: list[SippProcess] = []
    tally: Counter[str] = Counter()
    transfers: list[dict[str, Any]] = []
    takeover_s: float | None = None
    try:
        dsn = pg.create_db("hotline")
        for name in cluster.replicas:
            replicas[name] = start_replica(
                cluster, name, dsn, work / name, overrides=bridge_env(PARTNER_PORT)
            )
        owned = await asyncio.to_thread(wait_all_owned, cluster, replicas)
        for pbx in pbxes:
            async with pbx.admin_ami() as ami:
                await hang_up_leftovers(ami)
        agents: list[tuple[str, str]] = []
        for node, pbx in zip(cluster.nodes, pbxes, strict=True):
            w = work / node.name
            for proc in agent_uas(pbx.topology, w):
                procs.append(await proc.start())
            agents += [(a["id"], a["token"]) for a in pbx.topology["agents"]]
            d = partner_uas(pbx.topology, w)
            procs.append(await d.start())
            desks.append(d)
        calls = int(rate * duration)
        for node, pbx in zip(cluster.nodes, pbxes, strict=True):
            c = citizen_uac(pbx.topology, work / node.name, hold=hold, calls=calls, rate=rate)
            citizens.append(await c.start(settle=0))
        t0 = time.monotonic()
        names = list(cluster.replicas)
        alive = set(names)
        rr = 0
        pressed: set[str] = set()  # call ids with a 202
        retry_at: dict[str, float] = {}
        killed_nodes = sorted(n for n, r in owned.items() if r == KILLED)
        end = t0 + duration + hold + 10
        while time.monotonic() < end:
            now = time.monotonic() - t0
            if takeover_s is None and now >= kill_at and KILLED in alive:
                victim = replicas[KILLED].proc
                assert victim is not None
                victim.send_signal(signal.SIGKILL)
                killed_t = time.monotonic()
                alive.discard(KILLED)
                tally["killed_at_s"] = int(now)
            if KILLED not in alive and takeover_s is None:
                survivors = [replicas[n] for n in names if n in alive]
                here = {
                    node
                    for rb in survivors
                    for node, st in (
                        (await asyncio.to_thread(health, rb)).get("nodes") or {}
                    ).items()
                    if st.get("here") and st.get("ready")
                }
                if set(killed_nodes) <= here:
                    takeover_s = time.monotonic() - killed_t
            order_all = [n for n in names[rr:] + names[:rr]]
            rr = (rr + 1) % len(names)

            async def one(agent: str, token: str, order: list[str]) -> None:
                looker = next((n for n in order if n in alive), order[0])
                try:
                    status, body = await replicas[looker].request("GET", "/v1/calls", token=token)
                except OSError:
                    return
                if status != 200 or not body["calls"]:
                    return
                call_id = body["calls"][0]["call_id"]
                if call_id in pressed or retry_at.get(call_id, 0) > time.monotonic():
                    return
                via, status, answer = await _press(
                    replicas, order[1:] + order[:1], agent, token, tally
                )
                if status == 202:
                    pressed.add(call_id)
                    transfers.append(
                        {
                            "call_id": call_id,
                            "agent": agent,
                            "via": via,
                            **answer,
                            "at": time.monotonic() - t0,
                        }
                    )
                    tally[f"pressed_via_{via}"] += 1
                elif status == 503:
                    tally["hotkeys_refused_503"] += 1
                    retry_at[call_id] = time.monotonic() + 1.0
                elif status == 409:
                    tally["hotkeys_409"] += 1
                    retry_at[call_id] = time.monotonic() + 0.5
                elif status:
                    tally[f"hotkeys_{status}"] += 1
                    retry_at[call_id] = time.monotonic() + 1.0

            await asyncio.gather(*(one(a, t, order_all) for a, t in agents))
            if now > duration + 2 and all(not c.running for c in citizens):
                break
            await asyncio.sleep(0.1)
        # Settle: every transfer's final state, through a survivor.
        survivor = replicas[next(n for n in names if n in alive)]
        tokens = dict(agents)
        states: Counter[str] = Counter()
        answered_per_call: Counter[str] = Counter()
        for t in transfers:
            status, body = await survivor.request(
                "GET", f"/v1/transfers/{t['transfer_id']}", token=tokens[t["agent"]]
            )
            t["final"] = body.get("state") if status == 200 else f"http {status}"
            states[str(t["final"])] += 1
            if t["final"] == "answered":
                answered_per_call[t["call_id"]] += 1
        handoffs = {t["handoff_id"] for t in transfers}
        for _ in range(60):  # the outbox drains (a dead drainer's claims come back)
            if handoffs <= desk.received_records():
                break
            await asyncio.sleep(0.5)
        # Distinct dialogs (Call-ID) per handoff: a retransmitted or re-INVITE is not a second call.
        dialogs: dict[str, set[str]] = {}
        for d in desks:
            for inv in d.snapshot().received("INVITE"):
                dialogs.setdefault(inv.header("X-Handoff-Id"), set()).add(inv.header("Call-ID"))
        invites = Counter({h: len(ids) for h, ids in dialogs.items()})
        dropped = sum(len(c.snapshot().received("BYE")) for c in citizens)
        placed = sum(int(c.calls or 0) for c in citizens)
        result = {
            "kind": "cluster replica-failure drill",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "plan": {
                "pbxes": len(pbxes),
                "replicas": names,
                "rate_per_pbx": rate,
                "duration_s": duration,
                "hold_s": hold,
                "kill_at_s": kill_at,
                "killed": KILLED,
                "lease_ttl_s": cluster.lease_ttl_s,
            },
            "owners_before": owned,
            "killed_replica_owned": killed_nodes,
            "takeover_s": round(takeover_s, 2) if takeover_s is not None else None,
            "citizen_calls_placed": placed,
            "transfers_accepted": len(transfers),
            "final_states": dict(states),
            "hotkeys": {k: v for k, v in tally.items() if k != "killed_at_s"},
            "zeros": {
                "citizens_dropped_by_the_bridge": dropped,
                "handoffs_lost": sum(n for s, n in states.items() if s != "answered"),
                "handoffs_doubled": sum(1 for n in answered_per_call.values() if n > 1)
                + sum(1 for h, n in invites.items() if h and n > 1),
                "outbox_pushes_doubled": len(desk.doubled()),
                "records_missing_at_partner": len(handoffs - desk.received_records()),
            },
            "forwarded": {n: health(replicas[n]).get("forwarded") for n in names if n in alive},
        }
        if out is not None:
            write(result, out)
        return result
    finally:
        await stop_all(*citizens, *reversed(procs))
        for rb in replicas.values():
            rb.stop()
        await desk.close()
        pg.stop()
        for pbx in pbxes:
            pbx.stop()


def markdown(r: dict[str, Any]) -> str:
    z = r["zeros"]
    p = r["plan"]
    lines = [
        f"# Cluster replica-failure drill, {r['when']}",
        "",
        f"{p['pbxes']} sandbox PBXes, replicas {', '.join(p['replicas'])} on PostgreSQL "
        f"(lease ttl {p['lease_ttl_s']} s); {p['rate_per_pbx']} citizen calls/s per PBX for "
        f"{p['duration_s']} s (hold {p['hold_s']} s), every call carried to 110 through the "
        f"hotkey API, the hotkeys spread over all replicas; replica {p['killed']} "
        f"(owner of {', '.join(r['killed_replica_owned'])}) kill -9ed at {p['kill_at_s']} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| owners before | {r['owners_before']} |",
        f"| takeover (kill -9 to its PBXes served by survivors) | {r['takeover_s']} s |",
        f"| citizen calls placed | {r['citizen_calls_placed']} |",
        f"| transfers accepted (202) | {r['transfers_accepted']} |",
        f"| final states | {r['final_states']} |",
        f"| hotkeys refused (503, retried) | {r['hotkeys'].get('hotkeys_refused_503', 0)} |",
        f"| hotkeys (all outcomes) | {r['hotkeys']} |",
        f"| forwarded by the survivors | {r['forwarded']} |",
    ]
    lines += ["", "| zero | value |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in z.items()]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    j, m = out / f"cluster-{stamp}.json", out / f"cluster-{stamp}.md"
    j.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    m.write_text(markdown(result))
    return j, m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cluster_drill", description=__doc__)
    parser.add_argument("--short", action="store_true", help="CI's version (~40 s)")
    parser.add_argument("--publish", type=Path, help="write cluster-<stamp>.json/.md here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.short, args.publish))
    print(markdown(result))
    return 0 if not any(result["zeros"].values()) and result["takeover_s"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
