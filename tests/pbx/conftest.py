"""Fixtures for tests against the real sandbox PBX: a running bridge and SIPp parties."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.sandbox import DEFAULT_TOPOLOGY, Sandbox
from support.sipp import SippProcess, stop_all

BRIDGE_PORT = 18345  # not the topology's 8345, so a `make run` bridge can stay up meanwhile
RING_TIMEOUT_S = 4  # short, so no-answer tests stay quick


@dataclass
class RunningBridge:
    base_url: str
    log_path: Path
    store_path: Path
    topology: dict[str, Any]
    proc: subprocess.Popen[bytes]

    def token(self, agent_id: str) -> str:
        return next(a["token"] for a in self.topology["agents"] if a["id"] == agent_id)

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        return await asyncio.to_thread(self._request, method, path, body, token)

    def _request(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None


@pytest.fixture(scope="session")
def bridge(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    """hotline-bridge as a real process against the sandbox, as `make run` starts it."""
    workdir = tmp_path_factory.mktemp("bridge")
    log_path = workdir / "bridge.log"
    store_path = workdir / "handoffs.sqlite3"
    env = {
        **os.environ,
        "HOTLINE_BRIDGE_HTTP__PORT": str(BRIDGE_PORT),
        "HOTLINE_BRIDGE_HTTP__PUBLIC_URL": f"http://127.0.0.1:{BRIDGE_PORT}",
        "HOTLINE_BRIDGE_BRIDGE__STORE_PATH": str(store_path),
        "HOTLINE_BRIDGE_BRIDGE__RING_TIMEOUT_S": str(RING_TIMEOUT_S),
        "HOTLINE_BRIDGE_LOG_FORMAT": "json",
        "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotline_bridge", "serve", "--config", str(DEFAULT_TOPOLOGY)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    rb = RunningBridge(
        f"http://127.0.0.1:{BRIDGE_PORT}", log_path, store_path, sandbox.topology, proc
    )
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"bridge exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            status, _ = rb._request("GET", "/healthz", None, None)
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"bridge not healthy after 20 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    try:
        yield rb
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Parties:
    """SIPp peers for one test: the citizen, both agents and the partner."""

    workdir: Path
    topology: dict[str, Any]
    procs: list[SippProcess]

    async def agents(self) -> dict[str, SippProcess]:
        out = {}
        for agent in self.topology["agents"]:
            p = SippProcess(
                "agent_uas.xml",
                port=agent["sip_port"],
                workdir=self.workdir,
                name=f"agent{agent['id']}",
            )
            self.procs.append(await p.start())
            out[agent["id"]] = p
        return out

    async def partner(self, scenario: str = "partner_uas.xml", **variables: object) -> SippProcess:
        target = self.topology["targets"]["110"]
        p = SippProcess(
            scenario,
            port=target["sip_port"],
            workdir=self.workdir,
            name="partner110",
            variables=variables or None,
        )
        self.procs.append(await p.start())
        return p

    async def citizen(self, number: str, hold_ms: int = 30_000) -> SippProcess:
        csv = self.workdir / f"citizen-{number}.csv"
        csv.write_text(f"SEQUENTIAL\n{number};\n")
        pbx = self.topology["pbx"]
        p = SippProcess(
            "citizen_uac.xml",
            port=self.topology["citizens"]["sip_port"],
            workdir=self.workdir,
            name=f"citizen-{number}",
            remote=f"{pbx['sip_host']}:{pbx['sip_port']}",
            service=self.topology["citizens"]["dial_number"],
            calls=1,
            inf=csv,
            extra_args=["-recv_timeout", str(hold_ms)],
        )
        self.procs.append(await p.start(settle=0))
        return p


@pytest.fixture
async def parties(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Parties]:
    p = Parties(tmp_path, sandbox.topology, [])
    try:
        yield p
    finally:
        await stop_all(*p.procs)
