"""Several PBXes, several replicas (issue 14 §2): the cluster sandbox's 3 PBXes and 3 bridge
replicas on PostgreSQL. Each PBX is owned by its preferred replica.

- Calls on pbx-1 and pbx-2 at once have Uniqueids of their own PBX (``pbx-1-<epoch>.<seq>``,
  ``pbx-2-...``: each PBX's asterisk.conf systemname), and each got CALL_JURISDICTION from the
  entry hook of its PBX's owner (a on pbx-1's FastAGI port, b on pbx-2's); the carry key pressed
  through c by the pbx-2 call's id is forwarded to b and carries the citizen to 110.
- A hotkey for a call on pbx-2 pressed through replica a is forwarded to b (its owner) and
  carries the citizen to 110; its transfer answers through replica c too. Then replica c, owner
  of pbx-3, is kill -9ed with a transfer ringing at pbx-3's 110 desk: a survivor takes pbx-3
  over, restores the transfer from the store and settles it answered, the citizen still talking
  to 110; the next citizen on pbx-3 gets its entry hook from the new owner."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.calls import agent_uas, citizen_uac, hang_up_leftovers, partner_uas
from lab.cluster import Cluster, health, load_cluster, start_pbxes, start_replica, wait_owned
from lab.sandbox import Sandbox
from lab.sipp import SippProcess, stop_all

from tests.pbx.test_carry_transfer import channels

pytestmark = pytest.mark.pbx


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, list[Sandbox]]]:
    c = load_cluster()
    pbxes = start_pbxes(c)
    try:
        yield c, pbxes
    finally:
        for pbx in pbxes:
            pbx.stop()


@pytest.fixture
def replicas(
    cluster: tuple[Cluster, list[Sandbox]], pg_dsn: str, tmp_path: Path
) -> Iterator[dict[str, RunningBridge]]:
    c, _ = cluster
    started: dict[str, RunningBridge] = {}
    try:
        for name in c.replicas:
            started[name] = start_replica(c, name, pg_dsn, tmp_path / name)
        yield started
    finally:
        for rb in started.values():
            rb.stop()


@pytest.fixture
async def peers(
    cluster: tuple[Cluster, list[Sandbox]], tmp_path: Path
) -> AsyncIterator[list[SippProcess]]:
    _, pbxes = cluster
    procs: list[SippProcess] = []
    for pbx in pbxes:
        async with pbx.admin_ami() as ami:
            await hang_up_leftovers(ami)
    try:
        yield procs
    finally:
        for pbx in pbxes:
            async with pbx.admin_ami() as ami:
                await hang_up_leftovers(ami)
        await stop_all(*reversed(procs))


async def call_on(
    pbx: Sandbox, procs: list[SippProcess], workdir: Path, number: str, desk_delay_ms: int
) -> SippProcess:
    """A citizen call on ``pbx`` answered by one of its agents; its 110 desk started."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    for proc in agent_uas(pbx.topology, workdir):
        procs.append(await proc.start())
    desk = partner_uas(
        pbx.topology,
        workdir,
        variables={"citizen": number},
        extra_args=["-d", str(desk_delay_ms)],
    )
    procs.append(await desk.start())
    procs.append(await citizen_uac(pbx.topology, workdir, hold=30, number=number).start(settle=0))
    return desk


async def agent_on_call(rb: RunningBridge, agents: list[str], within: float = 10.0) -> str:
    """The agent (of ``agents``) whose call the bridge sees (asked through ``rb``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for agent in agents:
            status, body = await rb.request("GET", "/v1/calls", token=rb.token(agent))
            if status == 200 and body["calls"]:
                return agent
        await asyncio.sleep(0.05)
    raise AssertionError("no agent got the citizen's call")


async def citizen_channel(ami: AmiSession, within: float = 10.0) -> dict[str, Any]:
    """The citizen's channel once the entry hook has had its turn (it is with an agent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        citizen = (await channels(ami)).get("PJSIP/carrier")
        if citizen is not None and citizen.get("BridgeId"):
            return citizen
        await asyncio.sleep(0.05)
    raise AssertionError("the citizen never reached an agent")


