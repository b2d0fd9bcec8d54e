"""hotline-bridge as a real process against a sandbox PBX, and a small client for its API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sandbox import bridge_config_file


class BridgeError(RuntimeError):
    pass


@dataclass
class RunningBridge:
    base_url: str
    log_path: Path
    topology: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)  # the command line, for restart()

    def token(self, agent_id: str) -> str:
        return str(next(a["token"] for a in self.topology["agents"] if a["id"] == agent_id))

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """``(status, parsed JSON body)``; never raises for an HTTP error status."""
        return await asyncio.to_thread(self.request_sync, method, path, body, token)

    def request_sync(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        if not self.base_url.startswith("http://127."):
            raise BridgeError(f"refusing a non-loopback bridge URL {self.base_url}")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                return resp.status, json.loads(raw) if "json" in ctype else raw.decode()
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def env_overrides(self) -> dict[str, str]:
        """Its own settings overrides (not its port, URL or store), e.g. for a second replica."""
        own = {"HOTLINE_BRIDGE_HTTP__PORT", "HOTLINE_BRIDGE_HTTP__PUBLIC_URL",
               "HOTLINE_BRIDGE_BRIDGE__STORE_PATH"}  # fmt: skip
        return {
            k: v for k, v in self.env.items() if k.startswith("HOTLINE_BRIDGE_") and k not in own
        }

    async def wait_state(
        self, path: str, token: str, states: set[str], within: float = 15.0
    ) -> dict[str, Any]:
        """Poll a transfer or conference until its ``state`` is one of ``states``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        body: Any = None
        while loop.time() < deadline:
            status, body = await self.request("GET", path, token=token)
            if status != 200:
                raise BridgeError(f"GET {path}: {status} {body}")
            if body["state"] in states:
                return dict(body)
            await asyncio.sleep(0.05)
        raise BridgeError(f"{path} never reached {sorted(states)}; last: {body}")

    async def wait_for_call(self, within: float = 10.0) -> tuple[str, dict[str, Any]]:
        """The first agent (id) with a live call, and that call as ``GET /v1/calls`` shows it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            for agent in self.topology["agents"]:
                status, body = await self.request("GET", "/v1/calls", token=agent["token"])
                if status == 200 and body["calls"]:
                    return str(agent["id"]), dict(body["calls"][0])
            await asyncio.sleep(0.05)
        raise BridgeError(f"no citizen call reached an agent within {within} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, ready_within: float = 20.0) -> None:
        """Stop the bridge and start it again: same command, environment, ports and store."""
        self.stop()
        self.proc = _spawn(self.argv, self.env, self.log_path)
        _wait_healthy(self, ready_within)


def start_bridge(
    topology_path: Path,
    topology: dict[str, Any],
    workdir: Path,
    *,
    port: int | None = None,
    overrides: dict[str, str] | None = None,
    ready_within: float = 20.0,
) -> RunningBridge:
    """Start ``hotline-bridge serve`` on the topology (``port`` overrides its HTTP port) and wait
    until ``/healthz`` answers 200 (AMI ready, call model rebuilt)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or int(topology["http"]["port"])
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HOTLINE_BRIDGE_HTTP__PORT": str(port),
        "HOTLINE_BRIDGE_HTTP__PUBLIC_URL": base_url,
        "HOTLINE_BRIDGE_BRIDGE__STORE_PATH": str(workdir / "handoffs.sqlite3"),
        "HOTLINE_BRIDGE_LOG_FORMAT": "json",
        **(overrides or {}),
    }
    log_path = workdir / "bridge.log"
    # The bridge reads its own settings file, generated from the topology (mode = sandbox).
    config = bridge_config_file(topology_path, workdir / "bridge.toml")
    argv = [sys.executable, "-m", "hotline_bridge", "serve", "--config", str(config)]
    proc = _spawn(argv, env, log_path)
    bridge = RunningBridge(base_url, log_path, topology, proc, env, argv)
    _wait_healthy(bridge, ready_within)
    return bridge


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # Its own session, as a service of its own would run: with the kernel's autogroups
            # a session is a scheduling group, and the bridge must not share one with the
            # drill's SIPp load (50/s drills back to back: 2684 carried in its own group, 1969
            # in the drill's). The drill and tests stop it themselves.
            start_new_session=True,
        )


def _wait_healthy(bridge: RunningBridge, ready_within: float) -> None:
    """Until ``/healthz`` answers 200; BridgeError (and the bridge stopped) otherwise."""
    proc, log_path = bridge.proc, bridge.log_path
    assert proc is not None
    deadline = time.monotonic() + ready_within
    while True:
        if proc.poll() is not None:
            raise BridgeError(f"bridge exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            if bridge.request_sync("GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            bridge.stop()
            raise BridgeError(
                f"bridge not healthy after {ready_within} s:\n{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.1)
