"""Fixtures for tests against the real sandbox PBX: a running bridge and SIPp parties."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge, start_bridge
from lab.calls import (
    agent_uas,
    citizen_uac,
    hang_up_leftovers,
    partner_uac,
    partner_uas,
)
from lab.sandbox import Sandbox
from lab.sipp import SippProcess, stop_all

BRIDGE_PORT = 18345  # not the topology's 8345, so a `make run` bridge can stay up meanwhile
RING_TIMEOUT_S = 4  # short, so no-answer tests stay quick


@pytest.fixture(scope="session")
def bridge(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    """hotline-bridge as a real process against the sandbox, as `make run` starts it."""
    rb = start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        tmp_path_factory.mktemp("bridge"),
        port=BRIDGE_PORT,
        overrides={
            "HOTLINE_BRIDGE_BRIDGE__RING_TIMEOUT_S": str(RING_TIMEOUT_S),
            "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
        },
    )
    try:
        yield rb
    finally:
        rb.stop()


@dataclass
class Parties:
    """SIPp peers for one test: citizens, both agents and the partner desk. All stopped after."""

    workdir: Path
    topology: dict[str, Any]
    procs: list[SippProcess] = field(default_factory=list)

    async def agents(self) -> dict[str, SippProcess]:
        started = {}
        for agent, proc in zip(
            self.topology["agents"], agent_uas(self.topology, self.workdir), strict=True
        ):
            self.procs.append(await proc.start())
            started[agent["id"]] = proc
        return started

    async def busy(self, agent: dict[str, Any]) -> SippProcess:
        """This agent's phone answers busy (486): the queue offers its calls to the others."""
        proc = SippProcess(
            "partner_busy_uas.xml",
            port=agent["sip_port"],
            local_ip=agent["sip_host"],
            workdir=self.workdir,
            name=f"{agent['endpoint']}-busy",
        )
        self.procs.append(await proc.start())
        return proc

    async def partner(
        self, scenario: str = "partner_uas.xml", *, answer_after_ms: int = 0, **variables: object
    ) -> SippProcess:
        """The 110 desk ([targets.110]); ``answer_after_ms``: it rings that long first."""
        proc = partner_uas(
            self.topology,
            self.workdir,
            scenario,
            variables=variables or None,
            extra_args=["-d", str(answer_after_ms)] if answer_after_ms else None,
        )
        self.procs.append(await proc.start())
        return proc

    async def call(self, number: str, *, answer_after_ms: int = 0) -> SippProcess:
        """A citizen (``number``) whose call the agents' phones answer, the 110 desk ready to
        take it (checking that number, ringing ``answer_after_ms`` first); the desk."""
        await self.agents()
        desk = await self.partner(answer_after_ms=answer_after_ms, citizen=number)
        await self.citizen(number)
        return desk

    async def duty_line(
        self, scenario: str = "partner_uas.xml", target: str = "duty-110", **variables: object
    ) -> SippProcess:
        """The 110 duty line of [targets.<target>] (its own port), under its own file names."""
        t = self.topology["targets"][target]
        proc = SippProcess(
            scenario,
            port=t["sip_port"],
            local_ip=t["sip_host"],
            workdir=self.workdir,
            name=f"{target}-{Path(scenario).stem}",
            variables=variables or None,
        )
        self.procs.append(await proc.start())
        return proc

    async def citizen(self, number: str, hold: float = 30) -> SippProcess:
        proc = citizen_uac(self.topology, self.workdir, hold=hold, number=number)
        self.procs.append(await proc.start(settle=0))
        return proc

    async def handed_over(
        self, handoffs: list[tuple[str, str]], hold: float = 30, rate: float | None = None
    ) -> SippProcess:
        """The partner platform handing calls TO this PBX: one per (citizen number,
        X-Handoff-Id), in order (partner_uac.xml, from the partner endpoint's address)."""
        proc = partner_uac(self.topology, self.workdir, handoffs, hold=hold, rate=rate)
        self.procs.append(await proc.start(settle=0))
        return proc


@asynccontextmanager
async def idle(ami: AmiSession, parties: Parties) -> AsyncIterator[Parties]:
    """``parties`` on a PBX idle before and left idle after: the PBX (``ami``, its admin) hangs
    up what is left, so every SIPp peer ends its calls with a proper BYE and exits cleanly."""
    await hang_up_leftovers(ami)
    try:
        yield parties
    finally:
        await hang_up_leftovers(ami)
        await stop_all(*reversed(parties.procs))


@pytest.fixture
async def parties(
    sandbox: Sandbox, admin_ami: AmiSession, tmp_path: Path
) -> AsyncIterator[Parties]:
    """Each test starts on an idle PBX and leaves it idle."""
    async with idle(admin_ami, Parties(tmp_path, sandbox.topology)) as p:
        yield p
