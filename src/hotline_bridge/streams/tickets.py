"""Short-lived stream tickets: what a browser puts in an EventSource URL instead of a token.

``EventSource`` cannot send an ``Authorization`` header, and a long-lived bearer token in a URL
ends up in proxy logs and browser history. The console asks for a ticket with its token
(``POST .../events/ticket``) and opens the stream with it: the ticket names the principal and the
topic, expires in ``TTL_S`` seconds and is signed with a key that never leaves the process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from hotline_bridge.core.errors import Forbidden, Unauthenticated

TTL_S = 30.0
_MAX_LEN = 512


class Tickets:
    def __init__(self, key: bytes | None = None, ttl_s: float = TTL_S) -> None:
        self._key = key or os.urandom(32)
        self.ttl_s = ttl_s

    def issue(self, principal: str, topic: str, now: float) -> str:
        body = _b64(json.dumps({"p": principal, "t": topic, "e": round(now + self.ttl_s, 3)}))
        return f"{body}.{self._sign(body)}"

    def verify(self, ticket: str, topic: str, now: float) -> str:
        """The principal the ticket was issued to; 401 if forged, malformed or expired, 403 if
        it was issued for another stream."""
        if not ticket or len(ticket) > _MAX_LEN or ticket.count(".") != 1:
            raise Unauthenticated("missing or malformed stream ticket")
        body, sig = ticket.split(".")
        if not hmac.compare_digest(sig, self._sign(body)):
            raise Unauthenticated("invalid stream ticket")
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            principal, their_topic, expires = str(claims["p"]), str(claims["t"]), float(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise Unauthenticated("malformed stream ticket") from None
        if now > expires:
            raise Unauthenticated("stream ticket expired; ask for a new one")
        if their_topic != topic:
            raise Forbidden("this ticket is for another stream")
        return principal

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
