"""300 slow clients hold connections to the real bridge: another agent's carry key still works.

The slow clients come from three loopback addresses (100 each, under the per-peer cap), send half
a request's headers and stop, as a slowloris attack or a hung softphone would. While they hold
their sockets, the agent with a live citizen call presses carry-transfer and the citizen reaches
the 110 desk with the number checked in the INVITE (partner_uas.xml).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from lab.bridge import RunningBridge

from .conftest import Parties

pytestmark = pytest.mark.pbx

SLOW = 300
SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


async def test_carry_key_answers_while_300_slow_clients_hold_connections(
    bridge: RunningBridge, parties: Parties
) -> None:
    number = "13700137011"
    await parties.agents()
    partner = await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()
    host, port = bridge.base_url.removeprefix("http://").split(":")

    held = []
    for i in range(SLOW):
        reader, writer = await asyncio.open_connection(
            host, int(port), local_addr=(SOURCES[i % len(SOURCES)], 0)
        )
        writer.write(b"POST /v1/agents/1002/carry-transfer HTTP/1.1\r\nHost: bridge\r\n")
        held.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in held))

    started = time.monotonic()
    status, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, bridge.token(agent_id)
    )
    answered_s = time.monotonic() - started
    assert status == 202, body
    await bridge.wait_state(
        f"/v1/transfers/{body['transfer_id']}", bridge.token(agent_id), {"answered"}
    )
    # Every slow client was admitted and still holds its socket: they did not simply bounce.
    still_open = sum(not r.at_eof() for r, _ in held)
    _, metrics = await bridge.request("GET", "/metrics")
    open_line = next(
        line for line in metrics.splitlines() if line.startswith("hotline_http_connections ")
    )
    assert float(open_line.split()[1]) >= SLOW
    assert still_open == SLOW
    print(f"carry key answered in {answered_s * 1000:.0f} ms with {SLOW} slow clients held")
    (invite,) = partner.snapshot().received("INVITE")
    assert f"<sip:{number}@" in invite.header("From")
    assert f"<sip:{number}@" in invite.header("P-Asserted-Identity")
    for _, w in held:
        w.close()
