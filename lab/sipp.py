"""Run SIPp scenarios from sipp_scenarios/ as asyncio subprocesses, and read what they saw.

    agent = SippProcess("agent_uas.xml", port=5081, workdir=tmp_path, name="agent1001")
    await agent.start()
    citizen = SippProcess("citizen_uac.xml", port=5070, remote="127.0.0.1:5060", service="12345",
                          calls=1, inf=CITIZENS_CSV, hold=20, workdir=tmp_path, name="citizen")
    await citizen.start()
    result = await citizen.wait(timeout=30)          # exit code, messages, log lines
    agent_result = await agent.stop()                # SIGUSR1 (graceful), then SIGTERM
    invite = agent_result.received("INVITE")[0]
    assert "13800138000" in invite.header("From")

Always on loopback: -i (SIP), -mi (media) and -ci (control socket) are 127.0.0.1, and -nostdin.
Every file SIPp writes (-trace_msg, -trace_logs, -trace_err, -trace_stat, screen) goes into
``workdir`` under the instance's ``name``; the working directory is ``workdir`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "sipp_scenarios"
CITIZENS_CSV = SCENARIOS / "citizens.csv"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
LOOPBACK = "127.0.0.1"

_SEPARATOR = re.compile(r"^-{20,} (\S+ \S+)\s*$", re.M)
_DIRECTION = re.compile(r"^(\w+) message (received|sent)")


@dataclass
class SipMessage:
    """One SIP message from SIPp's -trace_msg file."""

    direction: str  # "received" | "sent"
    timestamp: str
    start_line: str
    headers: list[tuple[str, str]]
    body: str

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """The request method, or for a response the CSeq method."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0]
        return self.header("CSeq").split()[-1] if self.header("CSeq") else ""

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        return int(self.start_line.split()[1])

    def header(self, name: str) -> str:
        """First value of a header ('' if absent); compact forms are not expanded."""
        values = self.header_all(name)
        return values[0] if values else ""

    def header_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]


@dataclass
class SippResult:
    name: str
    returncode: int
    messages: list[SipMessage] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    errors: str = ""
    output: str = ""

    def received(self, method: str | None = None, requests_only: bool = True) -> list[SipMessage]:
        return [
            m
            for m in self.messages
            if m.direction == "received"
            and (not requests_only or m.is_request)
            and (method is None or m.method == method)
        ]

    def sent(self, method: str | None = None) -> list[SipMessage]:
        return [
            m
            for m in self.messages
            if m.direction == "sent" and (method is None or m.method == method)
        ]

    def describe(self) -> str:
        """For assertion messages."""
        flow = ", ".join(
            f"{'<' if m.direction == 'received' else '>'}{m.start_line[:40]}" for m in self.messages
        )
        return (
            f"sipp {self.name} exit {self.returncode}; messages: {flow}\n"
            f"errors: {self.errors[-2000:]}\noutput tail: {self.output[-1500:]}"
        )


def parse_messages(text: str) -> list[SipMessage]:
    """Parse a SIPp -trace_msg file."""
    out: list[SipMessage] = []
    parts = _SEPARATOR.split(text)
    # parts = [preamble, ts1, chunk1, ts2, chunk2, ...]
    for ts, chunk in zip(parts[1::2], parts[2::2], strict=False):
        lines = chunk.lstrip("\n").split("\n")
        if not lines:
            continue
        m = _DIRECTION.match(lines[0])
        if not m:
            continue
        rest = "\n".join(lines[1:]).lstrip("\n").replace("\r\n", "\n")
        head, _, body = rest.partition("\n\n")
        head_lines = head.split("\n")
        if not head_lines or not head_lines[0].strip():
            continue
        headers: list[tuple[str, str]] = []
        for line in head_lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation
                k, v = headers[-1]
                headers[-1] = (k, f"{v} {line.strip()}")
                continue
            key, sep, value = line.partition(":")
            if sep:
                headers.append((key.strip(), value.strip()))
        out.append(
            SipMessage(
                direction=m.group(2),
                timestamp=ts,
                start_line=head_lines[0].strip(),
                headers=headers,
                body=body.strip("\n"),
            )
        )
    return out


class SippProcess:
    """One SIPp instance (a UAC that places `calls` calls, or a UAS that serves calls)."""

    def __init__(
        self,
        scenario: str | os.PathLike[str],
        *,
        port: int,
        workdir: str | os.PathLike[str],
        name: str | None = None,
        remote: str | None = None,
        service: str | None = None,
        calls: int | None = None,
        inf: str | os.PathLike[str] | None = None,
        variables: dict[str, object] | None = None,
        keys: dict[str, object] | None = None,
        rate: float | None = None,
        hold: float | None = None,
        local_ip: str = LOOPBACK,
        extra_args: list[str] | None = None,
        trace_messages: bool = True,
    ) -> None:
        path = Path(scenario)
        self.scenario = path if path.is_absolute() else SCENARIOS / path
        self.port = port
        self.name = name or f"{self.scenario.stem}-{port}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.remote = remote
        self.service = service
        self.calls = calls
        self.inf = Path(inf) if inf else None
        self.variables = variables or {}
        self.keys = keys or {}
        self.rate = rate
        self.hold = hold
        self.local_ip = local_ip
        self.extra_args = extra_args or []
        # False: no -trace_msg (a load drill's thousands of messages cost SIPp CPU and disk).
        self.trace_messages = trace_messages
        self.proc: asyncio.subprocess.Process | None = None
        self.message_file = self.workdir / f"{self.name}_messages.log"
        self.log_file = self.workdir / f"{self.name}_logs.log"
        self.error_file = self.workdir / f"{self.name}_errors.log"
        self.stat_file = self.workdir / f"{self.name}_stats.csv"
        self.screen_file = self.workdir / f"{self.name}_screen.log"
        self.output_file = self.workdir / f"{self.name}_output.log"
        self._result: SippResult | None = None

    @property
    def args(self) -> list[str]:
        a = [
            SIPP,
            "-sf",
            str(self.scenario),
            "-i",
            self.local_ip,
            "-mi",
            self.local_ip,
            "-p",
            str(self.port),
            "-ci",
            LOOPBACK,
            "-nostdin",
            *(
                ["-trace_msg", "-message_file", str(self.message_file)]
                if self.trace_messages
                else []
            ),
            "-trace_logs",
            "-log_file",
            str(self.log_file),
            "-trace_err",
            "-error_file",
            str(self.error_file),
            "-trace_stat",
            "-stf",
            str(self.stat_file),
            "-trace_screen",
            "-screen_file",
            str(self.screen_file),
        ]
        if self.calls is not None:
            a += ["-m", str(self.calls)]
        if self.rate is not None:
            a += ["-r", str(self.rate)]
        if self.hold is not None:
            # The scenarios' hold time (citizen/agent/partner hang up by themselves after it).
            a += ["-recv_timeout", str(int(self.hold * 1000))]
        if self.service is not None:
            a += ["-s", str(self.service)]
        if self.inf is not None:
            a += ["-inf", str(self.inf)]
        for k, v in self.variables.items():
            a += ["-set", str(k), str(v)]
        for k, v in self.keys.items():
            a += ["-key", str(k), str(v)]
        a += self.extra_args
        if self.remote:
            a.append(self.remote)
        return a

    async def start(self, settle: float = 0.3) -> SippProcess:
        """Start SIPp; for a UAS, wait `settle` s so it is bound before calls arrive."""
        for f in (self.message_file, self.log_file, self.error_file):
            f.unlink(missing_ok=True)
        out = self.output_file.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.workdir,
            )
        finally:
            out.close()
        await asyncio.sleep(settle)
        if self.proc.returncode is not None:
            res = self._collect(self.proc.returncode)
            raise RuntimeError(f"sipp {self.name} exited at start: {res.describe()}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait(self, timeout: float) -> SippResult:
        """Wait for SIPp to exit by itself (a UAC after its calls, a UAS after -m calls)."""
        assert self.proc is not None, "not started"
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self._terminate()
            res = self._collect(self.proc.returncode if self.proc.returncode is not None else -1)
            raise TimeoutError(
                f"sipp {self.name} still running after {timeout} s; {res.describe()}"
            ) from None
        return self._collect(rc)

    async def stop(self, timeout: float = 5.0) -> SippResult:
        """Stop a SIPp that serves calls: SIGUSR1 (stop gracefully, finish current calls), then
        SIGTERM, then SIGKILL."""
        assert self.proc is not None, "not started"
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self._terminate()
        return self._collect(self.proc.returncode if self.proc.returncode is not None else -1)

    async def _terminate(self) -> None:
        assert self.proc is not None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 3)

    def snapshot(self) -> SippResult:
        """What SIPp has written so far, while it is still running."""
        return self._collect(
            self.proc.returncode if self.proc and self.proc.returncode is not None else -1
        )

    def _collect(self, rc: int) -> SippResult:
        def read(p: Path) -> str:
            try:
                return p.read_text(errors="replace")
            except OSError:
                return ""

        res = SippResult(
            name=self.name,
            returncode=rc,
            messages=parse_messages(read(self.message_file)),
            log_lines=[line for line in read(self.log_file).splitlines() if line.strip()],
            errors=read(self.error_file),
            output=read(self.output_file),
        )
        self._result = res
        return res


async def stop_all(*procs: SippProcess) -> None:
    """Best-effort cleanup for finally: blocks."""
    for p in procs:
        if p.running:
            with contextlib.suppress(Exception):
                await p.stop(timeout=2)
