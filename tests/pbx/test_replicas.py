"""Two bridge replicas for one PBX on a shared store (issue 14 §2): the active one is kill -9ed
with a carry transfer in flight; the standby, which forwarded the hotkey to it, takes the PBX's
lease, restores the transfer from the store and settles it against Asterisk's own state; the
citizen keeps talking to 110; the old replica comes back as the standby and forwards. Once on
the SQLite store's file (one host), once on PostgreSQL (the lease and the records in the
database, as replicas on several hosts share them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.bridge import RunningBridge, start_bridge
from lab.sandbox import Sandbox

from .conftest import Parties
from .replicas import assert_talking_to_110, kill_until, press_carry, running

pytestmark = pytest.mark.pbx

PORTS = {"a": 18371, "b": 18372}
TTL_S = 1.5


def replica(
    sandbox: Sandbox, workdir: Path, store: Path, name: str, dsn: str | None
) -> RunningBridge:
    port = PORTS[name]
    return start_bridge(
        sandbox.topology_path,
        sandbox.topology,
        workdir / name,
        port=port,
        overrides={
            "HOTLINE_BRIDGE_AGI__ENABLED": "false",  # the session bridge has the AGI port
            "HOTLINE_BRIDGE_BRIDGE__STORE_PATH": str(store),
            "HOTLINE_BRIDGE_CLUSTER__NODE": "pbx-1",
            "HOTLINE_BRIDGE_CLUSTER__REPLICA": name,
            "HOTLINE_BRIDGE_CLUSTER__URL": f"http://127.0.0.1:{port}",
            "HOTLINE_BRIDGE_CLUSTER__LEASE_TTL_S": str(TTL_S),
            "HOTLINE_BRIDGE_LOG_LEVEL": "debug",
            **({"HOTLINE_BRIDGE_STORE__DSN": dsn} if dsn else {}),
        },
    )


@pytest.fixture(params=["sqlite", "postgres"])
def replicas(
    request: pytest.FixtureRequest, sandbox: Sandbox, tmp_path: Path
) -> Iterator[dict[str, RunningBridge]]:
    store = tmp_path / "shared.sqlite3"
    dsn = str(request.getfixturevalue("pg_dsn")) if request.param == "postgres" else None
    # a first: it takes the lease.
    with running(lambda name: replica(sandbox, tmp_path, store, name, dsn), "ab") as started:
        yield started


async def health(rb: RunningBridge) -> dict[str, Any]:
    try:
        status, body = await rb.request("GET", "/healthz")
    except OSError:  # the moment between the standby's listener and the service's
        return {"http": 0}
    return {"http": status, **(body if isinstance(body, dict) else {})}


async def test_the_standby_takes_over_a_killed_active_and_settles_its_transfer(
    replicas: dict[str, RunningBridge], parties: Parties, admin_ami: AmiSession
) -> None:
    a, b = replicas["a"], replicas["b"]
    assert (await health(b))["status"] == "standby"
    assert (await health(b))["active"] == a.base_url
    number = "13700137041"
    desk = await parties.call(number, answer_after_ms=5000)
    agent_id, _call = await a.wait_for_call()
    token = a.token(agent_id)

    # The hotkey lands on the standby, which forwards it to the active replica.
    path = await press_carry(b, agent_id, token)
    await b.wait_state(path, token, {"dialing", "ringing"})

    async def active() -> bool | None:
        h = await health(b)
        return (h["http"] == 200 and h.get("status") != "standby") or None

    _, takeover_s = await kill_until(a, active)
    print(f"\nreplica takeover: {takeover_s:.2f} s after kill -9 (lease ttl {TTL_S} s)")

    transfer = await b.wait_state(path, token, {"answered", "lost", "returned"}, within=20)
    assert transfer["state"] == "answered", transfer
    await assert_talking_to_110(admin_ami, desk, number)
    assert "carry transfer restored" in b.log_path.read_text()

    # The old active comes back as the standby, and forwards to the new one.
    await asyncio.to_thread(a.restart)
    h = await health(a)
    assert (h["status"], h["active"]) == ("standby", b.base_url)
    status, seen = await a.request("GET", path, token=token)
    assert status == 200 and seen["state"] == "answered"
