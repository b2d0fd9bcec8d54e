"""Load drill: citizens talking G.711, agents pressing the hotkeys, a 110 desk checking every call.

    python -m lab.drill --rate 20 --duration 60 --mix 0.1     (make drill)

Against the running sandbox PBX, with the topology's [agent_pool] and [drill] peers (their own
carrier trunk, queue, 200 agents and 110 desk, so the tests' peers and ports are never touched):

- a SIPp citizen UAC places ``rate`` calls/s for ``duration`` s, each from its own number, each
  STREAMING real G.711 A-law audio once answered (``rtp_stream`` of the payload of sip-tester's
  ``g711a.pcap``), and hangs up after ``hold`` s;
- ONE SIPp UAS answers for every pool agent (by contact user) and echoes the audio (-rtp_echo);
- the drill's 110 desk (``partner_drill_uas.xml``) answers a handoff only if From and
  P-Asserted-Identity carry the same number and X-Handoff-Id is present, logging each INVITE's
  arrival time (``<gettimeofday>``) and echoing audio;
- the HOTKEY DRIVER watches the PBX through the admin AMI (``BridgeEnter``: pushed to us the
  moment the queue bridges citizen and agent, sub-millisecond, and no load on the bridge; polling
  ``GET /v1/calls`` would add up to a poll interval and cost the bridge CPU per poll) and at once
  presses carry-transfer for the agent through the bridge's HTTP API, or for a ``mix`` share of
  the calls three-way, then leave once 110 has joined the room.

Afterwards every call is checked: the number the 110 desk got (From == PAI) is the citizen's
(as the PBX saw it when the call reached the agent), X-Handoff-Id is the handoff the API returned,
and the bridge's own record (transfer/conference state, handoff record's citizen number, read as
a supervisor) agrees. Latencies (hotkey -> API answer, -> INVITE at 110, -> 110 bridged with the
citizen) and the CPU of the bridge and of Asterisk (``/proc/<pid>/stat`` over the run) go into
``report.json``, a ``latency.png`` and ``calls.jsonl`` under the results directory.

Exit status: 0 all good; 1 a citizen was dropped (did not end their own call after the hold
time) or a carried number could not be verified; 2 the drill could not run.

``mode`` "raw" and "refer" are the benchmark's baselines (``lab.bench``): the same load, with the
transfer issued by a minimal raw AMI client (the bridge's own Setvar + BlindTransfer actions,
pipelined, no middleware) or by the agent's phone itself (SIP REFER, ``agent_refer_uas.xml``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.runtime.interpreter import to_action
from hotline_bridge.transfers import machine as transfer_machine

from .bridge import RunningBridge, start_bridge
from .loadami import LoadAmi, Message
from .sandbox import DEFAULT_TOPOLOGY, REPO, Sandbox, load_topology
from .sipp import SippProcess

G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
DEFAULT_RESULTS = REPO / ".sandbox" / "drill"
DRILL_BRIDGE_PORT = 18346  # the tests' bridge uses 18345, `make run` 8345
# mixed: every other call through the bridge, the others through the raw client, at the same
# moments under the same load: the fairest bridge/raw comparison on a shared, noisy machine.
MODES = ("bridge", "raw", "refer", "mixed")
# Bounds: every run stops by itself, and stays a drill, not a flood.
MAX_RATE, MAX_DURATION, MAX_HOLD, MAX_CALLS = 100.0, 600.0, 120.0, 20_000
# SIPp media ports: agents echo on 26000, 110 on 26010, citizens stream from 27004 up, two
# ports per call. Clear of the tests' SIPp peers (6000 up, SIPp's default), of Asterisk's RTP
# range ([pbx].rtp_start..rtp_end, 20000-24999) and of Linux's ephemeral ports (32768 up).
AGENT_MEDIA_PORT, PARTNER_MEDIA_PORT, CITIZEN_MEDIA_PORT = 26000, 26010, 27000


class DrillError(RuntimeError):
    """The drill cannot run (setup); the message says why."""


@dataclass
class DrillOptions:
    mode: str = "bridge"
    rate: float = 20.0
    duration: float = 60.0
    mix: float = 0.0  # share of three-way calls (bridge mode only)
    hold: float = 8.0  # seconds each citizen talks before hanging up
    topology: Path = DEFAULT_TOPOLOGY
    results: Path = DEFAULT_RESULTS
    label: str = ""
    bridge_port: int = DRILL_BRIDGE_PORT
    trace_sip: bool = False  # SIPp -trace_msg for every peer (costs CPU; for debugging)
    record_ami: Path | None = None  # raw AMI bytes as the bridge's user sees them (micro-bench)
    progress: bool = True
    plot: bool = True
    profile: bool = False  # py-spy the bridge during the load (collapsed stacks + flame graph)
    # Scheduling priority of the bridge process (nice, -20..19). On a box shared with Asterisk
    # and the SIPp load, the bridge's latency is mostly run-queue wait (see bench/results).
    bridge_nice: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise DrillError(f"mode must be one of {', '.join(MODES)}")
        if not 0 < self.rate <= MAX_RATE:
            raise DrillError(f"rate must be in (0, {MAX_RATE:g}] calls/s")
        if not 0 < self.duration <= MAX_DURATION:
            raise DrillError(f"duration must be in (0, {MAX_DURATION:g}] s")
        if not 1 <= self.hold <= MAX_HOLD:
            raise DrillError(f"hold must be in [1, {MAX_HOLD:g}] s")
        if not 0 <= self.mix <= 1:
            raise DrillError("mix is a share: 0..1")
        if self.mix and self.mode not in ("bridge", "mixed"):
            raise DrillError("three-way calls (mix) exist only through the bridge (mode bridge)")
        if self.calls > MAX_CALLS:
            raise DrillError(f"rate x duration = {self.calls} calls; the limit is {MAX_CALLS}")

    @property
    def calls(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass
class DrillCall:
    """One citizen call as the drill saw it. Times are epoch seconds (time.time(), and
    Asterisk's event Timestamp, same clock)."""

    uid: str  # the citizen channel's Uniqueid (= the bridge's call_id)
    channel: str
    number: str = ""
    agent_id: str = ""
    agent_channel: str = ""
    bridged_at: float | None = None  # citizen + agent in one bridge (Asterisk's Timestamp)
    kind: str = "carry"  # carry | three_way
    way: str = "bridge"  # who transfers: bridge | raw | refer
    press_at: float | None = None  # the hotkey (bridge: HTTP POST sent; raw: actions written;
    answer_at: float | None = None  # refer: REFER sent) and its answer (202 / Response / 202)
    status: int | str | None = None
    retries: int = 0  # presses answered 409/404 before the bridge's model had the call
    error: str = ""
    ref: str = ""  # transfer_id / conference_id
    handoff_id: str = ""
    partner_invite_at: float | None = None
    partner_from: str = ""
    partner_pai: str = ""
    partner_bridged_at: float | None = None
    leave_at: float | None = None
    leave_status: int | None = None
    refer_final: str = ""
    citizen_end: str = ""  # "self" | "pbx" | ""
    hung_up_at: float | None = None
    record_state: str = ""
    record_outcome: str = ""
    record_number: str = ""
    carried: bool | None = None
    problem: str = ""

    def latency_ms(self, end: float | None) -> float | None:
        if self.press_at is None or end is None:
            return None
        return (end - self.press_at) * 1000.0


# -- small helpers --------------------------------------------------------------------------------


def extract_g711a(out: Path, pcap: Path = G711A_PCAP) -> Path:
    """The RTP payload of sip-tester's g711a.pcap (PCMA, 8 kHz) as a raw file for rtp_stream."""
    try:
        data = pcap.read_bytes()
    except OSError as exc:
        raise DrillError(f"{pcap}: {exc} (apt-get install sip-tester)") from None
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic == 0xA1B2C3D4 else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    if link != 1:
        raise DrillError(f"{pcap}: link type {link}, expected Ethernet")
    payload, off = bytearray(), 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14 + 20 + 8 + 12 or pkt[12:14] != b"\x08\x00" or pkt[23] != 17:
            continue  # not IPv4/UDP
        rtp = pkt[14 + (pkt[14] & 0x0F) * 4 + 8 :]
        if rtp[0] >> 6 != 2 or rtp[1] & 0x7F != 8:
            continue  # not RTP PCMA
        payload += rtp[12 + 4 * (rtp[0] & 0x0F) :]
    if len(payload) < 8000:
        raise DrillError(f"{pcap}: found only {len(payload)} bytes of PCMA payload")
    out.write_bytes(bytes(payload))
    return out


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process (including reaped children: no), from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p90, p99, max (nearest-rank) of latencies in ms."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))]

    return {
        "n": len(vals),
        "mean": round(sum(vals) / len(vals), 3),
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(vals[-1], 3),
    }


def machine_description() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    load: list[str] = []
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split(" ", 3)[:3]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": load,
    }


