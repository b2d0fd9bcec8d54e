"""Mounts the phone keys: their service over the transfer and three-way services, and the
``key`` FastAGI route the dialplan's ``[hotline-keys]`` calls."""

from __future__ import annotations

import structlog
from aiohttp import web

from hotline_bridge.agi.server import AgiServer, Route
from hotline_bridge.conferences.service import ConferenceService
from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.hotkey import CATCH_UP_S
from hotline_bridge.keys.hook import SOUND_BUDGET_S, KeyHook
from hotline_bridge.keys.service import PhoneKeyService
from hotline_bridge.transfers.service import TransferService
from hotline_bridge.web.http import LIMITER

PHONE_KEYS = web.AppKey("phone_keys", PhoneKeyService)
log = structlog.get_logger(__name__)


def install(
    app: web.Application,
    deps: Deps,
    transfers: TransferService,
    conferences: ConferenceService,
    agi: AgiServer | None,
) -> PhoneKeyService | None:
    """The service, or None without a key table or without the FastAGI hooks."""
    if not deps.settings.phone_keys:
        return None
    if agi is None:
        # [agi] switched off (e.g. as a kill switch): the keys reach nobody; say so once.
        log.warning("phone keys configured but [agi] is disabled: keys on phones do nothing")
        return None
    service = app[PHONE_KEYS] = PhoneKeyService(
        deps.settings.phone_keys,
        deps.calls,
        transfers,
        conferences,
        deps.recorder,
        limiter=app.get(LIMITER),
    )
    timeout = deps.settings.agi.request_timeout_s + CATCH_UP_S + SOUND_BUDGET_S
    agi.add_route("key", Route(KeyHook(service).key, timeout))
    return service
