"""Micro-benchmark of the hotkey path: what the bridge itself spends on one press, away from the
PBX, the media and the drill that share the bench's two cores.

    python -m lab.hotkeybench [--presses 400] [--store sqlite|postgres] [--profile FILE]

One process, pinned to one core, one event loop holding three parts:

- the bridge, wired by ``app.build`` from the sandbox settings as ``serve`` wires it (real
  recorder and store, real ``AmiClient`` sessions, the aiohttp app behind a loopback listener);
- a stand-in PBX (:class:`StandInAmi`): an AMI server on loopback that logs the bridge in,
  answers every action ``Success``, feeds the live calls' events (Newchannel, BridgeEnter) and
  notes when each press's ``BlindTransfer`` reached it;
- agents' softphones: each press a pre-built POST on a connection opened before it.

Presses go one at a time, ``PAUSE_S`` apart (as at 20 calls/s, each starts on an idle loop),
each on its own call and agent. For each: hotkey -> actions written (POST written -> the
BlindTransfer's bytes written to the PBX's socket; counted when the stand-in read them), hotkey
-> answer (-> the 202 read), and the record's write (``book.on_recorded``). CPU per press
(``process_time``) is all the work a press sets off in this process, the actions' replies and
the notes after the answer included. ``--profile`` writes a cProfile of the presses.

The bench's raw-AMI floor spends none of this: it is the price of the API hop, the checks and
the durable record, the part of bridge - raw that the bridge's code decides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from hotline_bridge.config.settings import load_settings
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.recorder import open_recorder
from hotline_bridge.handoffs.store.base import CallEntry
from hotline_bridge.runtime.app import api_runner, build
from hotline_bridge.runtime.logs import configure_logging
from hotline_bridge.transfers.api import TRANSFERS

from .drill.report import percentiles
from .microbench import answered_call
from .sandbox import DEFAULT_TOPOLOGY, load_topology, sandbox_module

FIRST_AGENT = 100001
PAUSE_S = 0.01
_LISTS = {"coreshowchannels": "CoreShowChannelsComplete", "queuesummary": "QueueSummaryComplete"}


class StandInAmi(asyncio.Protocol):
    """One AMI session of the stand-in PBX (see :class:`StandInPbx`)."""

    def __init__(self, pbx: StandInPbx) -> None:
        self.pbx = pbx
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.events = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"Asterisk Call Manager/9.0.0\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.pbx.sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        *frames, self.buf = self.buf.split(b"\r\n\r\n")
        for frame in frames:
            fields: dict[str, str] = {}
            for line in frame.decode().split("\r\n"):
                key, _, value = line.partition(": ")
                fields.setdefault(key.lower(), value)
            self._answer(fields, now)

    def _answer(self, fields: dict[str, str], now: float) -> None:
        assert self.transport is not None
        name, aid = fields.get("action", "").lower(), fields.get("actionid", "")
        reply = f"Response: Success\r\nActionID: {aid}\r\n"
        if name == "login":
            self.events = fields.get("events", "on").lower() != "off"
            if self.events:
                self.pbx.sessions.add(self)
            booted = "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
            self.transport.write(
                f"{reply}Message: Authentication accepted\r\n\r\n{booted}".encode()
            )
        elif name in _LISTS:
            if name == "coreshowchannels":
                self.pbx.listed.set()
            self.transport.write(
                f"{reply}EventList: start\r\nMessage: listing\r\n\r\n"
                f"Event: {_LISTS[name]}\r\nActionID: {aid}\r\nEventList: Complete\r\n"
                "ListItems: 0\r\n\r\n".encode()
            )
        else:
            if name == "blindtransfer":
                self.pbx.transferred.setdefault(fields.get("channel", ""), now)
            self.transport.write(f"{reply}Message: OK\r\n\r\n".encode())


class StandInPbx:
    """An AMI server on loopback standing in for Asterisk: enough for the bridge to log in,
    list no channels, take its actions and see the calls this benchmark makes up."""

    def __init__(self) -> None:
        self.sessions: set[StandInAmi] = set()
        self.transferred: dict[str, float] = {}  # agent channel -> when its BlindTransfer came
        self.server: asyncio.Server | None = None
        self.port = 0
        # The bridge rebuilds its call model from this listing: calls made up before it is
        # read would be wiped by the (empty) listing.
        self.listed = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: StandInAmi(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def emit(self, events: bytes) -> None:
        for session in self.sessions:
            assert session.transport is not None
            session.transport.write(events)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await self.server.wait_closed()


def _ms(seconds: list[float]) -> dict[str, float | int | None] | None:
    """The drill's percentiles (n, mean, p50, p90, p99, max; nearest rank), in ms."""
    return percentiles([v * 1000 for v in seconds]) if seconds else None


