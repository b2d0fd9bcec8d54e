"""A record the API answered 201 for survives ``kill -9`` of the service at that very moment.

A child process serves only the handoff API over the SQLite store on a free loopback port. The
test posts records and SIGKILLs the child the instant the last 201 arrives (no shutdown, no
checkpoint, no close), then reopens the store file and finds every acknowledged record.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from hotline_bridge.handoffs.store import HandoffFilter, PageRequest, SqliteHandoffStore

TOKEN = "crash-test-token-agent-1001"

CHILD = f"""
import asyncio, sys
from pathlib import Path
from aiohttp import web
from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.config.settings import DutyLineSettings
from hotline_bridge.handoffs.api import HANDOFFS, routes
from hotline_bridge.workorders import api as wo
from hotline_bridge.workorders.service import ReminderService, WorkOrderService
from hotline_bridge.handoffs.service import HandoffService
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.core.principal import Principal
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares

async def main():
    store = SqliteHandoffStore(Path(sys.argv[1]))
    auth = TokenAuth([({TOKEN!r}, Principal("agent-1001", "agent", "1001"))])
    app = web.Application(middlewares=make_middlewares(auth))
    app[MAX_BODY] = 64 * 1024
    records = app[HANDOFFS] = HandoffService(
        store, load_catalog(), site=Platform.HOTLINE_12345, target="110"
    )
    reminders = ReminderService(
        DutyLineSettings(), caller_id="12345", store=store, record_url=str, submit=list
    )
    app[wo.WORK_ORDERS] = WorkOrderService(
        records, reminders, records.catalog, site=Platform.HOTLINE_12345
    )
    app.router.add_routes([*routes(), *wo.routes()])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Child:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}/v1/work-orders"

    @classmethod
    async def start(cls, db: Path) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(db), stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line.strip().isdigit(), f"child did not start: {line!r}"
        return cls(proc, int(line))

    async def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL


async def post(session: aiohttp.ClientSession, url: str, n: int) -> str:
    body: dict[str, Any] = {
        "category": "police.criminal",
        "citizen_number": "13800138000",
        "jurisdiction": "gucheng",
        "narrative": f"第{n}条:崩溃测试",
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        data = await resp.json()
        return str(data["id"])


async def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "store" / "handoffs.sqlite3"
    acknowledged: dict[str, int] = {}
    n = 0
    async with aiohttp.ClientSession() as session:
        for mode in ("one", "sequential", "concurrent", "sequential"):
            child = await Child.start(db)
            try:
                if mode == "one":
                    batch = [n]
                    ids = [await post(session, child.url, n)]
                elif mode == "sequential":
                    batch = list(range(n, n + 20))
                    ids = [await post(session, child.url, i) for i in batch]
                else:
                    batch = list(range(n, n + 20))
                    ids = list(await asyncio.gather(*(post(session, child.url, i) for i in batch)))
            finally:
                # The instant the last 201 is in: no graceful anything.
                await child.kill_9()
            acknowledged.update(zip(ids, batch, strict=True))
            n += len(batch)

    store = SqliteHandoffStore(db)
    try:
        for handoff_id, i in acknowledged.items():
            record = store.get(handoff_id)
            assert record is not None, f"record {i} ({handoff_id}) lost after kill -9"
            assert record.snapshot.content.narrative == f"第{i}条:崩溃测试"
            assert record.snapshot.citizen.number == "13800138000"
        listed = store.list(HandoffFilter(), PageRequest(limit=200)).items
        assert {r.id for r in listed} == set(acknowledged)
        assert len(acknowledged) == 61
        # The outbox rows committed with them survived too.
        assert {o.handoff_id for o in store.outbox_pending(200)} == set(acknowledged)
    finally:
        store.close()
