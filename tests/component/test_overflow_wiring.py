"""Overflow to remote seats, wired into the bridge's real app (``runtime.app.build``, AMI never
started): ``GET /v1/overflow`` answers supervisors only; with AMI down every look at the queue is
a failed poll (counted on ``/metrics``), nothing switches and nothing is sent to the PBX; with
``[overflow]`` disabled the route says so and no poll runs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lab.sandbox import REPO, bridge_settings

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.runtime.app import build

TOPOLOGY = REPO / "asterisk" / "two-site" / "12345.toml"
OVERFLOW = {
    "enabled": True,
    "dial": "PJSIP/12345@remote-seats",
    "start_waiting": 2,
    "stop_waiting": 0,
    "poll_interval_s": 0.2,
    "lease_s": 1,
}


@pytest.fixture
async def client_for(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[TestClient[Any, Any], SqliteHandoffStore]] = []

    async def make(overflow: dict[str, Any] | None) -> TestClient[Any, Any]:
        overrides = {} if overflow is None else {"overflow": overflow}
        settings = bridge_settings(TOPOLOGY, **overrides)
        store = SqliteHandoffStore(tmp_path / f"h{len(opened)}.sqlite3")
        recorder = StoreRecorder(
            store,
            load_catalog(),
            site=Platform(settings.bridge.site),
            public_url=settings.http.public_url,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(build(settings, recorder).app))
        await client.start_server()
        opened.append((client, store))
        return client

    yield make
    for client, store in opened:
        await client.close()
        store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SUPERVISOR = bearer("two-site-token-12345-supervisor-1")
AGENT = bearer("two-site-token-12345-agent-1001")


async def test_the_status_is_for_supervisors_and_a_dead_ami_link_is_failed_polls(
    client_for: Callable[..., Any],
) -> None:
    client = await client_for(OVERFLOW)
    assert (await client.get("/v1/overflow")).status == 401
    assert (await client.get("/v1/overflow", headers=AGENT)).status == 403

    body: dict[str, Any] = {}
    for _ in range(100):  # the first look runs at start, then every 0.2 s
        resp = await client.get("/v1/overflow", headers=SUPERVISOR)
        assert resp.status == 200
        body = await resp.json()
        if body["polls_failed"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert body["enabled"] is True and body["queue"] == "hotline-12345"
    assert body["polls_failed"] >= 2
    assert body["active"] is False and body["last_sample"] is None and body["lease_until"] is None

    text = await (await client.get("/metrics")).text()
    failed = re.search(r"^hotline_overflow_polls_failed_total (\S+)$", text, re.M)
    assert failed and float(failed.group(1)) >= 2
    assert re.search(r"^hotline_overflow_active 0\.0$", text, re.M)


async def test_disabled_overflow_says_so_and_never_polls(client_for: Callable[..., Any]) -> None:
    client = await client_for(None)  # the topology's [overflow]: enabled = false
    resp = await client.get("/v1/overflow", headers=SUPERVISOR)
    assert resp.status == 200
    assert await resp.json() == {"enabled": False, "active": False}
    await asyncio.sleep(0.3)
    text = await (await client.get("/metrics")).text()
    assert re.search(r"^hotline_overflow_polls_failed_total 0\.0$", text, re.M)
