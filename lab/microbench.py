"""Micro-benchmarks of the bridge's hot paths, in a process of their own, on ONE core.

    python -m lab.microbench [--events FILE] [--calls 2000] [--cpu N]

1. AMI event ingestion: the bytes of an AMI session (recorded by a drill, ``--events FILE``; or
   a synthetic stream of complete hotline calls) are fed through the REAL receive path: the
   product's ``AmiConnection`` protocol (framing, event-name filter, parsing) into the
   ``AmiClient``, whose subscribers are the real switchboard (call model, transfers, three-way
   calls) and metrics, all wired by ``app.build`` from the sandbox settings. Reported: events
   read per second of wall time (every event in the stream is framed and name-checked; the ones
   the bridge subscribes to are parsed and dispatched), and how many were dispatched.
2. RSS with N live calls: the same wiring, fed N citizen+agent calls (Newchannel x2, BridgeEnter
   x2 each, through the same path), then VmRSS of this process, the call model's size and how
   long ``live_calls()`` (what ``GET /v1/calls`` and the metrics scrape use) takes.

Prints one JSON object. Targets (issue 6): >= 20,000 events/s on one core; <= 150 MB RSS with
2,000 live calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotline_bridge.ami.protocol import AmiConnection
from hotline_bridge.config.settings import load_settings
from hotline_bridge.handoffs.recorder import open_recorder
from hotline_bridge.runtime.app import build

from .sandbox import DEFAULT_TOPOLOGY, bridge_settings, load_topology, sandbox_module

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
CHUNK = 256 * 1024  # what asyncio's selector transport reads at most per data_received


class _NullTransport(asyncio.Transport):
    """Enough of a transport for a connection that never writes in these benchmarks."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- a synthetic AMI stream: complete hotline calls, fields as Asterisk 22 sends them ------------


def _event(name: str, ts: float, **fields: str) -> bytes:
    lines = [f"Event: {name}", "Privilege: call,all", f"Timestamp: {ts:.6f}"]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _channel(name: str, uid: str, linked: str, num: str, state: str, exten: str) -> dict[str, str]:
    return {
        "Channel": name,
        "ChannelState": {"Ring": "4", "Ringing": "5", "Up": "6", "Down": "0"}[state],
        "ChannelStateDesc": state,
        "CallerIDNum": num,
        "CallerIDName": num,
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Language": "en",
        "AccountCode": "",
        "Context": "hotline-citizens",
        "Exten": exten,
        "Priority": "1",
        "Uniqueid": uid,
        "Linkedid": linked,
    }


