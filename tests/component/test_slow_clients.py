"""Slow and greedy clients at the real listener: the guard's caps, the idle and body timeouts.

A real aiohttp listener on loopback (the bridge's app, sandbox settings, a fake AMI) behind
``GuardedSite``; clients are raw sockets from several loopback source addresses, so one peer's
connections can be told from another's as they would be across a centre's network.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from lab.sandbox import bridge_settings

from hotline_bridge.runtime.app import api_runner, make_app
from hotline_bridge.web.guard import ConnectionLimits, ConnectionTable, GuardedSite
from hotline_bridge.web.http import BODY_TIMEOUT, read_body
from tests.component.test_hotkey_api import FakeAmi

TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
IDLE_S = 1.0


@dataclass
class Listener:
    port: int
    table: ConnectionTable


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    settings = bridge_settings(TOPOLOGY)
    app = make_app(settings, FakeAmi())  # type: ignore[arg-type]
    app.router.add_post("/echo", _echo)
    app[BODY_TIMEOUT] = IDLE_S
    runner = api_runner(app, settings.http.model_copy(update={"idle_timeout_s": IDLE_S}))
    await runner.setup()
    table = ConnectionTable(ConnectionLimits(max_total=40, max_per_peer=8))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = GuardedSite(runner, "127.0.0.1", port, table)
    await site.start()
    try:
        yield Listener(port, table)
    finally:
        await runner.cleanup()


async def _echo(request: web.Request) -> web.Response:
    """A route reading its body the way every API route does (errors mapped by the middleware)."""
    return web.json_response({"bytes": len(await read_body(request))})


async def connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def get_openapi(port: int, source: str = "127.0.0.1") -> int:
    reader, writer = await connect(port, source)
    writer.write(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(head.split()[1])


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sent before closing; fails if it is still open after ``within``."""
    return await asyncio.wait_for(reader.read(), within)


async def test_one_peer_beyond_its_cap_gets_503_and_others_are_served(listener: Listener) -> None:
    held = [await connect(listener.port, "127.0.0.2") for _ in range(8)]
    for _, w in held:
        w.write(b"GET /v1/openapi.json HTTP/1.1\r\nHost: t\r\n")  # headers never finished
    reader, _ = await connect(listener.port, "127.0.0.2")
    answer = await closed_by_server(reader, 5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert json.loads(body)["error"]["status"] == 503
    assert listener.table.refused == 1
    # Another peer (another agent's PC) is not affected by the greedy one.
    assert await get_openapi(listener.port, "127.0.0.1") == 200
    for _, w in held:
        w.close()


async def test_total_cap_then_slots_come_back_when_slow_clients_time_out(
    listener: Listener,
) -> None:
    held = []
    for i in range(40):
        r, w = await connect(listener.port, f"127.0.1.{i % 5 + 1}")
        w.write(b"POST /v1/agents/1001/carry-transfer HTTP/1.1\r\nHost: t\r\n")
        held.append((r, w))
    await asyncio.sleep(0.1)
    assert listener.table.total == 40
    reader, _ = await connect(listener.port, "127.0.0.9")
    assert (await closed_by_server(reader, 5)).startswith(b"HTTP/1.1 503")
    # The slow clients never finish their headers: the idle timeout closes each of them...
    for r, _ in held:
        await closed_by_server(r, IDLE_S * 10)
    # ...and the listener serves again.
    assert await get_openapi(listener.port, "127.0.0.9") == 200
    assert listener.table.total <= 1


async def test_a_body_that_trickles_in_is_answered_408(listener: Listener) -> None:
    reader, writer = await connect(listener.port, "127.0.0.3")
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    answer = await closed_by_server(reader, IDLE_S * 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"408"
    assert "did not arrive" in json.loads(body)["error"]["reason"]
    writer.close()
