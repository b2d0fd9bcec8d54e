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
  to 110; the next citizen on pbx-3 gets its entry hook from the new owner.
- Failback: replica a (pbx-1's preferred) is kill -9ed with a citizen talking to an agent on
  pbx-1; a survivor takes pbx-1; a restarts and, after the hold-down, the survivor hands pbx-1
  back; the citizen still talks to the agent and the carry key through the survivor takes them
  to 110; the next citizen on pbx-1 gets its entry hook from a, and the carry key through the
  third replica takes them to 110, with their own number each time."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge
from lab.calls import hang_up_leftovers
from lab.cluster import Cluster, health, load_cluster, start_pbxes, start_replica, wait_placed
from lab.sandbox import Sandbox

from tests.pbx.test_carry_transfer import channels

from .conftest import Parties, idle
from .replicas import (
    assert_number_at_desk,
    assert_talking_to_110,
    kill_until,
    press_carry,
    running,
)

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
    """Replicas a, b and c, each owning its preferred PBX (pbx-1, pbx-2, pbx-3), ready. One that
    started late may find its PBX taken by another (claimed after a grace); failback hands it
    back after the hold-down (3 lease periods)."""
    c, _ = cluster
    with running(lambda name: start_replica(c, name, pg_dsn, tmp_path / name), c.replicas) as rs:
        assert wait_placed(c, rs) == {"pbx-1": "a", "pbx-2": "b", "pbx-3": "c"}
        yield rs


@pytest.fixture
async def parties(
    cluster: tuple[Cluster, list[Sandbox]], tmp_path: Path
) -> AsyncIterator[dict[str, Parties]]:
    """Each PBX's SIPp parties (its own agents, 110 desk and citizens), by node; every PBX
    idle before the test and left idle after it."""
    c, pbxes = cluster
    async with AsyncExitStack() as stack:
        out = {}
        for node, pbx in zip(c.nodes, pbxes, strict=True):
            ami = await stack.enter_async_context(pbx.admin_ami())
            workdir = tmp_path / node.name
            await asyncio.to_thread(workdir.mkdir)
            out[node.name] = await stack.enter_async_context(
                idle(ami, Parties(workdir, pbx.topology))
            )
        yield out


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
    parties: dict[str, Parties],
) -> None:
    _, pbxes = cluster
    numbers = {"pbx-1": "13700137061", "pbx-2": "13700137062"}
    desks = {node: await parties[node].call(number) for node, number in numbers.items()}
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
    assert_number_at_desk(desks["pbx-2"], numbers["pbx-2"])
    assert desks["pbx-1"].snapshot().received("INVITE") == []


async def test_a_hotkey_on_any_replica_reaches_the_owner_and_a_dead_owners_pbx_is_taken_over(
    cluster: tuple[Cluster, list[Sandbox]],
    replicas: dict[str, RunningBridge],
    parties: dict[str, Parties],
) -> None:
    _, pbxes = cluster
    a, b, r_c = replicas["a"], replicas["b"], replicas["c"]

    # 1. A call on pbx-2 (owned by b); the hotkey pressed through a, forwarded to b.
    number = "13700137051"
    desk = await parties["pbx-2"].call(number)
    agent = await agent_on_call(a, ["2101", "2102"])
    token = a.token(agent)
    path = await press_carry(a, agent, token)
    transfer = await r_c.wait_state(path, token, {"answered", "lost", "returned", "failed"})
    assert transfer["state"] == "answered", transfer
    assert_number_at_desk(desk, number)
    assert health(a)["forwarded"] >= 1 and health(r_c)["forwarded"] >= 1
    assert health(b)["owns"] == ["pbx-2"]

    # 2. A call on pbx-3 (owned by c), its transfer ringing at 110 when c is kill -9ed.
    number = "13700137052"
    desk = await parties["pbx-3"].call(number, answer_after_ms=4000)
    agent = await agent_on_call(b, ["3101", "3102"])
    token = b.token(agent)
    path = await press_carry(b, agent, token)
    await b.wait_state(path, token, {"dialing", "ringing"})

    def serving_pbx_3() -> str | None:
        for name, rb in (("a", a), ("b", b)):
            node = (health(rb).get("nodes") or {}).get("pbx-3") or {}
            if node.get("here") and node.get("ready"):
                return name
        return None

    async def taken_over() -> str | None:
        return await asyncio.to_thread(serving_pbx_3)

    new_owner, takeover_s = await kill_until(r_c, taken_over)
    print(f"\npbx-3 taken over by {new_owner} {takeover_s:.2f} s after kill -9 of c")

    transfer = await a.wait_state(path, token, {"answered", "lost", "returned"}, within=20)
    assert transfer["state"] == "answered", transfer
    async with pbxes[2].admin_ami() as ami:
        await assert_talking_to_110(ami, desk, number)
    logs = (replicas[new_owner].log_path).read_text()
    assert "carry transfer restored" in logs
    # The other PBXes stayed with their owners.
    assert health(a)["owns"][:1] == ["pbx-1"] and "pbx-2" in health(b)["owns"]

    # 3. The next citizen on pbx-3 gets its entry hook from the new owner (pbx-3's port).
    async with pbxes[2].admin_ami() as ami:
        await hang_up_leftovers(ami)
    citizen = next(p for p in parties["pbx-3"].procs if p.name == f"citizen-{number}")
    await citizen.stop(timeout=10)  # ended by the hang-up: its port is free again
    before = (await asyncio.to_thread(hooks_of, replicas[new_owner], "pbx-3")).get("answered", 0)
    await parties["pbx-3"].citizen("13700137053")
    async with pbxes[2].admin_ami() as ami:
        said = await entry_hook_said(ami, (await citizen_channel(ami))["Channel"])
    assert said == {"CALL_JURISDICTION": "gucheng", "CALL_NUISANCE": "no"}, said
    hooks = await asyncio.to_thread(hooks_of, replicas[new_owner], "pbx-3")
    assert hooks["state"] == "listening" and hooks["answered"] > before, hooks


