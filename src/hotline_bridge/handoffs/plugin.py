"""Mounts the handoff record: ``/v1/handoffs`` (reads, events, listing) and the agent's screen
data of a handed-over call (``/v1/agents/{agent}/current-handoff``)."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.handoffs import api, screen
from hotline_bridge.handoffs.recorder import StoreRecorder
from hotline_bridge.handoffs.service import HandoffService


def install(
    app: web.Application,
    recorder: StoreRecorder,
    *,
    partner: str,
    by_reference: frozenset[str] = frozenset(),
    line_readers: dict[str, frozenset[str]] | None = None,
) -> HandoffService:
    """``partner``: the partner platform's target key (``110`` at 12345, ``12345`` at 110);
    ``by_reference``: the plain-line targets, whose records are never pushed; ``line_readers``:
    each plain line's API client and the targets it reads."""
    service = app[api.HANDOFFS] = recorder.service(partner)
    app[api.WRITES] = recorder
    service.by_reference = by_reference
    service.line_readers = line_readers or {}
    app.router.add_routes([*api.routes(), *screen.routes()])
    return service