async def entry_hook_said(ami: AmiSession, channel: str) -> dict[str, str]:
    """What the entry hook set on the citizen's channel ("unknown" both: nobody answered)."""
    out = {}
    for name in ("CALL_JURISDICTION", "CALL_NUISANCE"):
        answer = await ami.action("Getvar", Channel=channel, Variable=name)
        out[name] = str(answer.get("Value", ""))
    return out


def hooks_of(rb: RunningBridge, node: str) -> dict[str, Any]:
    """The FastAGI hooks of ``node`` as replica ``rb`` serves them (its /healthz)."""
    return ((health(rb).get("nodes") or {}).get(node) or {}).get("agi") or {}


async def test_each_pbxs_calls_have_their_own_ids_and_their_owners_entry_hook(
    cluster: tuple[Cluster, list[Sandbox]],
    replicas: dict[str, RunningBridge],
    peers: list[SippProcess],
    tmp_path: Path,
) -> None:
    c, pbxes = cluster
    owned = await asyncio.to_thread(wait_owned, c, replicas)
    assert owned == {"pbx-1": "a", "pbx-2": "b", "pbx-3": "c"}
    numbers = {"pbx-1": "13700137061", "pbx-2": "13700137062"}
    desks = {
        node: await call_on(pbx, peers, tmp_path / node, numbers[node], 0)
        for node, pbx in (("pbx-1", pbxes[0]), ("pbx-2", pbxes[1]))
    }
    ids = {}
    for node, pbx, owner in (("pbx-1", pbxes[0], "a"), ("pbx-2", pbxes[1], "b")):
        async with pbx.admin_ami() as ami:
            citizen = await citizen_channel(ami)
            said = await entry_hook_said(ami, citizen["Channel"])
        ids[node] = citizen["Uniqueid"]
        assert re.fullmatch(rf"{node}-[0-9]+\.[0-9]+", ids[node]), ids
        # The owner's hook answered: the trunk's jurisdiction, and a nuisance verdict.
        assert said == {"CALL_JURISDICTION": "gucheng", "CALL_NUISANCE": "no"}, (node, said)
        hooks = await asyncio.to_thread(hooks_of, replicas[owner], node)
        port = pbx.topology["agi"]["port"]
        assert hooks["state"] == "listening" and hooks["address"] == f"127.0.0.1:{port}", hooks
        assert hooks["answered"] >= 1, hooks
    assert ids["pbx-1"] != ids["pbx-2"]

    # The carry key by the pbx-2 call's id, through c (owner of neither): forwarded to b.
    r_c = replicas["c"]
    agent = await agent_on_call(r_c, ["2101", "2102"])
    token = r_c.token(agent)
    path = f"/v1/calls/{ids['pbx-2']}/carry-transfer"
    status, body = await r_c.request("POST", path, {"target": "110"}, token)
    assert status == 202 and body["call_id"] == ids["pbx-2"], body
    transfer_path = f"/v1/transfers/{body['transfer_id']}"
    transfer = await r_c.wait_state(
        transfer_path, token, {"answered", "lost", "returned", "failed"}
    )
    assert transfer["state"] == "answered", transfer
    (invite,) = desks["pbx-2"].snapshot().received("INVITE")
    assert f"<sip:{numbers['pbx-2']}@" in invite.header("P-Asserted-Identity")
    assert desks["pbx-1"].snapshot().received("INVITE") == []


