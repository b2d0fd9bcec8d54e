"""The drill's knobs and bounds (DrillOptions), one call as seen (DrillCall), small helpers."""

from __future__ import annotations

import contextlib
import os
import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..loadami import Message
from ..sandbox import DEFAULT_TOPOLOGY, REPO

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
# The mix drill's desks echo from 26100 up, 10 apart (SIPp takes a few ports above -mp).
DESK_MEDIA_PORT = 26100
MAX_MIX_TARGETS = 20  # a drill's desks are SIPp processes on two shared cores


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
    # Extra environment settings for the drill's bridge (the fault drill routes AMI through its
    # proxy and adds a partner link this way).
    bridge_overrides: dict[str, str] = field(default_factory=dict)
    # The mix (issue 12): spread the transfers over these linkage targets (each its own SIPp
    # desk, [drill.desks]) and jurisdictions (the hotkey's handoff.jurisdiction override);
    # empty = the classic drill, everything to the one 110 desk. Jurisdictions default to all.
    targets: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    # The entry path too: the drill's carrier trunk is this jurisdiction's for the drill's
    # bridge (its entry hook's [agi.jurisdiction_by_endpoint]), and the calls given this
    # jurisdiction are pressed WITHOUT an override, so they reach their desk by the call's own
    # jurisdiction; "" = every call by override (the trunk then maps to nothing: unknown).
    entry_jurisdiction: str = "yulong"
    # Also write the report as <publish>/drill-mix-<stamp>.json/.md (bench/results).
    publish: Path | None = None

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
        if self.jurisdictions and not self.targets:
            raise DrillError("jurisdictions spread a mix: give the targets too")
        if self.targets:
            from .mix import JURISDICTIONS  # the mix module imports this one

            if self.mode != "bridge":
                raise DrillError("the mix drill goes through the bridge's hotkeys (mode bridge)")
            if len(set(self.targets)) != len(self.targets):
                raise DrillError(f"a target is listed twice: {','.join(self.targets)}")
            if len(self.targets) > MAX_MIX_TARGETS:
                raise DrillError(f"at most {MAX_MIX_TARGETS} mix targets")
            if not self.jurisdictions:
                self.jurisdictions = JURISDICTIONS
            if self.entry_jurisdiction and self.entry_jurisdiction not in JURISDICTIONS:
                raise DrillError(f"entry jurisdiction {self.entry_jurisdiction!r} is unknown")
            bad = [j for j in self.jurisdictions if j not in JURISDICTIONS]
            if bad or len(set(self.jurisdictions)) != len(self.jurisdictions):
                raise DrillError(
                    f"jurisdictions: {','.join(self.jurisdictions)}; each once, of "
                    f"{', '.join(JURISDICTIONS)}"
                )
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
    # The mix: the pair this call was given, where the directory says it must ring, and where
    # the SIP that left the PBX actually went (the desk's SIPp log: its port, the R-URI user).
    target: str = ""
    jurisdiction: str = ""
    expected_desk: str = ""  # endpoint/number
    desk: str = ""  # endpoint/number of the first INVITE carrying this handoff's X-Handoff-Id
    desk_invites: int = 0
    record_target: str = ""
    record_jurisdiction: str = ""
    by_entry: bool = False  # pressed without an override: routed by the entry hook's jurisdiction
    expected_call_jurisdiction: str = ""  # what the entry hook must have found for the trunk
    record_call_jurisdiction: str = ""  # the record's "created" event: call_jurisdiction
    record_override: str = ""  # ... and jurisdiction_override (yes/no)
    verdict: str = ""  # verified | misrouted | number_wrong | missing | other

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


def box_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat's ``cpu`` line.
    Idle and iowait are not busy; steal counts as busy (the machine could not run us)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    total = sum(fields)
    return total - fields[3] - fields[4], total


def loop_schedstat(pid: int | None) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of ``pid``'s main thread (the
    bridge's event loop), from /proc/<pid>/task/<pid>/schedstat."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            ran, waited = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return ran / 1e9, waited / 1e9


def set_nice(pid: int, nice: int) -> None:
    """Weigh ``pid`` against the PBX. The bridge runs in its own session (as a service would),
    and with the kernel's autogroups (``sched_autogroup_enabled``) a session is one scheduling
    group: a process's own nice only ranks it within that group, so the group's is set too."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    # Only for a session of its own: the group's nice holds for every process of the session
    # (once, set for a bridge sharing the drill's session, it lifted SIPp above the PBX for
    # every later run started from that shell).
    if os.getsid(pid) == pid:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


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
    # The drill's (and its SIPp peers') scheduling group and its nice: a group left at another
    # nice by an earlier experiment weighs the load generators against the PBX.
    group = ""
    with contextlib.suppress(OSError):
        group = Path("/proc/self/autogroup").read_text().strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": load,
        "drill_autogroup": group,
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
