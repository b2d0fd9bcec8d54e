"""The hotkey driver: SIPp citizens, agents and 110 desk under load, the hotkeys pressed the
moment the queue bridges a call (watched on the admin AMI), progress and CPU while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.runtime.interpreter import to_action
from hotline_bridge.transfers import machine as transfer_machine

from ..bridge import RunningBridge, start_bridge
from ..loadami import LoadAmi, Message
from ..sandbox import Sandbox, load_topology
from ..sipp import SippProcess
from .mix import MixPlan, build_plan
from .options import (
    AGENT_MEDIA_PORT,
    CITIZEN_MEDIA_PORT,
    DESK_MEDIA_PORT,
    PARTNER_MEDIA_PORT,
    DrillCall,
    DrillError,
    DrillOptions,
    _ts,
    box_ticks,
    cpu_seconds,
    extract_g711a,
    loop_schedstat,
    set_nice,
)
from .report import (
    box_entry,
    build_report,
    cpu_entry,
    loop_wait_entry,
    publish,
    record_writes,
    write,
)
from .verify import SippFindings, read_sipp_logs, verify_records

# The drill bridge's FastAGI port ([drill] agi_port overrides): beside the sandbox's 4573.
DRILL_AGI_PORT = 4583


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
        while self._idle:
            reader, writer = self._idle.pop()
            if not (reader.at_eof() or writer.is_closing()):
                return reader, writer
            writer.close()  # closed by the server (or its process died) while idle
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
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
            status = int(parts[1])
            length, close = 0, False
            for line in lines[1:]:
                key, _, value = line.partition(":")
                if key.lower() == "content-length":
                    length = int(value)
                elif key.lower() == "connection" and value.strip().lower() == "close":
                    close = True
                elif key.lower() == "transfer-encoding":
                    raise ValueError("a chunked answer: the hotkey client reads Content-Length")
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


# -- what every hotkey driver shares (this drill, the fault drill, lab.cluster_drill) -------------


def not_read_yet(reason: str) -> bool:
    """A 409 that says the bridge has not read the call yet (press again), not a refusal."""
    return "not on a call" in reason or "has not reached the bridge yet" in reason


class CallWatch:
    """The drill's calls on one PBX as its admin AMI shows them (``BridgeEnter``: pushed the
    moment the queue bridges citizen and agent). :meth:`on_event` answers the new
    :class:`DrillCall` when a citizen of the drill trunk has just met a pool agent (the moment
    to press the key; once per citizen: a return to an agent or the three-way room is not a new
    call), and stamps each known call's bridging with a desk (carry transfers) and its hang-up."""

    def __init__(self, topo: dict[str, Any], desk_prefixes: tuple[str, ...] = ()) -> None:
        self._pool_endpoint = str(topo["agent_pool"]["endpoint_prefix"])
        self.carrier_prefix = f"PJSIP/{topo['drill']['carrier_endpoint']}-"
        self.pool_prefix = f"PJSIP/{self._pool_endpoint}"
        # The desks the transfers ring: the drill's 110 desk unless told otherwise (a mix's).
        self.desk_prefixes = desk_prefixes or (f"PJSIP/{topo['drill']['partner_endpoint']}-",)
        self.calls: dict[str, DrillCall] = {}  # by the citizen channel's Uniqueid
        self.bridges: dict[str, dict[str, Message]] = {}  # Asterisk bridges: their drill members
        self.offered = 0  # citizen channels seen on the drill trunk

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The drill's own channels: citizens, pool agents, desks."""
        return (self.carrier_prefix, self.pool_prefix, *self.desk_prefixes)

    def on_event(self, msg: Message) -> DrillCall | None:
        name = msg.get("Event")
        if name == "BridgeEnter":
            return self._bridge_enter(msg)
        if name == "BridgeLeave":
            members = self.bridges.get(msg.get("BridgeUniqueid", ""))
            if members is not None:
                members.pop(msg.get("Uniqueid", ""), None)
                if not members:
                    del self.bridges[msg["BridgeUniqueid"]]
        elif name == "Newchannel":
            if msg.get("Channel", "").startswith(self.carrier_prefix):
                self.offered += 1
        elif name == "Hangup":
            rec = self.calls.get(msg.get("Uniqueid", ""))
            if rec is not None:
                rec.hung_up_at = _ts(msg)
        return None

    def _bridge_enter(self, msg: Message) -> DrillCall | None:
        bridge_id, chan = msg.get("BridgeUniqueid", ""), msg.get("Channel", "")
        if chan.startswith(self.desk_prefixes):
            rec = self.calls.get(msg.get("Linkedid", ""))
            if rec is not None and rec.kind == "carry" and rec.partner_bridged_at is None:
                rec.partner_bridged_at = _ts(msg)
            return None
        if not chan.startswith((self.carrier_prefix, self.pool_prefix)):
            return None
        members = self.bridges.setdefault(bridge_id, {})
        members[msg.get("Uniqueid", "")] = msg
        citizens = [m for m in members.values() if m["Channel"].startswith(self.carrier_prefix)]
        agents = [m for m in members.values() if m["Channel"].startswith(self.pool_prefix)]
        if len(citizens) != 1 or len(agents) != 1:
            return None
        cit, agent = citizens[0], agents[0]
        if cit["Uniqueid"] in self.calls:
            return None  # back with an agent (a return), or the three-way room: pressed already
        endpoint = agent["Channel"][len("PJSIP/") :].rsplit("-", 1)[0]
        rec = DrillCall(
            uid=cit["Uniqueid"],
            channel=cit["Channel"],
            number=cit.get("CallerIDNum", ""),
            agent_id=endpoint[len(self._pool_endpoint) :],
            agent_channel=agent["Channel"],
            bridged_at=max(_ts(cit), _ts(agent)),
        )
        self.calls[rec.uid] = rec
        return rec


