"""Mounts the agent console: its page, its files and its session routes."""

from __future__ import annotations

from aiohttp import web

from hotline_bridge.console import api
from hotline_bridge.deps import Deps


def install(app: web.Application, deps: Deps) -> None:
    app[api.SETTINGS] = deps.settings
    app[api.DIRECTORY] = deps.directory
    app.router.add_routes(api.routes())
