"""HTTP plumbing shared by every capability's API resource: errors, auth, bodies.

Every error leaves as JSON ``{"error": {"status", "reason", "details"}}`` with a 4xx status and a
reason a person can act on; an unexpected exception is logged and answered 500 without detail.
Agents authenticate with a per-agent bearer token; tokens are compared in constant time and
never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from hotline_bridge.core.errors import (
    Forbidden,
    Invalid,
    Refused,
    SlowBody,
    TooLarge,
    Unauthenticated,
    UnsupportedMedia,
    field_errors,
)
from hotline_bridge.core.principal import Principal
from hotline_bridge.web.limits import RateLimiter, retry_after_header
from hotline_bridge.web.sessions import COOKIE, CSRF_HEADER, ConsoleSessions

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY = web.AppKey("max_body", int)
BODY_TIMEOUT = web.AppKey("body_timeout", float)
# The per-principal limiter of mutating requests; the phone keys take from the same buckets.
LIMITER = web.AppKey("limiter", RateLimiter)
SESSIONS = web.AppKey("sessions", ConsoleSessions)


def error_response(status: int, reason: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"status": status, "reason": reason}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


PRINCIPAL = web.RequestKey("principal", Principal)


_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


class TokenAuth:
    def __init__(self, tokens: Iterable[tuple[str, Principal]]) -> None:
        self._by_digest = {_digest(t): p for t, p in tokens}

    def principal(self, header: str | None) -> Principal | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[7:].strip()
        if not _TOKEN.fullmatch(token):
            return None  # a token is printable ASCII; anything else (e.g. \xff) is no token
        # A lookup by the SHA-256 of the token: its timing can tell only how a digest compares
        # with the known ones, which does not lead back to a token (no scan of every seat).
        return self._by_digest.get(_digest(token))


AUTH = web.AppKey("auth", TokenAuth)  # the console's login checks a token with it


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require(request: web.Request, *roles: str) -> Principal:
    """The authenticated principal, or 401 (no/unknown token) / 403 (role not allowed)."""
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:
        raise Unauthenticated("missing or unknown bearer token")
    if roles and principal.role not in roles:
        raise Forbidden(f"this action needs one of the roles: {', '.join(roles)}")
    return principal


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Refusals that leave a body unread on the socket: close the connection after answering rather
# than wait for the rest of a body nobody will read (a slow client would hold the slot).
_UNREAD_BODY = frozenset({408, 413})


def make_middlewares(
    auth: TokenAuth,
    limiter: RateLimiter | None = None,
    clock: Callable[[], float] = time.monotonic,
    sessions: ConsoleSessions | None = None,
) -> list[Any]:
    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = auth.principal(request.headers.get("Authorization"))
        if principal is None and sessions is not None:
            principal = sessions.principal(request.cookies.get(COOKIE), clock())
            if principal is not None and request.method in MUTATING:
                refusal = _cross_site(request)
                if refusal is not None:
                    return error_response(403, refusal)
        if principal is not None:
            request[PRINCIPAL] = principal
        if limiter is not None and principal is not None and request.method in MUTATING:
            # Per principal. Requests without a token are refused (401) by their handler, but
            # for the partner receiver: its peer signs every push and its outbox paces itself.
            wait = limiter.take(principal.id, clock())
            if wait is not None:
                response = error_response(
                    429, f"too many requests; try again in {retry_after_header(wait)} s"
                )
                response.headers["Retry-After"] = retry_after_header(wait)
                return response
        try:
            return await handler(request)
        except Refused as exc:
            response = error_response(exc.status, exc.reason, exc.details)
            if exc.status in _UNREAD_BODY:
                response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            response = error_response(413, "request body too large")
            response.force_close()
            return response
        except web.RequestPayloadError:
            # The body could not be read as sent: a Content-Encoding it does not match (gzip
            # that is not gzip), broken chunked framing. The client's fault, like bad JSON.
            return error_response(400, "malformed request body: it could not be decoded")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error_response(exc.status, exc.reason)
            raise
        except Exception:
            log.exception("unhandled error in API handler", path=request.path)
            return error_response(500, "internal error")

    return [errors_and_auth]


def _cross_site(request: web.Request) -> str | None:
    """Why a cookie-authenticated change is refused as possibly cross-site, or None."""
    if request.headers.get(CSRF_HEADER) != "1":
        return f"a console request must carry the {CSRF_HEADER} header"
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return "cross-site request refused"
    return None


def _check_length(request: web.Request) -> None:
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"request body larger than {limit} bytes")


async def read_body(request: web.Request) -> bytes:
    """The raw body, at most ``MAX_BODY`` bytes (413) arriving within ``BODY_TIMEOUT`` (408)."""
    _check_length(request)
    timeout = request.app.get(BODY_TIMEOUT, 10.0)
    try:
        async with asyncio.timeout(timeout):
            return await request.read()  # aiohttp enforces client_max_size while reading
    except TimeoutError:
        raise SlowBody(f"the request body did not arrive within {timeout:g} s") from None


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse a JSON body into ``model``: 413 if too big, 400 if not JSON, 422 listing bad fields."""
    _check_length(request)
    if request.content_type != "application/json":
        raise UnsupportedMedia("the body must be application/json")
    raw = await read_body(request)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Refused("malformed JSON: nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid("invalid request body", field_errors(exc)) from None