def _ts(msg: Message) -> float:
    """Asterisk's event Timestamp (manager.conf timestampevents=yes), else our arrival time."""
    try:
        return float(msg.get("Timestamp") or msg["_t"])
    except (TypeError, ValueError):
        return float(msg["_t"])


def _log_fields(line: str) -> dict[str, str]:
    out = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def _gettimeofday(fields: dict[str, str]) -> float | None:
    """SIPp <gettimeofday>: s and us as two fields, printed as doubles ("1795971152.000000",
    "10831.000000"); the microseconds are UNPADDED, so never glue them as s.us."""
    try:
        return float(fields["s"]) + float(fields["us"]) / 1e6
    except (KeyError, ValueError):
        return None


class HotkeyClient:
    """The hotkeys' HTTP: pre-built HTTP/1.1 requests on a pool of keep-alive connections.

    What a softphone's hotkey costs is one small request on an open connection. A general
    client (aiohttp) spends a few hundred microseconds of Python per request before its bytes
    leave, on the same two cores as everything measured: that would be charged to the bridge.
    ``post()`` returns (status, JSON body, the time.time() at which the request was written).
    """

    def __init__(self, host: str, port: int, size: int = 16) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._size = size
        self._all: list[asyncio.StreamWriter] = []

    async def _conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle:
            return self._idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._all.append(writer)
        return reader, writer

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, Any, float]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        reader, writer = await self._conn()
        try:
            sent_at = time.time()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.lower() == "content-length":
                    length = int(value)
                elif key.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            raw = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            raise
        if close or len(self._idle) >= self._size:
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, json.loads(raw) if raw else None, sent_at

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        self._idle.clear()


# -- the run ------------------------------------------------------------------------------------


