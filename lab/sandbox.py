"""The sandbox PBX for tests: a thin wrapper around asterisk/sandbox.py.

asterisk/sandbox.py is run as a SUBPROCESS (``python asterisk/sandbox.py --topology T start``),
never imported into pytest for process control: Asterisk is then started by a short-lived CLI
process, so it is not a child of pytest (no zombies, no ResourceWarning, and it survives a
crashed test run until ``stop``). Pure functions (topology loading, rendering) are imported
from the file with importlib, see :func:`sandbox_module`.

    sb = Sandbox()                 # asterisk/sandbox.toml
    sb.start()                     # provisions the chroot if missing (~45 s), boots (~0.3 s)
    sb.rx("core show channels")    # CLI output
    sb.restart()                   # core restart now, back when FullyBooted
    sb.log_path                    # host path of Asterisk's messages.log
    async with sb.admin_ami() as ami: ...   # lab.ami.AmiSession as sandbox-admin
    sb.stop()
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .ami import AmiSession

REPO = Path(__file__).resolve().parents[1]
SANDBOX_PY = REPO / "asterisk" / "sandbox.py"
# HOTLINE_SANDBOX_TOPOLOGY points the whole test session at another site's topology file.
DEFAULT_TOPOLOGY = Path(
    os.environ.get("HOTLINE_SANDBOX_TOPOLOGY") or REPO / "asterisk" / "sandbox.toml"
)

# A fresh machine builds the chroot first (debootstrap, ~45 s on the lab machine; slower
# mirrors take longer).
START_TIMEOUT = 1200.0


@cache
def sandbox_module() -> ModuleType:
    """asterisk/sandbox.py imported from its path (it is not a package module)."""
    spec = importlib.util.spec_from_file_location("hotline_sandbox", SANDBOX_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["hotline_sandbox"] = module
    spec.loader.exec_module(module)
    return module


def load_topology(path: str | Path | None = None) -> dict[str, Any]:
    return sandbox_module().load_topology(path or DEFAULT_TOPOLOGY)  # type: ignore[no-any-return]


class SandboxError(RuntimeError):
    pass


def bridge_config_file(topology_path: str | Path | None, out: Path) -> Path:
    """The bridge's settings for a sandbox site (``[bridge].mode = "sandbox"``), written to
    ``out``: the topology's bridge sections only, its [agent_pool] expanded (see
    asterisk/sandbox.py ``bridge-config``)."""
    topo = load_topology(topology_path)
    return Path(sandbox_module().write_bridge_config(topo, out))


def bridge_settings(topology_path: str | Path | None = None, **overrides: Any) -> Any:
    """The bridge's Settings for a sandbox site, as ``hotline-bridge serve`` would load them
    (from its generated file, so ``HOTLINE_BRIDGE_*`` variables override it as they would)."""
    from hotline_bridge.config.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        return load_settings(
            bridge_config_file(topology_path, Path(tmp) / "bridge.toml"), **overrides
        )


class Sandbox:
    def __init__(self, topology_path: str | Path | None = None) -> None:
        self.topology_path = Path(topology_path or DEFAULT_TOPOLOGY)
        self.topology: dict[str, Any] = load_topology(self.topology_path)
        self.started_here = False

    # ---- CLI plumbing ----------------------------------------------------------------------

    def _cli(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(SANDBOX_PY), *args, "--topology", str(self.topology_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise SandboxError(
                f"{' '.join(cmd[1:])} exited {proc.returncode}\n"
                f"{proc.stderr.strip()}\n{proc.stdout.strip()}"
            )
        return proc

    @staticmethod
    def _parse_info(text: str) -> dict[str, str]:
        info = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key:
                info[key] = value.strip()
        return info

    # ---- lifecycle -------------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        proc = self._cli("status", check=False)
        info = self._parse_info(proc.stdout)
        info["running"] = "True" if proc.returncode == 0 else "False"
        return info

    @property
    def running(self) -> bool:
        return self.status()["running"] == "True"

    def start(self) -> bool:
        """Start the PBX unless it runs; returns True if this call started it."""
        t0 = time.monotonic()
        proc = self._cli("start", timeout=START_TIMEOUT)
        self.started_here = "started (PID" in proc.stderr
        self._info = self._parse_info(proc.stdout)
        self.start_seconds = time.monotonic() - t0
        return self.started_here

    def stop(self) -> None:
        self._cli("stop", timeout=60)

    def restart(self) -> None:
        """``core restart now`` and wait until Asterisk is fully booted again (blocking)."""
        self._cli("restart", timeout=90)

    def rx(self, command: str) -> str:
        """Output of one Asterisk CLI command."""
        return self._cli("rx", command, timeout=30).stdout

    @property
    def log_path(self) -> Path:
        """Host path of Asterisk's own log file (logger.conf messages.log)."""
        return Path(self.status()["log_file"])

    @property
    def pid(self) -> int | None:
        pid = self.status().get("pid", "None")
        return int(pid) if pid.isdigit() else None

    def log_text(self, since_bytes: int = 0) -> str:
        with self.log_path.open("rb") as f:
            f.seek(since_bytes)
            return f.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    # ---- AMI -------------------------------------------------------------------------------

    def admin_ami(self, events: str = "on") -> _AmiContext:
        """``async with sandbox.admin_ami() as ami:`` - an AmiSession as sandbox-admin."""
        return _AmiContext(self.topology, events)

    # ---- topology shortcuts ----------------------------------------------------------------

    @property
    def pbx_address(self) -> str:
        pbx = self.topology["pbx"]
        return f"{pbx['sip_host']}:{pbx['sip_port']}"


class _AmiContext:
    def __init__(self, topology: dict[str, Any], events: str) -> None:
        self.topology = topology
        self.events = events
        self.session: AmiSession | None = None

    async def __aenter__(self) -> AmiSession:
        ami, admin = self.topology["ami"], self.topology["sandbox_admin"]
        self.session = await AmiSession.connect(
            ami["host"], int(ami["port"]), admin["username"], admin["secret"], events=self.events
        )
        return self.session

    async def __aexit__(self, *exc: object) -> None:
        if self.session:
            await self.session.close()
