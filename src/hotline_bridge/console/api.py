"""The console's routes: the page and its files, and the login that swaps a token for a session.

``POST /v1/console/session`` takes the agent's id and token once and sets the session cookie
(see :mod:`hotline_bridge.web.sessions`); ``GET /v1/console/me`` says who is logged in and what
the page needs (targets, phone keys); ``DELETE`` logs out.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hotline_bridge.config.settings import Settings
from hotline_bridge.core.errors import NotFound, Unauthenticated
from hotline_bridge.directory.model import Directory
from hotline_bridge.web.http import (
    AUTH,
    LIMITER,
    SESSIONS,
    error_response,
    json_ok,
    read_model,
    require,
)
from hotline_bridge.web.limits import retry_after_header
from hotline_bridge.web.openapi import described
from hotline_bridge.web.sessions import COOKIE

SETTINGS = web.AppKey("console_settings", Settings)
DIRECTORY = web.AppKey("console_directory", Directory)

# The page's own files, and nothing else, by name.
FILES = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
# Only the bridge's own scripts, styles and API; no framing (clickjacking), no referrer.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _file(name: str) -> bytes:
    return resources.files("hotline_bridge.console").joinpath("static", name).read_bytes()


@described("The agent console (HTML)", public=True, errors=(404,))
async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "index.html")
    if name not in FILES:
        raise NotFound(f"no console file {name!r}")
    return web.Response(
        body=_file(name), content_type=FILES[name], charset="utf-8", headers=_HEADERS
    )


class LoginInput(BaseModel):
    """The agent's id and API token, typed once; never stored by the page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    token: Annotated[str, Field(min_length=1, max_length=512)]


@described(
    "Console login: the agent's token for an HttpOnly, SameSite=Strict session cookie",
    body=LoginInput,
    ok=201,
    public=True,
    errors=(400, 401, 413, 415, 422, 429),
)
async def login(request: web.Request) -> web.Response:
    # Per peer: a page guessing tokens is slowed like any principal's changes.
    wait = request.app[LIMITER].take(f"console-login:{request.remote}", time.monotonic())
    if wait is not None:
        response = error_response(429, "too many login attempts")
        response.headers["Retry-After"] = retry_after_header(wait)
        return response
    body = await read_model(request, LoginInput)
    principal = request.app[AUTH].principal(f"Bearer {body.token}")
    if principal is None or principal.role != "agent" or principal.agent_id != body.agent:
        raise Unauthenticated("unknown agent or token")
    sessions = request.app[SESSIONS]
    sid = sessions.open(principal, time.monotonic())
    response = json_ok({"agent_id": principal.agent_id}, status=201)
    response.set_cookie(
        COOKIE,
        sid,
        max_age=int(sessions.ttl_s),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,  # plain HTTP is refused off loopback in production
    )
    return response


@described("Console logout", ok=204, errors=(401, 403))
async def logout(request: web.Request) -> web.Response:
    require(request, "agent")
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


@described("Who the console is logged in as, and what its page offers", errors=(401, 403))
async def me(request: web.Request) -> web.Response:
    principal = require(request, "agent")
    settings = request.app[SETTINGS]
    targets: list[dict[str, Any]] = [
        {
            "id": t.id,
            "label": t.label_en,
            "label_zh": t.label_zh,
            "label_en": t.label_en,
            "kind": t.kind.value,
            "three_way": t.three_way,
        }
        for t in sorted(request.app[DIRECTORY].targets.values(), key=lambda t: t.id)
    ]
    keys = [
        {"name": k.name, "digits": k.digits, "action": k.action, "target": k.target}
        for k in settings.phone_keys
    ]
    return json_ok(
        {
            "agent_id": principal.agent_id,
            "site": settings.bridge.site,
            "targets": targets,
            "phone_keys": keys,
        }
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/console", page),
        web.get("/console/{name}", page),
        web.post("/v1/console/session", login),
        web.delete("/v1/console/session", logout),
        web.get("/v1/console/me", me),
    ]