def synthetic_call(n: int, t: float, agent: str = "pool2001") -> bytes:
    """The AMI events of one carry-transferred hotline call (names and fields as the real PBX's,
    including the events the bridge does not subscribe to, which its filter must drop)."""
    cit_uid, ag_uid, pa_uid = f"{t:.0f}.{3 * n}", f"{t:.0f}.{3 * n + 1}", f"{t:.0f}.{3 * n + 2}"
    num = f"139{n:08d}"
    cit = _channel(f"PJSIP/drill-carrier-{3 * n:08x}", cit_uid, cit_uid, num, "Ring", "12345")
    ag = _channel(f"PJSIP/{agent}-{3 * n + 1:08x}", ag_uid, cit_uid, num, "Down", "s")
    pa = _channel(f"PJSIP/drill-partner-110-{3 * n + 2:08x}", pa_uid, cit_uid, num, "Down", "110")
    bridge = f"b{n:031x}"
    hid = f"h-{n:026x}"
    br = {"BridgeUniqueid": bridge, "BridgeType": "basic", "BridgeTechnology": "simple_bridge",
          "BridgeCreator": "<unknown>", "BridgeName": "<unknown>", "BridgeNumChannels": "1",
          "BridgeVideoSourceMode": "none"}  # fmt: skip
    up = dict(cit, ChannelState="6", ChannelStateDesc="Up")
    out = [
        _event("Newchannel", t, **cit),
        _event("VarSet", t, **cit, Variable="CALL_JURISDICTION", Value="gucheng"),
        _event("Newexten", t, **cit, Extension="12345", Application="NoOp", AppData="x"),
        _event("QueueCallerJoin", t, **cit, Queue="hotline-drill", Position="1", Count="1"),
        _event("Newchannel", t, **ag),
        _event("DialBegin", t, **{f"Dest{k}": v for k, v in ag.items()}, **cit, DialString=agent),
        _event("AgentCalled", t, **cit, Queue="hotline-drill", Interface=f"PJSIP/{agent}"),
        _event("Newstate", t, **dict(ag, ChannelState="5", ChannelStateDesc="Ringing")),
        _event("Newstate", t, **dict(ag, ChannelState="6", ChannelStateDesc="Up")),
        _event("Newstate", t, **up),
        _event("DialEnd", t, **cit, DialStatus="ANSWER"),
        _event("BridgeCreate", t, **br),
        _event("BridgeEnter", t, **br, **up),
        _event("BridgeEnter", t, **dict(br, BridgeNumChannels="2"), **ag),
        _event("AgentConnect", t, **cit, Queue="hotline-drill", HoldTime="0", RingTime="0"),
        _event("QueueCallerLeave", t, **cit, Queue="hotline-drill", Position="1", Count="0"),
        *[
            _event("VarSet", t, **up, Variable=v, Value="x")
            for v in ("HANDOFF_ID", "HANDOFF_URL", "HANDOFF_DIAL", "HANDOFF_TARGET")
        ],
        _event(
            "BlindTransfer", t, Result="Success", **{f"Transferer{k}": v for k, v in ag.items()}
        ),
        _event("BridgeLeave", t, **br, **up),
        _event("BridgeLeave", t, **br, **ag),
        _event("Hangup", t, **ag, Cause="16", **{"Cause-txt": "Normal Clearing"}),
        _event("BridgeDestroy", t, **br),
        _event("UserEvent", t, **up, UserEvent="HandoffDialing", HandoffId=hid),
        _event("Newchannel", t, **pa),
        _event("DialBegin", t, **{f"Dest{k}": v for k, v in pa.items()}, **up, DialString="110"),
        _event("DialState", t, **up, DialStatus="RINGING"),
        _event("Newstate", t, **dict(pa, ChannelState="6", ChannelStateDesc="Up")),
        _event("DialEnd", t, **up, DialStatus="ANSWER"),
        _event("BridgeCreate", t, **dict(br, BridgeUniqueid=bridge + "p")),
        _event("BridgeEnter", t, **dict(br, BridgeUniqueid=bridge + "p"), **up),
        _event("BridgeEnter", t, **dict(br, BridgeUniqueid=bridge + "p"), **pa),
        _event("RTCPSent", t, **up, SSRC="1", PT="200(SR)", To="127.0.0.1:30004"),
        _event("BridgeLeave", t, **dict(br, BridgeUniqueid=bridge + "p"), **up),
        _event("BridgeLeave", t, **dict(br, BridgeUniqueid=bridge + "p"), **pa),
        _event("Hangup", t, **pa, Cause="16", **{"Cause-txt": "Normal Clearing"}),
        _event("UserEvent", t, **up, UserEvent="HandoffResult", HandoffId=hid, DialStatus="ANSWER"),
        _event("UserEvent", t, **up, UserEvent="HandoffEnd", HandoffId=hid, Cause="16"),
        _event("Hangup", t, **up, Cause="16", **{"Cause-txt": "Normal Clearing"}),
    ]
    return b"".join(out)


def answered_call(i: int, t: float, agent_endpoint: str) -> tuple[bytes, str, str]:
    """Citizen ``i`` bridged with the agent on ``agent_endpoint`` (Newchannel x2, BridgeEnter
    x2): the AMI events, the citizen's Uniqueid and the agent's channel name."""
    cit_uid, ag_uid = f"{t:.0f}.{2 * i}", f"{t:.0f}.{2 * i + 1}"
    agent_channel = f"PJSIP/{agent_endpoint}-{2 * i + 1:08x}"
    cit = _channel(
        f"PJSIP/drill-carrier-{2 * i:08x}", cit_uid, cit_uid, f"139{i:08d}", "Up", "12345"
    )
    ag = _channel(agent_channel, ag_uid, cit_uid, f"139{i:08d}", "Up", "s")
    br = {"BridgeUniqueid": f"b{i:031x}", "BridgeType": "basic",
          "BridgeTechnology": "simple_bridge", "BridgeNumChannels": "2"}  # fmt: skip
    events = [
        _event("Newchannel", t, **cit),
        _event("Newchannel", t, **ag),
        _event("BridgeEnter", t, **br, **cit),
        _event("BridgeEnter", t, **br, **ag),
    ]
    return b"".join(events), cit_uid, agent_channel


def synthetic_stream(calls: int) -> bytes:
    t0 = time.time()
    return BANNER + b"".join(synthetic_call(n, t0 + n / 20) for n in range(calls))


# -- the benchmarks --------------------------------------------------------------------------------


async def _wired(workdir: Path, topology: Path, pool: int | None) -> Any:
    # The sandbox settings with a throw-away store (nested overrides merge with the file).
    overrides: dict[str, Any] = {"bridge": {"store_path": str(workdir / "handoffs.sqlite3")}}
    if pool is None:
        settings = bridge_settings(topology, **overrides)
    else:
        # The pool is the topology's (the sandbox expands it into agents; the bridge's own
        # settings have no such section): a topology with ``pool`` agents of its own.
        topo = load_topology(topology)
        topo["agent_pool"] = {
            **topo.get("agent_pool", {}),
            "count": pool,
            "first_id": 100001,
            "endpoint_prefix": "mb",
            "token_prefix": "microbench-token-",
        }
        path = sandbox_module().write_bridge_config(topo, workdir / "bridge.toml")
        settings = load_settings(path, **overrides)
    stack = contextlib.ExitStack()
    recorder = stack.enter_context(open_recorder(settings))
    bridge = build(settings, recorder)
    return bridge, stack