def pool_token(topo: dict[str, Any], agent_id: str) -> str:
    """A pool agent's API token (the sandbox expands [agent_pool] into agents so)."""
    return f"{topo['agent_pool']['token_prefix']}{agent_id}"


async def watch_pbx(topo: dict[str, Any], on_event: Callable[[Message], None]) -> LoadAmi:
    """The sandbox admin's AMI session with the call events: what the hotkey driver watches."""
    ami, admin = topo["ami"], topo["sandbox_admin"]
    return await LoadAmi.connect(
        ami["host"],
        int(ami["port"]),
        admin["username"],
        admin["secret"],
        events="call",
        on_event=on_event,
    )


async def hang_up_channels(ami: LoadAmi, prefixes: tuple[str, ...]) -> int:
    """Hang up the channels of these peers (left by an earlier run); how many there were."""
    chans = await ami.list_action("CoreShowChannels", timeout=15)
    stale = [c["Channel"] for c in chans if str(c.get("Channel", "")).startswith(prefixes)]
    for name in stale:
        ami.send("Hangup", Channel=name)
    if stale:
        await asyncio.sleep(0.5)
    return len(stale)


def drill_desk(
    topo: dict[str, Any], workdir: Path, *, hold: float, media_port: int, trace: bool
) -> SippProcess:
    """The drill's 110 desk (partner_drill_uas.xml): answers a handoff only with From = PAI and
    X-Handoff-Id, logs each INVITE, echoes the audio."""
    dr = topo["drill"]
    return SippProcess(
        "partner_drill_uas.xml",
        port=int(dr["partner_sip_port"]),
        local_ip=dr["sip_host"],
        workdir=workdir,
        name="partner",
        hold=max(60.0, hold * 4),  # the citizen ends the call: a safety net
        extra_args=["-rtp_echo", "-mp", str(media_port)],
        trace_messages=trace,
    )


def drill_agents(
    topo: dict[str, Any],
    workdir: Path,
    *,
    hold: float,
    media_port: int,
    trace: bool,
    refer: bool = False,
) -> SippProcess:
    """ONE SIPp UAS answering for every pool agent, echoing the audio; ``refer``: the phones
    transfer by themselves (agent_refer_uas.xml)."""
    pool, dr, pbx = topo["agent_pool"], topo["drill"], topo["pbx"]
    return SippProcess(
        "agent_refer_uas.xml" if refer else "agent_uas.xml",
        port=int(pool["sip_port"]),
        local_ip=pool["sip_host"],
        workdir=workdir,
        name="agents",
        hold=max(60.0, hold * 4),
        extra_args=["-rtp_echo", "-mp", str(media_port)] + (["-aa"] if refer else []),
        keys={"pbx": f"{pbx['sip_host']}:{pbx['sip_port']}", "target": dr["partner_number"]},
        trace_messages=trace,
    )


