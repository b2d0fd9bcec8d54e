"""Mounts the partner link: the signed receiver ``POST /v1/partner/handoffs`` and the outbox
pusher (returned, for the runtime to start and stop; None when no partner is configured)."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.partners import api
from hotline_bridge.partners.link import PUSH_PATH, PartnerLink


def install(app: web.Application, deps: Deps) -> PartnerLink | None:
    partner = deps.settings.partner
    if partner is None:
        return None
    app[api.RECEIVER] = api.Receiver(partner, deps.store)
    app.router.add_post(PUSH_PATH, api.receive_push)
    return PartnerLink(partner, deps.store)