def _connection(bridge: Any) -> AmiConnection:
    conn = AmiConnection(bridge.ami, bridge.ami._wanted)
    conn.connection_made(_NullTransport())
    return conn


async def ingest(stream: bytes, topology: Path, repeat: int = 3) -> dict[str, Any]:
    """Feed ``stream`` through AmiConnection -> AmiClient -> switchboard + metrics."""
    results = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            bridge, stack = await _wired(Path(tmp), topology, None)
            with stack:
                conn = _connection(bridge)
                stats = bridge.ami.stats
                gc.collect()
                cpu0, t0 = time.process_time(), time.perf_counter()
                for off in range(0, len(stream), CHUNK):
                    conn.data_received(stream[off : off + CHUNK])
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                results.append(
                    {
                        "events": stats.events_received,
                        "dispatched": stats.events_received - stats.events_dropped,
                        "handled_by_switchboard": bridge.switchboard.events_handled,
                        "handler_errors": stats.handler_errors,
                        "wall_s": round(wall, 4),
                        "cpu_s": round(cpu, 4),
                        "events_per_s": round(stats.events_received / wall),
                    }
                )
    best = max(results, key=lambda r: r["events_per_s"])
    return {
        "bytes": len(stream),
        "runs": results,
        "events_per_s_median": sorted(r["events_per_s"] for r in results)[len(results) // 2],
        "events_per_s_best": best["events_per_s"],
        "events": best["events"],
        "dispatched": best["dispatched"],
        "handler_errors": best["handler_errors"],
    }


async def live_calls_rss(n: int, topology: Path) -> dict[str, Any]:
    """RSS of this process with ``n`` live citizen+agent calls in the call model."""
    gc.collect()
    rss_start = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        bridge, stack = await _wired(Path(tmp), topology, n)
        with stack:
            gc.collect()
            rss_built = rss_mb()
            conn = _connection(bridge)
            t = time.time()
            chunks = [answered_call(i, t, f"mb{100001 + i}")[0] for i in range(n)]
            conn.data_received(BANNER + b"".join(chunks))
            del chunks
            gc.collect()
            model = bridge.switchboard.calls.model
            t0 = time.perf_counter()
            live = model.live_calls()
            listing_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            found = model.call_of_agent(str(100001 + n - 1))
            lookup_ms = (time.perf_counter() - t0) * 1000
            return {
                "calls": n,
                "live_calls": len(live),
                "channels": len(model.channels),
                "agents_configured": len(bridge.settings.agents),
                "rss_mb_interpreter": round(rss_start, 1),
                "rss_mb_bridge_built": round(rss_built, 1),
                "rss_mb_with_calls": round(rss_mb(), 1),
                "calls_added_mb": round(rss_mb() - rss_built, 1),
                "live_calls_listing_ms": round(listing_ms, 3),
                "call_of_agent_ms": round(lookup_ms, 3),
                "agent_lookup_ok": found is not None,
            }


async def run(args: argparse.Namespace, recorded: bytes | None) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_affinity": sorted(os.sched_getaffinity(0))}
    # RSS first, while this process holds nothing but the bridge's own code.
    out["rss"] = await live_calls_rss(args.calls, args.topology)
    if recorded is not None:
        out["ingest_recorded"] = {"file": str(args.events), **await ingest(recorded, args.topology)}
    out["ingest_synthetic"] = {
        "calls": args.synthetic_calls,
        **await ingest(synthetic_stream(args.synthetic_calls), args.topology),
    }
    return out


async def run_recorded(args: argparse.Namespace, recorded: bytes) -> dict[str, Any]:
    return {"ingest_recorded": {"file": str(args.events), **await ingest(recorded, args.topology)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.microbench")
    p.add_argument("--events", type=Path, help="a recorded AMI byte stream (drill --record)")
    p.add_argument("--synthetic-calls", type=int, default=2000)
    p.add_argument("--calls", type=int, default=2000, help="live calls for the RSS measure")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last)")
    p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cpus[-1]})
    import logging

    import structlog

    # The bridge logs at info per transfer state; nothing here is a transfer, but keep it quiet.
    # Its warnings go to stderr: stdout is the JSON result, read by lab.bench.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    result = asyncio.run(run(args, None))
    if args.events and args.events.exists():
        # A second loop: the recorded stream is read only after the RSS was measured.
        recorded = args.events.read_bytes()
        result.update(
            {k: v for k, v in asyncio.run(run_recorded(args, recorded)).items() if k != "rss"}
        )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