@contextlib.contextmanager
def _store_dsn(store: str, dsn: str | None) -> Iterator[str | None]:
    """The PostgreSQL DSN to use: the one given, else a durable server of our own (fsync on, as
    the bench's PostgreSQL phases and production run it); None for SQLite."""
    if store != "postgres" or dsn is not None:
        yield dsn
        return
    from .pgserver import PgServer

    pg = PgServer(durable=True).start()
    try:
        yield pg.create_db("hotkeybench")
    finally:
        pg.stop()


async def hotkey_path(
    presses: int,
    topology: Path = DEFAULT_TOPOLOGY,
    *,
    store: str = "sqlite",
    dsn: str | None = None,
    warmup: int = 20,
    profile: Path | None = None,
) -> dict[str, Any]:
    """``presses`` carry-transfer presses through the bridge's API, one at a time (see the
    module's docstring); the first ``warmup`` are not counted."""
    total = presses + warmup
    pbx = StandInPbx()
    await pbx.start()
    with tempfile.TemporaryDirectory() as tmp, _store_dsn(store, dsn) as pg_dsn:
        workdir = Path(tmp)
        topo = load_topology(topology)
        topo["agent_pool"] = {
            **topo.get("agent_pool", {}),
            "count": total,
            "first_id": FIRST_AGENT,
            "endpoint_prefix": "hk",
            "token_prefix": "hotkeybench-token-",
        }
        path = sandbox_module().write_bridge_config(topo, workdir / "bridge.toml")
        overrides: dict[str, Any] = {
            "bridge": {"store_path": str(workdir / "handoffs.sqlite3")},
            "ami": {"host": "127.0.0.1", "port": pbx.port},
            "http": {"host": "127.0.0.1", "port": 0},
            # One press per agent, but every press from the same address: no per-address cap.
            "limits": {"per_principal_per_s": 1000, "burst": 1000},
        }
        if pg_dsn is not None:
            overrides["store"] = {"dsn": pg_dsn}
        settings = load_settings(path, **overrides)
        with open_recorder(settings) as recorder:
            runtime = build(settings, recorder)
            runner = api_runner(runtime.app, settings.http)
            await runner.setup()
            # A plain listener: the guarded site's per-peer cap would count the benchmark's
            # agents, all on one address, against each other.
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            actions = runtime.actions
            assert actions is not None  # build() gives the commands their own session
            try:
                await actions.start()
                await runtime.ami.start()
                await actions.wait_ready(10)
                await runtime.ami.wait_ready(10)
                return await _press_all(runtime, recorder, pbx, port, topo, total, warmup, profile)
            finally:
                await runtime.interpreter.drain()
                await runtime.ami.close()
                await actions.close()
                await runner.cleanup()
                await pbx.close()


