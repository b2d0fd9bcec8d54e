"""The 110 platform's receiver for the fault drill: the product's own signed receiver over its
own store, on a loopback port the drill can take down (unreachable) and bring back.

Every push is tallied by what it delivered (a record, or one event of a record), so the drill can
tell a push accepted twice as new (doubled) from a retry the receiver recognised (duplicate).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from hotline_bridge.config.settings import PartnerSettings
from hotline_bridge.handoffs.store import SqliteHandoffStore
from hotline_bridge.partners import api as partners_api
from hotline_bridge.partners.link import PUSH_PATH
from hotline_bridge.web.http import MAX_BODY

KEY_12345, KEY_110 = "k-12345-to-110", "k-110-to-12345"
SECRET_12345, SECRET_110 = "fault-drill-12345-" + "s" * 24, "fault-drill-110-" + "t" * 24


def bridge_env(port: int) -> dict[str, str]:
    """The 12345 bridge's [partner] settings (as environment overrides) for this desk."""
    return {
        "HOTLINE_BRIDGE_PARTNER__SITE": "110",
        "HOTLINE_BRIDGE_PARTNER__BASE_URL": f"http://127.0.0.1:{port}",
        "HOTLINE_BRIDGE_PARTNER__KEY_ID": KEY_12345,
        "HOTLINE_BRIDGE_PARTNER__SECRET": SECRET_12345,
        "HOTLINE_BRIDGE_PARTNER__ACCEPT_KEYS": json.dumps({KEY_110: SECRET_110}),
        # Back within a couple of seconds of the desk's return (the outbox's backoff cap).
        "HOTLINE_BRIDGE_PARTNER__RETRY_MAX_S": "2",
    }


class PartnerDesk:
    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.store = SqliteHandoffStore(workdir / "partner-110.sqlite3")
        settings = PartnerSettings(
            site="12345",
            base_url="http://127.0.0.1:9",  # this desk pushes nothing back in the drill
            key_id=KEY_110,
            secret=SECRET_110,
            accept_keys={KEY_12345: SECRET_12345},
        )
        self.receiver = partners_api.Receiver(settings, self.store)
        self.new: Counter[str] = Counter()  # item -> times accepted as new (201)
        self.duplicates: Counter[str] = Counter()  # item -> times recognised as a retry
        self.refused: Counter[int] = Counter()
        self.down_refusals = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def _push(self, request: web.Request) -> web.Response:
        raw = await request.read()
        status, body = self.receiver.receive(raw, dict(request.headers))
        item = _item(raw)
        if status == 201:
            self.new[item] += 1
        elif status == 200 and body.get("duplicate"):
            self.duplicates[item] += 1
        else:
            self.refused[status] += 1
        if status >= 400:
            return web.json_response({"error": {"status": status, **body}}, status=status)
        return web.json_response(body, status=status)

    async def up(self) -> None:
        app = web.Application()
        app[MAX_BODY] = 256 * 1024
        app.router.add_post(PUSH_PATH, self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def down(self) -> None:
        """Unreachable: the port is closed (connection refused), as when the link is down."""
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    async def close(self) -> None:
        await self.down()
        self.store.close()

    def doubled(self) -> dict[str, int]:
        return {item: n for item, n in self.new.items() if n > 1}

    def received_records(self) -> set[str]:
        return {i.split(" ", 1)[1] for i in self.new if i.startswith("handoff.created ")}


def _item(raw: bytes) -> str:
    try:
        push: dict[str, Any] = json.loads(raw)
    except ValueError:
        return "?"
    kind, hid = push.get("kind", "?"), push.get("handoff_id", "?")
    if kind == "handoff.event":
        seq = (push.get("payload") or {}).get("event", {}).get("seq", "?")
        return f"{kind} {hid}#{seq}"
    return f"{kind} {hid}"
