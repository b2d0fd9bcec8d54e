"""Console sessions: what a browser holds instead of the agent's token.

The agent types its token once; the bridge answers with a random session id in a cookie that
scripts cannot read (HttpOnly), that no other site's page sends (SameSite=Strict) and, off
plain-HTTP loopback, that travels only over TLS (Secure). The long-lived token never sits in
the page, a URL or the browser's storage. Sessions live in this process (a restart logs agents
out), expire after ``ttl_s``, and are bounded in number.

A request that carries only the cookie and changes something must also carry the header
``X-Hotline-Console`` (a page on another site cannot add a custom header to a cross-site request
without a CORS preflight, which the bridge never grants), and an ``Origin``, if sent, must be the
bridge's own: CSRF is refused twice over.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from hotline_bridge.core.principal import Principal

COOKIE = "hb_console"
CSRF_HEADER = "X-Hotline-Console"
TTL_S = 12 * 3600.0  # one long shift
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class _Session:
    principal: Principal
    expires_at: float


class ConsoleSessions:
    def __init__(self, ttl_s: float = TTL_S, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self._max = max_sessions
        self._by_id: OrderedDict[str, _Session] = OrderedDict()

    def open(self, principal: Principal, now: float) -> str:
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = _Session(principal, now + self.ttl_s)
        while len(self._by_id) > self._max:
            self._by_id.popitem(last=False)  # the oldest login goes first
        return sid

    def principal(self, sid: str | None, now: float) -> Principal | None:
        if not sid or len(sid) > 128:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        if now >= session.expires_at:
            del self._by_id[sid]
            return None
        return session.principal

    def close(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)