def drill_citizens(
    topo: dict[str, Any],
    workdir: Path,
    numbers: list[str],
    *,
    rate: float,
    hold: float,
    media_port: int,
    trace: bool,
) -> SippProcess:
    """The citizens (citizen_drill_uac.xml): one call per number, ``rate`` calls/s through the
    drill trunk, each STREAMING G.711 A-law once answered, hanging up after ``hold`` s."""
    dr, pbx = topo["drill"], topo["pbx"]
    workdir.mkdir(parents=True, exist_ok=True)
    extract_g711a(workdir / "g711a.raw")  # rtp_stream reads it from SIPp's cwd
    csv = workdir / "citizens.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    return SippProcess(
        "citizen_drill_uac.xml",
        port=int(dr["citizen_sip_port"]),
        local_ip=dr["sip_host"],
        workdir=workdir,
        name="citizens",
        remote=f"{pbx['sip_host']}:{pbx['sip_port']}",
        service=str(topo["citizens"]["dial_number"]),
        calls=len(numbers),
        rate=rate,
        inf=csv,
        hold=hold,
        extra_args=["-mp", str(media_port), "-l", str(int(rate * (hold + 30)) + 10)],
        trace_messages=trace,
    )


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
        self.partner_dial = f"PJSIP/{self.dr['partner_number']}@{self.dr['partner_endpoint']}"
        self.mix: MixPlan | None = (
            build_plan(self.topo, opts.targets, opts.jurisdictions) if opts.targets else None
        )
        # The channels of the desks this drill's transfers ring: the one 110 desk, or the mix's.
        self.watch = CallWatch(
            self.topo,
            tuple(f"PJSIP/{ep}-" for ep in self.mix.ports) if self.mix is not None else (),
        )
        self.desk_procs: list[SippProcess] = []
        self.by_conference: dict[str, DrillCall] = {}
        # Partners seen joining a room before the press's answer named it (a desk that answers
        # at once can beat the HTTP answer): room -> the join's time.
        self.early_joins: dict[str, float] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.ami: LoadAmi | None = None
        self.raw_ami: LoadAmi | None = None
        self.ami_tape: LoadAmi | None = None  # raw AMI bytes for the micro-bench
        self.http: aiohttp.ClientSession | None = None  # the after-run checks
        self.hotkeys: HotkeyClient | None = None  # the presses (measured)
        self.bridge: RunningBridge | None = None
        self.media: dict[str, Any] = {}
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        mode = f"{opts.mode}-mix" if opts.targets else opts.mode
        name = f"{self.stamp}-{mode}-{opts.rate:g}cps-{opts.duration:g}s"
        self.workdir = opts.results / (f"{name}-{opts.label}" if opts.label else name)
        self.three_way_every = round(1 / opts.mix) if opts.mix > 0 else 0
        self.answered_three_way = 0
        self.found = SippFindings()

    # -- PBX events (the hotkey driver) ---------------------------------------------------------

    @property
    def calls(self) -> dict[str, DrillCall]:
        """The calls that reached a pool agent, by the citizen's Uniqueid."""
        return self.watch.calls

    @property
    def offered_seen(self) -> int:
        return self.watch.offered

    def on_event(self, msg: Message) -> None:
        if msg.get("Event") == "ConfbridgeJoin":
            uid, room = msg.get("Uniqueid", ""), msg.get("Conference", "")
            rec = self.by_conference.get(room)
            if rec is None:
                if uid == f"{room}-partner" and len(self.early_joins) < 10_000:
                    self.early_joins[room] = _ts(msg)
            elif uid == f"{rec.ref}-partner" and rec.partner_bridged_at is None:
                self._partner_joined(rec, _ts(msg))
            return
        rec = self.watch.on_event(msg)
        if rec is not None:
            self._with_agent(rec)

    def room_named(self, rec: DrillCall) -> None:
        """The three-way press's answer named its room (``rec.ref``)."""
        self.by_conference[rec.ref] = rec
        early = self.early_joins.pop(rec.ref, None)
        if early is not None:
            self._partner_joined(rec, early)

    def _partner_joined(self, rec: DrillCall, at: float) -> None:
        rec.partner_bridged_at = at
        self._spawn(self._leave(rec))

    def _with_agent(self, rec: DrillCall) -> None:
        """A citizen has just met a pool agent: how this call is handed on, and the key."""
        n = len(self.calls)
        rec.way = self.opts.mode if self.opts.mode != "mixed" else ("raw", "bridge")[n % 2]
        if self.mix is not None:
            rec.target, rec.jurisdiction = self.mix.assign(n)
            rec.expected_desk = self.mix.where(rec.target, rec.jurisdiction)
            rec.expected_call_jurisdiction = self.opts.entry_jurisdiction or "unknown"
            rec.by_entry = rec.jurisdiction == self.opts.entry_jurisdiction
        if self.three_way_every and n % self.three_way_every == 0 and rec.way == "bridge":
            # A target that takes no three-way call (the duty lines) would refuse it with a 422:
            # its turn is a carry transfer, so the share only counts where it can happen.
            if self.mix is None or self.mix.three_way[rec.target]:
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
        return pool_token(self.topo, agent_id)

    async def _press(self, rec: DrillCall) -> None:
        assert self.hotkeys is not None
        what = "three-way" if rec.kind == "three_way" else "carry-transfer"
        path = f"/v1/agents/{rec.agent_id}/{what}"
        token = self._token(rec.agent_id)
        # call_id: the call this press is for; a press the bridge reads late never acts on the
        # agent's next call (409).
        press: dict[str, Any] = {"target": rec.target or "110", "call_id": rec.uid}
        if rec.jurisdiction and not rec.by_entry:
            # The agent's override: the desk of this jurisdiction, whatever trunk the call took.
            press["handoff"] = {"jurisdiction": rec.jurisdiction}
        payload = json.dumps(press).encode()
        first_sent: float | None = None
        for attempt in range(40):
            try:
                status, body, t0 = await asyncio.wait_for(
                    self.hotkeys.post(path, payload, token), 10
                )
            except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
                rec.error = f"{type(exc).__name__}: {exc}"
                return
            t1 = time.time()
            first_sent = t0 if first_sent is None else first_sent
            # 409 "not on a call" / "has not reached the bridge yet": the bridge has not yet
            # read the BridgeEnter we reacted to. The agent would press again; latencies count
            # from the first press.
            if status == 409 and attempt < 39 and not_read_yet(str(body)):
                rec.retries += 1
                await asyncio.sleep(0.005)
                continue
            rec.press_at, rec.answer_at, rec.status = first_sent, t1, status
            if status == 202:
                rec.ref = body.get("transfer_id") or body.get("conference_id") or ""
                rec.handoff_id = body.get("handoff_id", "")
                if rec.kind == "three_way":
                    self.room_named(rec)
            else:
                rec.error = f"HTTP {status}: {body}"
            return

    async def _leave(self, rec: DrillCall) -> None:
        assert self.hotkeys is not None
        path = f"/v1/conferences/{rec.ref}/leave"
        # The bridge learns of the join from the same AMI event: a press can arrive first (409).
        # Paced to stay inside the agent's own rate limit (burst 20, 5/s): a faster retry loop
        # is what the limit exists to stop, and would be answered 429.
        for _ in range(15):
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
            await asyncio.sleep(0.1)

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
        # One number per call (the 110 desk's check is per call): 139 + 8 digits, a fresh
        # block per run so a record from an earlier drill cannot pass for this one's.
        first = int(time.time()) % 9_000 * 10_000
        numbers = [f"139{first + i:08d}" for i in range(opts.calls)]

        ami_cfg = self.topo["ami"]
        self.ami = await watch_pbx(self.topo, self.on_event)
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
                        **self._drill_desk(),
                        "HOTLINE_BRIDGE_BRIDGE__RETURN_QUEUE": self.pool["queue"],
                        # Its own FastAGI port: a bridge left running beside the PBX (a test
                        # session's) keeps 4573, and would answer the drill calls' entry hook.
                        "HOTLINE_BRIDGE_AGI__PORT": str(self.agi_port),
                        # No phone keys: the drill presses through the API, and the sandbox's
                        # keys name targets (120...) its one-desk directory does not have.
                        "HOTLINE_BRIDGE_PHONE_KEYS": "[]",
                        **opts.bridge_overrides,
                    },
                )
                await self._point_hooks(self.agi_port)
                self.http = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=64),
                    timeout=aiohttp.ClientTimeout(total=10),
                )
                self.hotkeys = HotkeyClient("127.0.0.1", opts.bridge_port)
                if opts.bridge_nice and self.bridge.proc is not None:
                    set_nice(self.bridge.proc.pid, opts.bridge_nice)
            if opts.mode in ("raw", "mixed"):
                self.raw_ami = await LoadAmi.connect(
                    ami_cfg["host"], int(ami_cfg["port"]), ami_cfg["username"], ami_cfg["secret"]
                )
            if opts.record_ami is not None:
                opts.record_ami.parent.mkdir(parents=True, exist_ok=True)
                self.ami_tape = await LoadAmi.connect(
                    ami_cfg["host"],
                    int(ami_cfg["port"]),
                    ami_cfg["username"],
                    ami_cfg["secret"],
                    events="on",
                    record=opts.record_ami,
                )
            host, trace = self.dr["sip_host"], opts.trace_sip
            if self.mix is None:
                partner = drill_desk(
                    self.topo,
                    self.workdir,
                    hold=opts.hold,
                    media_port=PARTNER_MEDIA_PORT,
                    trace=trace,
                )
                self.desk_procs = [partner]
            else:
                # One desk per target of the drill's directory (named by its endpoint), drilled
                # or not: a call rung at a desk it was not meant for must be seen, not refused.
                self.desk_procs = [
                    SippProcess(
                        "desk_drill_uas.xml",
                        port=port,
                        local_ip=host,
                        workdir=self.workdir,
                        name=endpoint,
                        hold=max(60.0, opts.hold * 4),
                        extra_args=["-rtp_echo", "-mp", str(DESK_MEDIA_PORT + 10 * i)],
                        trace_messages=trace,
                    )
                    for i, (endpoint, port) in enumerate(self.mix.ports.items())
                ]
                partner = self.desk_procs[0]
            agents = drill_agents(
                self.topo,
                self.workdir,
                hold=opts.hold,
                media_port=AGENT_MEDIA_PORT,
                trace=trace,
                refer=opts.mode == "refer",
            )
            citizen = drill_citizens(
                self.topo,
                self.workdir,
                numbers,
                rate=opts.rate,
                hold=opts.hold,
                media_port=CITIZEN_MEDIA_PORT,
                trace=trace,
            )
            procs = [*self.desk_procs, agents]
            for desk_proc in self.desk_procs:
                await desk_proc.start(settle=0)
            await agents.start()
            pids = {
                "bridge": self.bridge.proc.pid if self.bridge and self.bridge.proc else None,
                "asterisk": asterisk_pid,
            }
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            box0, loop0 = box_ticks(), loop_schedstat(pids["bridge"])
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
            box1, loop1 = box_ticks(), loop_schedstat(pids["bridge"])
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
            for p in (*self.desk_procs, agents):
                sipp_results[p.name] = await p.stop(timeout=5)
            leftovers = await self._hang_up_leftovers()
            self.found = read_sipp_logs(
                self.calls, sipp_results, opts.mode, [p.name for p in self.desk_procs]
            )
            records = (
                await verify_records(self.calls, self.topo, self.http, self.bridge.base_url)
                if self.bridge is not None and self.http is not None
                else {}
            )
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
                with contextlib.suppress(Exception):
                    await self._point_hooks(int(self.topo["agi"]["port"]))
                self.bridge.stop()
            for a in (self.ami_tape, self.raw_ami, self.ami):
                if a is not None:
                    await a.close()

        cpu: dict[str, Any] = {
            k: cpu_entry(cpu0.get(k), cpu1.get(k), window) for k in ("bridge", "asterisk")
        }
        if cpu["bridge"].get("cpu_s") is not None:
            cpu["bridge"].update(loop_wait_entry(loop0, loop1, window))
        press_split = record_writes(
            self.bridge.log_path if self.bridge is not None else None, self.calls.values()
        )
        cpu["box"] = box_entry(box0, box1)
        cpu["sipp"] = {name: cpu_entry(sipp0.get(name), sipp1.get(name), window) for name in sipp1}
        cpu["driver"] = cpu_entry(0.0, driver_cpu, window)
        cpu["window_s"] = round(window, 2)
        report = build_report(
            opts,
            self.calls,
            self.found,
            offered_seen=self.offered_seen,
            media=self.media,
            workdir=self.workdir,
            started_at=started_at,
            cpu=cpu,
            samples=samples,
            sipp=sipp_results,
            leftovers=leftovers,
            records=records,
            mix=self.mix,
            press_split=press_split,
        )
        write(report, self.calls, opts, self.workdir)
        if opts.publish is not None:
            report["published"] = [str(p) for p in publish(report, opts.publish, self.stamp)]
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
            if not (partner.running and agents.running and all(p.running for p in self.desk_procs)):
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
            *(self.mix.ports if self.mix is not None else ()),
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

    def _drill_desk(self) -> dict[str, str]:
        """The bridge's 110 is the drill's own desk: a one-target directory file when the site
        routes by a directory, else the [targets.110] dial string. A mix drill always routes by
        its own directory file (every target's desks the drill's SIPp desks, lab.drill.mix)."""
        if self.mix is not None:
            path = self.workdir / "drill-targets.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.mix.directory_text, encoding="utf-8")
            env = {"HOTLINE_BRIDGE_BRIDGE__TARGETS_PATH": str(path)}
            if self.opts.entry_jurisdiction:
                # Only this bridge's entry hook sees the drill trunk as that jurisdiction's: the
                # sandbox's own map (and the tests that read it) stay as they are.
                by_endpoint = dict((self.topo.get("agi") or {}).get("jurisdiction_by_endpoint", {}))
                by_endpoint[self.dr["carrier_endpoint"]] = self.opts.entry_jurisdiction
                env["HOTLINE_BRIDGE_AGI__JURISDICTION_BY_ENDPOINT"] = json.dumps(by_endpoint)
            return env
        if not (self.topo.get("bridge") or {}).get("targets_path"):
            return {"HOTLINE_BRIDGE_TARGETS__110__DIAL": self.partner_dial}
        path = self.workdir / "drill-targets.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# GENERATED by lab.drill: the drill's one linkage target, its own SIPp desk.\n"
            '[directory]\nversion = 1\n\n[targets.110]\nkind = "linked"\nsite = "110"\n'
            'label_zh = "110（演练）"\nlabel_en = "110 (drill desk)"\n'
            'forwarding_number = "12345"\nthree_way = true\n[targets.110.desks]\n'
            f'city = {{ dial = "{self.partner_dial}", number = "{self.dr["partner_number"]}" }}\n',
            encoding="utf-8",
        )
        return {"HOTLINE_BRIDGE_BRIDGE__TARGETS_PATH": str(path)}

    @property
    def agi_port(self) -> int:
        return int(self.dr.get("agi_port", DRILL_AGI_PORT))

    async def _point_hooks(self, port: int) -> None:
        """The dialplan's hooks (global HOTLINE_AGI) at the bridge on ``port``: the drill's own
        while it runs, the sandbox's [agi] port again after it."""
        assert self.ami is not None
        host = self.topo["agi"]["host"]
        await self.ami.command(f"dialplan set global HOTLINE_AGI agi://{host}:{port}", timeout=10)

    async def _hang_up_leftovers(self) -> int:
        assert self.ami is not None
        return await hang_up_channels(self.ami, self.watch.prefixes)

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


async def run_drill(opts: DrillOptions) -> dict[str, Any]:
    return await Drill(opts).run()