async def test_a_pbx_goes_back_to_its_preferred_replica_when_it_returns(
    cluster: tuple[Cluster, list[Sandbox]],
    replicas: dict[str, RunningBridge],
    parties: dict[str, Parties],
    tmp_path: Path,
) -> None:
    c, pbxes = cluster
    a = replicas["a"]
    pbx_1 = pbxes[0]

    # 1. A citizen talking to an agent on pbx-1 (a's), no transfer: it lives through it all.
    number = "13700137071"
    desk = await parties["pbx-1"].call(number)
    async with pbx_1.admin_ami() as ami:
        talking = await citizen_channel(ami)

    # 2. a is kill -9ed: b or c serves pbx-1.
    def serving_pbx_1(among: tuple[str, ...]) -> str | None:
        for name in among:
            node = (health(replicas[name]).get("nodes") or {}).get("pbx-1") or {}
            if node.get("here") and node.get("ready"):
                return name
        return None

    async def taken_over() -> str | None:
        return await asyncio.to_thread(serving_pbx_1, ("b", "c"))

    survivor, takeover_s = await kill_until(a, taken_over)

    # 3. a comes back: once it has been alive (and the survivor the owner) 3 lease periods,
    #    the survivor hands pbx-1 back (nothing in flight on it) and a serves it again.
    await asyncio.to_thread(a.restart)
    restarted = time.monotonic()
    while await asyncio.to_thread(serving_pbx_1, ("a",)) is None:
        assert time.monotonic() - restarted < 20, (health(a), health(replicas[survivor]))
        await asyncio.sleep(0.1)
    handback_s = time.monotonic() - restarted
    print(
        f"\npbx-1 taken over by {survivor} {takeover_s:.2f} s after kill -9 of a; handed back "
        f"{handback_s:.2f} s after a restarted (settle {3 * c.lease_ttl_s} s)"
    )
    assert handback_s >= 3 * c.lease_ttl_s  # not before the hold-down
    assert "pbx-1" not in health(replicas[survivor])["owns"]
    assert "PBX handed back" in replicas[survivor].log_path.read_text()
    # The others see the new owner at their next look at the leases (every ttl/3; until then
    # they answer a hotkey for pbx-1 with 503 and Retry-After).
    for rb in replicas.values():
        while ((health(rb).get("nodes") or {}).get("pbx-1") or {}).get("owner") != "a":
            assert time.monotonic() - restarted < 25, health(rb)
            await asyncio.sleep(0.05)

    # 4. The citizen who was talking during the hand-back still is; a rebuilt the call and the
    #    carry key, pressed through the survivor, takes them to 110 with their number.
    async with pbx_1.admin_ami() as ami:
        still = await citizen_channel(ami)
    assert (still["Uniqueid"], still["BridgeId"]) == (talking["Uniqueid"], talking["BridgeId"])
    via = replicas[survivor]
    agent = await agent_on_call(a, ["1101", "1102"])
    token = via.token(agent)
    path = await press_carry(via, agent, token)
    transfer = await via.wait_state(path, token, {"answered", "lost", "returned", "failed"})
    assert transfer["state"] == "answered", transfer
    async with pbx_1.admin_ami() as ami:
        await assert_talking_to_110(ami, desk, number)
        await hang_up_leftovers(ami)
    for proc in parties["pbx-1"].procs:
        if proc.name in (f"citizen-{number}", "partner_uas"):
            await proc.stop(timeout=10)  # the desk and the citizen's port are free again

    # 5. A citizen placed after the hand-back gets its entry hook from a (pbx-1's port), and
    #    the carry key through c (or b) carries them to 110 with their number.
    number = "13700137072"
    async with (
        pbx_1.admin_ami() as ami,
        idle(ami, Parties(tmp_path / "after", pbx_1.topology)) as p,
    ):
        await asyncio.to_thread((tmp_path / "after").mkdir)
        desk = await p.partner(citizen=number)
        await p.citizen(number)
        said = await entry_hook_said(ami, (await citizen_channel(ami))["Channel"])
        assert said == {"CALL_JURISDICTION": "gucheng", "CALL_NUISANCE": "no"}, said
        hooks = await asyncio.to_thread(hooks_of, a, "pbx-1")
        assert hooks["state"] == "listening" and hooks["answered"] >= 1, hooks
        via = replicas["c" if survivor == "b" else "b"]
        agent = await agent_on_call(via, ["1101", "1102"])
        token = via.token(agent)
        path = await press_carry(via, agent, token)
        transfer = await a.wait_state(path, token, {"answered", "lost", "returned", "failed"})
        assert transfer["state"] == "answered", transfer
        await assert_talking_to_110(ami, desk, number)
