"""Mounts the dialplan's FastAGI hooks (entry, receive) on their own loopback listener."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.agi.hooks import AgiHooks
from hotline_bridge.agi.server import AgiServer
from hotline_bridge.deps import Deps

AGI = web.AppKey("agi", AgiServer)


def install(app: web.Application, deps: Deps) -> AgiServer | None:
    """The server (not yet listening: the runtime starts it), or None when disabled."""
    settings = deps.settings.agi
    if not settings.enabled:
        return None
    hooks = AgiHooks(
        settings,
        deps.store,
        deps.catalog,
        log_call=deps.recorder.log_call,
        read=deps.recorder.read,
    )
    timeout = settings.request_timeout_s
    server = app[AGI] = AgiServer(
        settings.host,
        settings.port,
        hooks.routes(),
        command_timeout_s=timeout,
        env_timeout_s=timeout,
        key=settings.key.get_secret_value() if settings.key else None,
    )
    return server
