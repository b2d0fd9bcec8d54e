"""The follow-up resource: ``GET /v1/follow-ups``, closed matters still owed a 回访 (agents call
them and record the rating with ``POST /v1/handoffs/{id}/events`` kind ``follow_up``; those the
bridge calls itself say ``automated``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from hotline_bridge.followups.service import FollowUpService
from hotline_bridge.handoffs.store import HandoffStore
from hotline_bridge.web.http import json_ok, require
from hotline_bridge.web.openapi import described

T = TypeVar("T")


class Reader:
    """Reads in a worker thread through a store connection of its own (scans of a month of
    records must not hold up the event loop, whose connection stays on the loop)."""

    def __init__(self, open_store: Callable[[], HandoffStore]) -> None:
        self._open = open_store

    async def read(self, fn: Callable[[HandoffStore], T]) -> T:
        def work() -> T:
            store = self._open()
            try:
                return fn(store)
            finally:
                store.close()

        return await asyncio.to_thread(work)


FOLLOW_UPS = web.AppKey("follow_ups", FollowUpService)
READER = web.AppKey("follow_up_reader", Reader)


@described("Closed matters still owed a follow-up call (回访)", errors=(401, 403))
async def follow_ups(request: web.Request) -> web.Response:
    principal = require(request, "agent", "supervisor")
    service = request.app[FOLLOW_UPS]
    items = await request.app[READER].read(lambda store: service.tasks(store, principal))
    return json_ok({"items": items})


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/follow-ups", follow_ups)]