async def _press_all(
    runtime: Any,
    recorder: Any,
    pbx: StandInPbx,
    port: int,
    topo: dict[str, Any],
    total: int,
    warmup: int,
    profile: Path | None,
) -> dict[str, Any]:
    stamp = int(time.time())
    prefix = topo["agent_pool"]["endpoint_prefix"]
    token_prefix = topo["agent_pool"]["token_prefix"]
    calls = [answered_call(i, stamp, f"{prefix}{FIRST_AGENT + i}") for i in range(total)]
    arrived = datetime.now(UTC)
    for _, uid, _ in calls:
        # As the dialplan's entry hook logs each call (its jurisdiction is then in memory).
        recorder.log_call(CallEntry(uid, arrived, "citizen", Jurisdiction.UNKNOWN, "13900000000"))
    await asyncio.wait_for(pbx.listed.wait(), 10)
    await asyncio.sleep(0.2)  # the listing's reply read and the model rebuilt from it
    pbx.emit(b"".join(events for events, _, _ in calls))
    model = runtime.switchboard.calls.model
    deadline = time.monotonic() + 30
    while len(model.live_calls()) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the bridge saw {len(model.live_calls())} of {total} calls "
                f"({runtime.ami.stats.events_received} events read)"
            )
        await asyncio.sleep(0.01)
    await recorder.settled()

    record_s: list[float] = []
    book = runtime.app[TRANSFERS].book
    observed = book.on_recorded

    def on_recorded(kind: str, seconds: float) -> None:
        record_s.append(seconds)
        if observed is not None:
            observed(kind, seconds)

    book.on_recorded = on_recorded
    # When each press's actions were written to the PBX's socket. (The stand-in, on this same
    # loop, reads them only once the press's handler has returned; Asterisk, a process of its
    # own, would read them at once.)
    written: dict[str, float] = {}
    actions = runtime.actions
    inner = actions.send_batch

    def send_batch(batch: Any, **kwargs: Any) -> Any:
        replies = inner(batch, **kwargs)
        now = time.perf_counter()
        for name, fields in batch:
            if name == "BlindTransfer":
                written.setdefault(str(fields["Channel"]), now)
        return replies

    actions.send_batch = send_batch
    # Each agent's softphone keeps its connection open: the next press's is opened during the
    # pause before it (an idle connection is closed after [http] idle_timeout_s).
    phone = await asyncio.open_connection("127.0.0.1", port)
    requests = []
    for i, (_, uid, _) in enumerate(calls):
        body = json.dumps({"target": "110", "call_id": uid}).encode()
        requests.append(
            (
                f"POST /v1/agents/{FIRST_AGENT + i}/carry-transfer HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token_prefix}{FIRST_AGENT + i}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
    to_pbx: list[float] = []
    to_answer: list[float] = []
    statuses: dict[int, int] = {}
    profiler = cProfile.Profile() if profile is not None else None
    gc.collect()
    cpu = 0.0
    for i, (request, (_, _, agent_chan)) in enumerate(zip(requests, calls, strict=True)):
        (reader, writer), counted = phone, i >= warmup
        if counted and profiler is not None:
            profiler.enable()
        cpu0, t0 = time.process_time(), time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        t1 = time.perf_counter()
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        # What the press set off after its answer (the actions' replies, the notes' writes) is
        # done before the next press, as at 20 calls/s (50 ms apart): each press starts on an
        # idle loop, and the CPU counted below is all of its own.
        await asyncio.sleep(PAUSE_S)
        cpu1 = time.process_time()
        if profiler is not None:
            profiler.disable()
        writer.close()
        if i + 1 < total:
            phone = await asyncio.open_connection("127.0.0.1", port)
        statuses[status] = statuses.get(status, 0) + 1
        if not counted:
            continue
        cpu += cpu1 - cpu0
        to_answer.append(t1 - t0)
        out = written.get(agent_chan)
        if out is not None and agent_chan in pbx.transferred:
            to_pbx.append(out - t0)
    phone[1].close()
    counted_records = record_s[warmup:]
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    n = total - warmup
    return {
        "presses": n,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "reached_pbx": len(to_pbx),
        "hotkey_to_actions_written": _ms(to_pbx),
        "hotkey_to_answer": _ms(to_answer),
        "record_write": _ms(counted_records),
        # CPU of this process per press: the bridge's work, with the phone's and the stand-in's
        # few lines.
        "cpu_per_press_ms": round(cpu / n * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.hotkeybench")
    p.add_argument("--presses", type=int, default=400)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--dsn", help="PostgreSQL DSN (default: a durable server of our own)")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last)")
    p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    p.add_argument("--profile", type=Path, help="write a cProfile of the counted presses here")
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cpus[-1]})
    # Each press logs as in production (JSON, scrubbed): that is part of its cost. The lines
    # go to stderr, which the caller drops; stdout is the JSON result.
    configure_logging("json", "info")
    result = asyncio.run(
        hotkey_path(
            args.presses,
            args.topology,
            store=args.store,
            dsn=args.dsn,
            warmup=args.warmup,
            profile=args.profile,
        )
    )
    json.dump({"store": args.store, **result}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