class Drill:
    def __init__(self, opts: DrillOptions) -> None:
        opts.check()
        self.opts = opts
        self.topo = load_topology(opts.topology)
        if "agent_pool" not in self.topo or "drill" not in self.topo:
            raise DrillError(f"{opts.topology} has no [agent_pool] / [drill] sections")
        self.pool, self.dr = self.topo["agent_pool"], self.topo["drill"]
        self.sandbox = Sandbox(opts.topology)
        self.carrier_prefix = f"PJSIP/{self.dr['carrier_endpoint']}-"
        self.pool_prefix = f"PJSIP/{self.pool['endpoint_prefix']}"
        self.partner_prefix = f"PJSIP/{self.dr['partner_endpoint']}-"
        self.partner_dial = f"PJSIP/{self.dr['partner_number']}@{self.dr['partner_endpoint']}"
        self.calls: dict[str, DrillCall] = {}  # by citizen uid
        self.by_conference: dict[str, DrillCall] = {}
        self.bridges: dict[str, dict[str, Message]] = {}
        self.offered_seen = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.ami: LoadAmi | None = None
        self.raw_ami: LoadAmi | None = None
        self.recorder: LoadAmi | None = None
        self.http: aiohttp.ClientSession | None = None  # the after-run checks
        self.hotkeys: HotkeyClient | None = None  # the presses (measured)
        self.bridge: RunningBridge | None = None
        self.media: dict[str, Any] = {}
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"{self.stamp}-{opts.mode}-{opts.rate:g}cps-{opts.duration:g}s"
        self.workdir = opts.results / (f"{name}-{opts.label}" if opts.label else name)
        self.three_way_every = round(1 / opts.mix) if opts.mix > 0 else 0
        self.answered_three_way = 0

    # -- PBX events (the hotkey driver) ---------------------------------------------------------

    def on_event(self, msg: Message) -> None:
        name = msg.get("Event")
        if name == "BridgeEnter":
            self._bridge_enter(msg)
        elif name == "BridgeLeave":
            members = self.bridges.get(msg.get("BridgeUniqueid", ""))
            if members is not None:
                members.pop(msg.get("Uniqueid", ""), None)
                if not members:
                    del self.bridges[msg["BridgeUniqueid"]]
        elif name == "ConfbridgeJoin":
            uid = msg.get("Uniqueid", "")
            rec = self.by_conference.get(msg.get("Conference", ""))
            if rec is not None and uid == f"{rec.ref}-partner" and rec.partner_bridged_at is None:
                rec.partner_bridged_at = _ts(msg)
                self._spawn(self._leave(rec))
        elif name == "Newchannel":
            if msg.get("Channel", "").startswith(self.carrier_prefix):
                self.offered_seen += 1
        elif name == "Hangup":
            rec = self.calls.get(msg.get("Uniqueid", ""))
            if rec is not None:
                rec.hung_up_at = _ts(msg)

    def _bridge_enter(self, msg: Message) -> None:
        bridge_id, chan = msg.get("BridgeUniqueid", ""), msg.get("Channel", "")
        if chan.startswith(self.partner_prefix):
            rec = self.calls.get(msg.get("Linkedid", ""))
            if rec is not None and rec.kind == "carry" and rec.partner_bridged_at is None:
                rec.partner_bridged_at = _ts(msg)
            return
        if not chan.startswith((self.carrier_prefix, self.pool_prefix)):
            return
        members = self.bridges.setdefault(bridge_id, {})
        members[msg.get("Uniqueid", "")] = msg
        citizens = [m for m in members.values() if m["Channel"].startswith(self.carrier_prefix)]
        agents = [m for m in members.values() if m["Channel"].startswith(self.pool_prefix)]
        if len(citizens) != 1 or len(agents) != 1:
            return
        cit, agent = citizens[0], agents[0]
        if cit["Uniqueid"] in self.calls:
            return  # back with an agent (a return), or the three-way room: pressed already
        endpoint = agent["Channel"][len("PJSIP/") :].rsplit("-", 1)[0]
        rec = DrillCall(
            uid=cit["Uniqueid"],
            channel=cit["Channel"],
            number=cit.get("CallerIDNum", ""),
            agent_id=endpoint[len(self.pool["endpoint_prefix"]) :],
            agent_channel=agent["Channel"],
            bridged_at=max(_ts(cit), _ts(agent)),
        )
        self.calls[rec.uid] = rec
        n = len(self.calls)
        rec.way = self.opts.mode if self.opts.mode != "mixed" else ("raw", "bridge")[n % 2]
        if self.three_way_every and n % self.three_way_every == 0 and rec.way == "bridge":
            rec.kind = "three_way"
        if rec.way == "bridge":
            self._spawn(self._press(rec))
        elif rec.way == "raw":
            self._spawn(self._raw_press(rec))
        # refer: the agent's phone presses by itself (agent_refer_uas.xml).

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- hotkeys ----------------------------------------------------------------------------------

    def _token(self, agent_id: str) -> str:
        return f"{self.pool['token_prefix']}{agent_id}"

    async def _press(self, rec: DrillCall) -> None:
        assert self.hotkeys is not None
        what = "three-way" if rec.kind == "three_way" else "carry-transfer"
        path = f"/v1/agents/{rec.agent_id}/{what}"
        token = self._token(rec.agent_id)
        for attempt in range(40):
            try:
                status, body, t0 = await asyncio.wait_for(
                    self.hotkeys.post(path, b'{"target": "110"}', token), 10
                )
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                rec.error = f"{type(exc).__name__}: {exc}"
                return
            t1 = time.time()
            # 409 "not on a call": the bridge has not yet seen the BridgeEnter we reacted to.
            if status == 409 and "not on a call" in str(body) and attempt < 39:
                rec.retries += 1
                await asyncio.sleep(0.005)
                continue
            rec.press_at, rec.answer_at, rec.status = t0, t1, status
            if status == 202:
                rec.ref = body.get("transfer_id") or body.get("conference_id") or ""
                rec.handoff_id = body.get("handoff_id", "")
                if rec.kind == "three_way":
                    self.by_conference[rec.ref] = rec
            else:
                rec.error = f"HTTP {status}: {body}"
            return

    async def _leave(self, rec: DrillCall) -> None:
        assert self.hotkeys is not None
        path = f"/v1/conferences/{rec.ref}/leave"
        # The bridge learns of the join from the same AMI event: a press can arrive first (409).
        for _ in range(40):
            try:
                status, _, sent_at = await asyncio.wait_for(
                    self.hotkeys.post(path, b"{}", self._token(rec.agent_id)), 10
                )
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                rec.error = f"leave: {type(exc).__name__}: {exc}"
                return
            rec.leave_status, rec.leave_at = status, sent_at
            if status != 409:
                break
            await asyncio.sleep(0.01)

    async def _raw_press(self, rec: DrillCall) -> None:
        """The floor: the bridge's own actions for this call, written at once, no middleware."""
        assert self.raw_ami is not None
        plan = transfer_machine.CarryPlan(
            transfer_id=f"raw-{rec.uid}",
            handoff_id=f"raw-{rec.uid}",
            handoff_url=f"http://127.0.0.1:{self.opts.bridge_port}/v1/handoffs/raw-{rec.uid}",
            call=LiveCall(
                call_id=rec.uid,
                citizen_number=rec.number,
                citizen_channel=rec.channel,
                agent_id=rec.agent_id,
                agent_channel=rec.agent_channel,
                agent_uniqueid="",  # not used by a carry transfer's commands
                bridge_id="",
                linkedid=rec.uid,
                since=rec.bridged_at or 0.0,
            ),
            target="110",
            target_number=str(self.dr["partner_number"]),
            target_dial=self.partner_dial,
            forwarding_number=str(self.topo["citizens"]["dial_number"]),
            ring_timeout_s=20,
            return_dial=f"PJSIP/{self.pool['endpoint_prefix']}{rec.agent_id}",
            return_queue=self.pool["queue"],
            return_timeout_s=15,
        )
        _, commands = transfer_machine.start(plan, time.time())
        actions = [to_action(c) for c in commands]
        rec.press_at = time.time()
        replies = self.raw_ami.send_many(actions)
        try:
            last = await asyncio.wait_for(replies[-1], 10)
        except (TimeoutError, RuntimeError) as exc:
            rec.error = f"BlindTransfer: {type(exc).__name__}: {exc}"
            return
        rec.answer_at = time.time()
        rec.status = str(last.get("Response"))
        rec.handoff_id = plan.handoff_id
        if rec.status != "Success":
            rec.error = f"BlindTransfer: {last.get('Message')}"

    # -- orchestration ----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        opts = self.opts
        if not self.sandbox.running:
            raise DrillError("the sandbox PBX is not running: `make sandbox` first")
        asterisk_pid = self.sandbox.pid
        self.workdir.mkdir(parents=True, exist_ok=True)
        raw = extract_g711a(self.workdir / "g711a.raw")
        # One number per call (the 110 desk's check is per call): 139 + 8 digits, a fresh
        # block per run so a record from an earlier drill cannot pass for this one's.
        first = int(time.time()) % 9_000 * 10_000
        numbers = [f"139{first + i:08d}" for i in range(opts.calls)]
        csv = self.workdir / "citizens.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))

        ami_cfg, admin = self.topo["ami"], self.topo["sandbox_admin"]
        self.ami = await LoadAmi.connect(
            ami_cfg["host"],
            int(ami_cfg["port"]),
            admin["username"],
            admin["secret"],
            events="call",
            on_event=self.on_event,
        )
        procs: list[SippProcess] = []
        started_at = time.time()
        try:
            left = await self._hang_up_leftovers()
            if left:
                self._say(f"drill: hung up {left} channels left by an earlier drill")
            if opts.mode in ("bridge", "mixed"):
                self.bridge = await asyncio.to_thread(
                    start_bridge,
                    opts.topology,
                    self.topo,
                    self.workdir / "bridge",
                    port=opts.bridge_port,
                    overrides={
                        # The drill's 110 desk and queue (their own ports; tests undisturbed).
                        "HOTLINE_BRIDGE_TARGETS__110__DIAL": self.partner_dial,
                        "HOTLINE_BRIDGE_BRIDGE__RETURN_QUEUE": self.pool["queue"],
                    },
                )
                self.http = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=64),
                    timeout=aiohttp.ClientTimeout(total=10),
                )
                self.hotkeys = HotkeyClient("127.0.0.1", opts.bridge_port)
                if opts.bridge_nice and self.bridge.proc is not None:
                    os.setpriority(os.PRIO_PROCESS, self.bridge.proc.pid, opts.bridge_nice)
            if opts.mode in ("raw", "mixed"):
                self.raw_ami = await LoadAmi.connect(
                    ami_cfg["host"], int(ami_cfg["port"]), ami_cfg["username"], ami_cfg["secret"]
                )
            if opts.record_ami is not None:
                opts.record_ami.parent.mkdir(parents=True, exist_ok=True)
                self.recorder = await LoadAmi.connect(
                    ami_cfg["host"],
                    int(ami_cfg["port"]),
                    ami_cfg["username"],
                    ami_cfg["secret"],
                    events="on",
                    record=opts.record_ami,
                )
            host, trace = self.dr["sip_host"], opts.trace_sip
            partner = SippProcess(
                "partner_drill_uas.xml",
                port=int(self.dr["partner_sip_port"]),
                local_ip=host,
                workdir=self.workdir,
                name="partner",
                hold=max(60.0, opts.hold * 4),  # the citizen ends the call; this is a safety net
                extra_args=["-rtp_echo", "-mp", str(PARTNER_MEDIA_PORT)],
                trace_messages=trace,
            )
            agents = SippProcess(
                "agent_refer_uas.xml" if opts.mode == "refer" else "agent_uas.xml",
                port=int(self.pool["sip_port"]),
                local_ip=self.pool["sip_host"],
                workdir=self.workdir,
                name="agents",
                hold=max(60.0, opts.hold * 4),
                extra_args=["-rtp_echo", "-mp", str(AGENT_MEDIA_PORT)]
                + (["-aa"] if opts.mode == "refer" else []),
                keys={
                    "pbx": f"{self.topo['pbx']['sip_host']}:{self.topo['pbx']['sip_port']}",
                    "target": self.dr["partner_number"],
                },
                trace_messages=trace,
            )
            citizen = SippProcess(
                "citizen_drill_uac.xml",
                port=int(self.dr["citizen_sip_port"]),
                local_ip=host,
                workdir=self.workdir,
                name="citizens",
                remote=f"{self.topo['pbx']['sip_host']}:{self.topo['pbx']['sip_port']}",
                service=str(self.topo["citizens"]["dial_number"]),
                calls=opts.calls,
                rate=opts.rate,
                inf=csv,
                hold=opts.hold,
                extra_args=[
                    "-mp",
                    str(CITIZEN_MEDIA_PORT),
                    "-l",
                    str(int(opts.rate * (opts.hold + 30)) + 10),
                ],
                trace_messages=trace,
            )
            assert raw.parent == citizen.workdir  # rtp_stream reads g711a.raw from SIPp's cwd
            procs = [partner, agents]
            await partner.start()
            await agents.start()
            pids = {
                "bridge": self.bridge.proc.pid if self.bridge and self.bridge.proc else None,
                "asterisk": asterisk_pid,
            }
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            sipp0 = {}
            started_at = time.time()
            t0 = time.monotonic()
            await citizen.start(settle=0)
            procs.append(citizen)
            for p in procs:
                if p.proc is not None:
                    sipp0[p.name] = cpu_seconds(p.proc.pid)
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            driver0 = time.process_time()
            spy = await self._start_profiler(pids["bridge"])
            samples = await self._watch(citizen, partner, agents, pids, t0)
            if spy is not None:
                with contextlib.suppress(ProcessLookupError):
                    spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spy.wait(), 30)
            window = time.monotonic() - t0
            cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
            sipp1 = {p.name: cpu_seconds(p.proc.pid) for p in procs if p.proc is not None}
            # The citizens' SIPp has exited (and been reaped) when the window ends.
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            sipp1["citizens"] = (
                children1.ru_utime - children0.ru_utime + children1.ru_stime - children0.ru_stime
            ) + (sipp0.get("citizens") or 0.0)
            driver_cpu = time.process_time() - driver0
            await asyncio.sleep(1.0)  # last BYEs and AMI events
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=15)
            sipp_results = {"citizens": citizen.snapshot()}
            for p in (partner, agents):
                sipp_results[p.name] = await p.stop(timeout=5)
            leftovers = await self._hang_up_leftovers()
            self._read_sipp_logs(sipp_results)
            records = await self._verify_records() if self.bridge is not None else {}
        finally:
            for p in procs:
                if p.running:
                    with contextlib.suppress(Exception):
                        await p.stop(timeout=3)
            with contextlib.suppress(Exception):
                await self._hang_up_leftovers()
            if self.http is not None:
                await self.http.close()
            if self.hotkeys is not None:
                await self.hotkeys.close()
            if self.bridge is not None:
                self.bridge.stop()
            for a in (self.recorder, self.raw_ami, self.ami):
                if a is not None:
                    await a.close()

        cpu: dict[str, Any] = {
            k: self._cpu_entry(cpu0.get(k), cpu1.get(k), window) for k in ("bridge", "asterisk")
        }
        cpu["sipp"] = {
            name: self._cpu_entry(sipp0.get(name), sipp1.get(name), window) for name in sipp1
        }
        cpu["driver"] = self._cpu_entry(0.0, driver_cpu, window)
        cpu["window_s"] = round(window, 2)
        report = self._report(started_at, cpu, samples, sipp_results, leftovers, records)
        self._write(report)
        return report

    async def _watch(
        self,
        citizen: SippProcess,
        partner: SippProcess,
        agents: SippProcess,
        pids: dict[str, int | None],
        t0: float,
    ) -> list[dict[str, Any]]:
        """Until the citizen UAC has placed and ended every call: progress, CPU samples, and one
        look at the media when the most calls are up."""
        opts = self.opts
        limit = opts.duration + opts.hold + 90
        media_at = min(opts.duration, opts.hold) + 1.5
        samples: list[dict[str, Any]] = []
        prev = {k: cpu_seconds(p) for k, p in pids.items()}
        prev_t = time.monotonic()
        assert citizen.proc is not None
        while citizen.proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(citizen.proc.wait()), 1.0)
            now = time.monotonic()
            elapsed = now - t0
            cur = {k: cpu_seconds(p) for k, p in pids.items()}
            dt = max(1e-6, now - prev_t)
            pct = {
                k: round(100 * (cur[k] - prev[k]) / dt, 1)  # type: ignore[operator]
                for k in pids
                if cur.get(k) is not None and prev.get(k) is not None
            }
            prev, prev_t = cur, now
            sample = {"t": round(elapsed, 1), **self._counts(), "cpu_pct": pct}
            samples.append(sample)
            if opts.progress:
                self._say(self._progress_line(sample))
            if not self.media and elapsed >= media_at:
                self._spawn(self._media_check())
            if not (partner.running and agents.running):
                self._say("drill: a SIPp peer died; stopping the citizens")
                await citizen.stop(timeout=3)
                break
            if elapsed > limit:
                self._say(f"drill: still running after {limit:.0f} s; stopping the citizens")
                await citizen.stop(timeout=3)
                break
        return samples

    async def _start_profiler(self, pid: int | None) -> asyncio.subprocess.Process | None:
        if not self.opts.profile or pid is None:
            return None
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            self._say("drill: py-spy not installed (pip install py-spy): no profile")
            return None
        out = self.workdir / "bridge-profile.txt"
        limit = str(int(self.opts.duration + self.opts.hold + 60))
        return await asyncio.create_subprocess_exec(
            str(spy), "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
            "--output", str(out), "--duration", limit, "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    def _counts(self) -> dict[str, int]:
        calls = list(self.calls.values())
        return {
            "offered": self.offered_seen,
            "bridged": len(calls),
            "pressed": sum(1 for c in calls if c.status in (202, "Success")),
            "partner_bridged": sum(1 for c in calls if c.partner_bridged_at is not None),
            "ended": sum(1 for c in calls if c.hung_up_at is not None),
            "errors": sum(1 for c in calls if c.error),
        }

    def _progress_line(self, s: dict[str, Any]) -> str:
        active = s["offered"] - s["ended"]
        cpu = " ".join(f"{k}={v:.0f}%" for k, v in s["cpu_pct"].items())
        return (
            f"drill {self.opts.mode} t={s['t']:5.1f}s offered={s['offered']} "
            f"with-agent={s['bridged']} pressed={s['pressed']} "
            f"110-bridged={s['partner_bridged']} live={active} errors={s['errors']} cpu: {cpu}"
        )

    async def _media_check(self) -> None:
        """`pjsip show channelstats` once, with the most calls up: did RTP really flow?"""
        self.media = {"checked": True}
        assert self.ami is not None
        try:
            text = await self.ami.command("pjsip show channelstats", timeout=15)
        except Exception as exc:
            self.media["error"] = f"{type(exc).__name__}: {exc}"
            return
        mine = (
            self.dr["carrier_endpoint"],
            self.pool["endpoint_prefix"],
            self.dr["partner_endpoint"],
        )
        rows: list[dict[str, Any]] = []
        for line in text.splitlines():
            cols = line.split()
            if len(cols) < 12 or not any(c.startswith(mine) for c in cols[:3]):
                continue
            try:
                rx, tx = int(cols[-9]), int(cols[-5])
            except ValueError:
                continue
            rows.append(
                {"channel": next(c for c in cols if c.startswith(mine)), "codec": cols[-10],
                 "rx": rx, "tx": tx, "rx_lost": int(cols[-8])}
            )  # fmt: skip
        flowing = [r for r in rows if r["rx"] > 0 and r["tx"] > 0]
        self.media.update(
            {
                "at_s": round(time.time(), 3),
                "channels": len(rows),
                "rtp_both_ways": len(flowing),
                "rx_packets": sum(r["rx"] for r in rows),
                "tx_packets": sum(r["tx"] for r in rows),
                "rx_lost": sum(r["rx_lost"] for r in rows),
                "codecs": sorted({r["codec"] for r in rows}),
            }
        )
        self.media["ok"] = bool(rows) and len(flowing) >= 0.9 * len(rows)

    async def _hang_up_leftovers(self) -> int:
        assert self.ami is not None
        chans = await self.ami.list_action("CoreShowChannels", timeout=15)
        mine = (self.carrier_prefix, self.pool_prefix, self.partner_prefix)
        stale = [c["Channel"] for c in chans if str(c.get("Channel", "")).startswith(mine)]
        for name in stale:
            self.ami.send("Hangup", Channel=name)
        if stale:
            await asyncio.sleep(0.5)
        return len(stale)

    # -- after the run --------------------------------------------------------------------------

    def _read_sipp_logs(self, results: dict[str, Any]) -> None:
        by_number = {c.number: c for c in self.calls.values() if c.number}
        self.citizen_numbers: set[str] = set()
        self.citizen_end: dict[str, str] = {}
        for line in results["citizens"].log_lines:
            f = _log_fields(line)
            if " citizen-answered " in line:
                self.citizen_numbers.add(f.get("num", ""))
            elif " citizen-end " in line:
                self.citizen_end[f.get("num", "")] = f.get("by", "")
        for num, by in self.citizen_end.items():
            if num in by_number:
                by_number[num].citizen_end = by
        by_handoff = {c.handoff_id: c for c in self.calls.values() if c.handoff_id}
        self.partner_invites = 0
        self.partner_unmatched: list[str] = []
        for line in results["partner"].log_lines:
            if " drill-partner-invite " not in line:
                continue
            self.partner_invites += 1
            f = _log_fields(line)
            hid = f.get("id", "")
            rec = by_handoff.get(hid)
            if rec is None and hid.startswith("refer-"):
                rec = by_number.get(hid[len("refer-") :])
                if rec is not None:
                    rec.handoff_id = hid
            if rec is None:
                self.partner_unmatched.append(hid)
                continue
            rec.partner_invite_at = _gettimeofday(f)
            rec.partner_from, rec.partner_pai = f.get("from", ""), f.get("pai", "")
        if self.opts.mode == "refer":
            for line in results["agents"].log_lines:
                f = _log_fields(line)
                rec = by_number.get(f.get("num", ""))
                if rec is None:
                    continue
                if " refer-sent " in line:
                    rec.press_at = _gettimeofday(f)
                elif " refer-accepted " in line:
                    rec.answer_at, rec.status = _gettimeofday(f), 202
                elif " refer-notify " in line and not f.get("status", "1").startswith("1"):
                    rec.refer_final = f.get("status", "")  # "unseen": answered by SIPp's -aa
                elif " refer-failed " in line:
                    rec.error = f"REFER NOTIFY sipfrag {f.get('status')}"

    async def _verify_records(self) -> dict[str, Any]:
        """The bridge's own account of each call, read back as a supervisor."""
        assert self.http is not None and self.bridge is not None
        sup = next(
            (c for c in self.topo.get("api_clients", []) if c.get("role") == "supervisor"), None
        )
        if sup is None:
            return {"error": "no supervisor in the topology's [[api_clients]]"}
        headers = {"Authorization": f"Bearer {sup['token']}"}
        sem = asyncio.Semaphore(8)
        base = self.bridge.base_url

        async def get(path: str) -> tuple[int, Any]:
            assert self.http is not None
            async with sem, self.http.get(base + path, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        async def one(rec: DrillCall) -> None:
            kind = "conferences" if rec.kind == "three_way" else "transfers"
            status, body = await get(f"/v1/{kind}/{rec.ref}")
            if status == 200:
                rec.record_state, rec.record_outcome = body["state"], str(body["outcome"])
                if rec.kind == "three_way":
                    steps = [e["what"] for e in body.get("timeline", [])]
                    if "agent_left_room" not in steps:
                        rec.record_state += " (agent never left)"
            status, body = await get(f"/v1/handoffs/{rec.handoff_id}")
            if status == 200:
                rec.record_number = str(body["snapshot"]["citizen"].get("number") or "")

        todo = [c for c in self.calls.values() if c.way == "bridge" and c.ref and c.handoff_id]
        await asyncio.gather(*(one(c) for c in todo))
        return {"checked": len(todo)}

    def _judge(self, rec: DrillCall) -> None:
        """Was this call's number carried, and does every side agree?"""
        problems = []
        if rec.press_at is None or rec.error:
            problems.append(rec.error or "no hotkey press")
        if rec.partner_invite_at is None:
            problems.append("no INVITE at 110 for this handoff")
        else:
            if not (rec.partner_from == rec.partner_pai == rec.number):
                problems.append(
                    f"110 got From {rec.partner_from} / PAI {rec.partner_pai}, "
                    f"citizen is {rec.number}"
                )
            if rec.number not in self.citizen_numbers:
                problems.append(f"{rec.number} is not a number a drill citizen presented")
        if rec.partner_bridged_at is None:
            problems.append("110 never bridged with the citizen")
        if rec.way == "bridge":
            if rec.record_number != rec.number:
                problems.append(f"record says {rec.record_number or 'no number'}")
            if rec.record_outcome != "answered" or "never" in rec.record_state:
                problems.append(f"record: {rec.record_state} / {rec.record_outcome}")
            if rec.kind == "three_way" and rec.leave_status != 202:
                problems.append(f"leave answered {rec.leave_status}")
        if (
            rec.way == "refer"
            and rec.refer_final not in ("unseen",)
            and not (rec.refer_final.startswith("2"))
        ):
            problems.append(f"REFER final sipfrag {rec.refer_final or 'missing'}")
        rec.carried = not problems
        rec.problem = "; ".join(problems)

    def _cpu_entry(self, start: float | None, end: float | None, window: float) -> dict[str, Any]:
        if start is None or end is None or window <= 0:
            return {"cpu_s": None, "pct_of_core": None}
        used = end - start
        return {"cpu_s": round(used, 3), "pct_of_core": round(100 * used / window, 1)}

    def _report(
        self,
        started_at: float,
        cpu: dict[str, Any],
        samples: list[dict[str, Any]],
        sipp: dict[str, Any],
        leftovers: int,
        records: dict[str, Any],
    ) -> dict[str, Any]:
        opts = self.opts
        calls = list(self.calls.values())
        for rec in calls:
            self._judge(rec)
        offered = opts.calls
        ended_self = sum(1 for by in self.citizen_end.values() if by == "self")
        dropped_pbx = sum(1 for by in self.citizen_end.values() if by == "pbx")
        dropped = offered - ended_self
        carry = [c for c in calls if c.kind == "carry"]
        three = [c for c in calls if c.kind == "three_way"]

        def lat(group: list[DrillCall]) -> dict[str, Any]:
            return {
                "hotkey_to_api_answer": percentiles([c.latency_ms(c.answer_at) for c in group]),  # type: ignore[misc]
                "hotkey_to_partner_invite": percentiles(
                    [c.latency_ms(c.partner_invite_at) for c in group]  # type: ignore[misc]
                ),
                "hotkey_to_partner_bridged": percentiles(
                    [c.latency_ms(c.partner_bridged_at) for c in group]  # type: ignore[misc]
                ),
            }

        def outcome(group: list[DrillCall]) -> dict[str, int]:
            attempted = [c for c in group if c.status in (202, "Success")]
            return {
                "attempted": len(attempted),
                "answered": sum(1 for c in attempted if c.partner_bridged_at is not None),
                "failed": sum(1 for c in group if c.partner_bridged_at is None),
                "press_refused": sum(1 for c in group if c.error),
                "retried_409": sum(1 for c in group if c.retries),
            }

        carried_ok = sum(1 for c in calls if c.carried)
        ways = sorted({c.way for c in calls})
        by_way = {
            way: {
                "transfers": outcome([c for c in carry if c.way == way]),
                "latency_ms": lat([c for c in carry if c.way == way]),
            }
            for way in ways
        }
        bridge_cpu = cpu.get("bridge", {}).get("cpu_s")
        if bridge_cpu is not None and calls:
            cpu["bridge"]["ms_per_transfer"] = round(1000 * bridge_cpu / len(calls), 3)
        problems = []
        if dropped:
            problems.append(
                f"{dropped} of {offered} citizens did not end their own call "
                f"({dropped_pbx} hung up by the PBX, the rest never answered or failed)"
            )
        if len(calls) < offered:
            problems.append(f"only {len(calls)} of {offered} calls reached an agent")
        unverified = [c for c in calls if not c.carried]
        if unverified:
            problems.append(f"{len(unverified)} calls without a verified carried number")
        if leftovers:
            problems.append(f"{leftovers} drill channels were still up after the run")
        if self.partner_unmatched:
            problems.append(f"{len(self.partner_unmatched)} INVITEs at 110 matched no hotkey")
        report: dict[str, Any] = {
            "drill": {
                "mode": opts.mode,
                "rate_cps": opts.rate,
                "duration_s": opts.duration,
                "hold_s": opts.hold,
                "mix_three_way": opts.mix,
                "calls": offered,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
                "label": opts.label,
                "bridge_nice": opts.bridge_nice,
                "hotkey_driver": "admin AMI BridgeEnter (push), HTTP hotkey at once",
                "media": "citizens stream G.711 A-law (rtp_stream); agents and 110 echo",
            },
            "machine": machine_description(),
            "calls": {
                "offered": offered,
                "seen_by_pbx": self.offered_seen,
                "reached_agent": len(calls),
                "ended_by_citizen": ended_self,
                "hung_up_by_pbx": dropped_pbx,
                "dropped": dropped,
            },
            "transfers": outcome(carry),
            "three_way": {
                **outcome(three),
                "agent_left": sum(1 for c in three if c.leave_status == 202),
            },
            "carried": {
                "checked_at_partner": sum(1 for c in calls if c.partner_invite_at is not None),
                "verified": carried_ok,
                "unverified": len(calls) - carried_ok,
                "records_checked": records.get("checked", 0),
                "first_problems": [
                    {"call_id": c.uid, "number": c.number, "problem": c.problem}
                    for c in unverified[:20]
                ],
            },
            "latency_ms": {"carry": lat(carry), "three_way": lat(three)},
            # carry transfers per way (in mixed mode: bridge and raw, call by call, same load)
            "by_way": by_way,
            "cpu": cpu,
            "media": self.media or {"checked": False},
            "sipp": {
                name: {"exit": r.returncode, "errors": r.errors[-500:]} for name, r in sipp.items()
            },
            "progress": samples,
            "problems": problems,
            "ok": not problems,
            "results_dir": str(self.workdir),
        }
        return report

    def _write(self, report: dict[str, Any]) -> None:
        (self.workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        with (self.workdir / "calls.jsonl").open("w") as f:
            for rec in self.calls.values():
                f.write(json.dumps(asdict(rec)) + "\n")
        if self.opts.plot:
            groups: dict[str, list[DrillCall]] = {}
            for rec in self.calls.values():
                groups.setdefault(rec.way, []).append(rec)
            png = plot_latencies(
                groups,
                self.workdir / "latency.png",
                f"drill {self.opts.mode}: {self.opts.rate:g} calls/s x {self.opts.duration:g} s",
            )
            report["plot"] = str(png) if png else None
            (self.workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def plot_latencies(groups: dict[str, list[DrillCall]], out: Path, title: str) -> Path | None:
    """CDFs of the three latencies, one line per group (mode); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        print("drill: matplotlib missing (pip install -e '.[lab]'): no plot", file=sys.stderr)
        return None
    panels = [
        ("hotkey -> API answer", "answer_at"),
        ("hotkey -> INVITE at 110", "partner_invite_at"),
        ("hotkey -> 110 bridged", "partner_bridged_at"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (label, attr) in zip(axes, panels, strict=True):
        for name, calls in groups.items():
            for kind in ("carry", "three_way"):
                vals = sorted(
                    v
                    for c in calls
                    if c.kind == kind and (v := c.latency_ms(getattr(c, attr))) is not None
                )
                if not vals:
                    continue
                ys = [(i + 1) / len(vals) for i in range(len(vals))]
                tag = name if kind == "carry" else f"{name} three-way"
                p50 = vals[len(vals) // 2]
                ax.step(vals, ys, where="post", label=f"{tag} (p50 {p50:.1f} ms, n={len(vals)})")
        ax.set_title(label)
        ax.set_xlabel("ms (log scale)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("share of calls")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def summary(report: dict[str, Any]) -> str:
    c, t, w = report["calls"], report["transfers"], report["three_way"]
    car, cpu = report["carried"], report["cpu"]
    lines = [
        f"drill {report['drill']['mode']}: {report['drill']['rate_cps']:g} calls/s x "
        f"{report['drill']['duration_s']:g} s, hold {report['drill']['hold_s']:g} s, "
        f"three-way share {report['drill']['mix_three_way']:g}",
        f"  calls: offered {c['offered']}, reached an agent {c['reached_agent']}, ended by the "
        f"citizen {c['ended_by_citizen']}, DROPPED {c['dropped']}",
        f"  carry transfers: attempted {t['attempted']}, answered by 110 {t['answered']}, "
        f"failed {t['failed']} (presses retried after 409: {t['retried_409']})",
    ]
    if w["attempted"] or w["failed"]:
        lines.append(
            f"  three-way: attempted {w['attempted']}, 110 joined {w['answered']}, agent left "
            f"{w['agent_left']}, failed {w['failed']}"
        )
    lines.append(
        f"  number carried: checked at 110 {car['checked_at_partner']}, verified "
        f"{car['verified']}, UNVERIFIED {car['unverified']}"
    )
    groups = list(report["latency_ms"].items())
    if len(report.get("by_way", {})) > 1:
        groups += [(f"{way} way", v["latency_ms"]) for way, v in report["by_way"].items()]
    for kind, lat in groups:
        for name, p in lat.items():
            if p["n"]:
                lines.append(
                    f"  {kind:10} {name:26} p50 {p['p50']:8.2f}  p90 {p['p90']:8.2f}  "
                    f"p99 {p['p99']:8.2f}  max {p['max']:8.2f} ms  (n={p['n']})"
                )
    for who in ("bridge", "asterisk"):
        e = cpu.get(who, {})
        if e.get("pct_of_core") is not None:
            extra = f", {e['ms_per_transfer']} ms CPU per call" if "ms_per_transfer" in e else ""
            lines.append(f"  cpu {who}: {e['pct_of_core']}% of one core{extra}")
    m = report["media"]
    if m.get("channels"):
        lines.append(
            f"  media: {m['rtp_both_ways']} of {m['channels']} drill channels had RTP both ways "
            f"(rx {m['rx_packets']} / tx {m['tx_packets']} packets, codecs {m['codecs']})"
        )
    lines.append(f"  results: {report['results_dir']}")
    lines += [f"  PROBLEM: {p}" for p in report["problems"]]
    lines.append("  OK" if report["ok"] else "  FAILED")
    return "\n".join(lines)


async def run_drill(opts: DrillOptions) -> dict[str, Any]:
    return await Drill(opts).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.drill", description=__doc__)
    p.add_argument("--rate", type=float, default=20.0, help="citizen calls per second (20)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of new calls (60)")
    p.add_argument("--mix", type=float, default=0.0, help="share of three-way calls, 0..1 (0)")
    p.add_argument("--hold", type=float, default=8.0, help="seconds each citizen talks (8)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="bridge",
        help="who transfers: bridge (default), raw AMI, the phones' REFER, or mixed bridge/raw",
    )
    p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results parent dir")
    p.add_argument("--label", default="")
    p.add_argument("--bridge-port", type=int, default=DRILL_BRIDGE_PORT)
    p.add_argument("--trace-sip", action="store_true", help="SIPp message traces (debugging)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--profile", action="store_true", help="py-spy the bridge (bridge mode)")
    p.add_argument("--bridge-nice", type=int, default=0, help="nice value of the bridge process")
    args = p.parse_args(argv)
    opts = DrillOptions(
        mode=args.mode,
        rate=args.rate,
        duration=args.duration,
        mix=args.mix,
        hold=args.hold,
        topology=args.topology,
        results=args.results,
        label=args.label,
        bridge_port=args.bridge_port,
        trace_sip=args.trace_sip,
        progress=not args.quiet,
        profile=args.profile,
        bridge_nice=args.bridge_nice,
    )
    try:
        report = asyncio.run(run_drill(opts))
    except DrillError as exc:
        print(f"drill: ERROR: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