async def test_a_hotkey_on_any_replica_reaches_the_owner_and_a_dead_owners_pbx_is_taken_over(
    cluster: tuple[Cluster, list[Sandbox]],
    replicas: dict[str, RunningBridge],
    peers: list[SippProcess],
    tmp_path: Path,
) -> None:
    c, pbxes = cluster
    owned = await asyncio.to_thread(wait_owned, c, replicas)
    assert owned == {"pbx-1": "a", "pbx-2": "b", "pbx-3": "c"}
    a, b, r_c = replicas["a"], replicas["b"], replicas["c"]

    # 1. A call on pbx-2 (owned by b); the hotkey pressed through a, forwarded to b.
    number = "13700137051"
    desk = await call_on(pbxes[1], peers, tmp_path / "pbx-2", number, 0)
    agent = await agent_on_call(a, ["2101", "2102"])
    token = a.token(agent)
    status, body = await a.request(
        "POST", f"/v1/agents/{agent}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    path = f"/v1/transfers/{body['transfer_id']}"
    transfer = await r_c.wait_state(path, token, {"answered", "lost", "returned", "failed"})
    assert transfer["state"] == "answered", transfer
    (invite,) = desk.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    assert health(a)["forwarded"] >= 1 and health(r_c)["forwarded"] >= 1
    assert health(b)["owns"] == ["pbx-2"]

    # 2. A call on pbx-3 (owned by c), its transfer ringing at 110 when c is kill -9ed.
    number = "13700137052"
    desk = await call_on(pbxes[2], peers, tmp_path / "pbx-3", number, 4000)
    agent = await agent_on_call(b, ["3101", "3102"])
    token = b.token(agent)
    status, body = await b.request(
        "POST", f"/v1/agents/{agent}/carry-transfer", {"target": "110"}, token
    )
    assert status == 202, body
    path = f"/v1/transfers/{body['transfer_id']}"
    await b.wait_state(path, token, {"dialing", "ringing"})
    assert r_c.proc is not None
    r_c.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert r_c.proc.wait(10) == -signal.SIGKILL

    def taken_over() -> str | None:
        for name, rb in (("a", a), ("b", b)):
            node = (health(rb).get("nodes") or {}).get("pbx-3") or {}
            if node.get("here") and node.get("ready"):
                return name
        return None

    while (new_owner := await asyncio.to_thread(taken_over)) is None:
        assert time.monotonic() - killed < 20, "nobody took pbx-3 over"
        await asyncio.sleep(0.05)
    takeover_s = time.monotonic() - killed
    print(f"\npbx-3 taken over by {new_owner} {takeover_s:.2f} s after kill -9 of c")

    transfer = await a.wait_state(path, token, {"answered", "lost", "returned"}, within=20)
    assert transfer["state"] == "answered", transfer
    async with pbxes[2].admin_ami() as ami:
        chans: dict[str, Any] = await channels(ami)
    assert chans["PJSIP/carrier"]["CallerIDNum"] == number
    assert chans["PJSIP/carrier"]["BridgeId"] == chans["PJSIP/partner-110"]["BridgeId"]
    assert len(desk.snapshot().received("INVITE")) == 1
    logs = (replicas[new_owner].log_path).read_text()
    assert "carry transfer restored" in logs
    # The other PBXes stayed with their owners.
    assert health(a)["owns"][:1] == ["pbx-1"] and "pbx-2" in health(b)["owns"]

    # 3. The next citizen on pbx-3 gets its entry hook from the new owner (pbx-3's port).
    async with pbxes[2].admin_ami() as ami:
        await hang_up_leftovers(ami)
    citizen = next(p for p in peers if p.name == "citizen-13700137052")
    await citizen.stop(timeout=10)  # ended by the hang-up: its port is free again
    before = (await asyncio.to_thread(hooks_of, replicas[new_owner], "pbx-3")).get("answered", 0)
    proc = citizen_uac(pbxes[2].topology, tmp_path / "pbx-3", hold=30, number="13700137053")
    peers.append(await proc.start(settle=0))
    async with pbxes[2].admin_ami() as ami:
        said = await entry_hook_said(ami, (await citizen_channel(ami))["Channel"])
    assert said == {"CALL_JURISDICTION": "gucheng", "CALL_NUISANCE": "no"}, said
    hooks = await asyncio.to_thread(hooks_of, replicas[new_owner], "pbx-3")
    assert hooks["state"] == "listening" and hooks["answered"] > before, hooks
