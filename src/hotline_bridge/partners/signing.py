"""Request signatures between partner sites: HMAC-SHA256 over method, path, time, nonce, body.

Pure: no clock, no storage. The receiver passes the current time and a :class:`NonceCache` so a
captured request can be replayed neither later (outside the time window) nor now (seen nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

KEY_ID = "X-Hotline-Key-Id"
TIMESTAMP = "X-Hotline-Timestamp"
NONCE = "X-Hotline-Nonce"
SIGNATURE = "X-Hotline-Signature"


class SignatureError(Exception):
    """Why a request is refused; safe to log and to return (names no secret)."""


def _canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def sign(
    method: str, path: str, body: bytes, *, key_id: str, secret: str, now: float
) -> dict[str, str]:
    """The headers that authenticate this request."""
    timestamp = str(int(now))
    nonce = secrets.token_hex(16)
    mac = hmac.new(secret.encode(), _canonical(method, path, timestamp, nonce, body), "sha256")
    return {KEY_ID: key_id, TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: mac.hexdigest()}


class NonceCache:
    """Nonces seen within the replay window (bounded; the oldest fall out first)."""

    def __init__(self, max_size: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_size

    def seen_before(self, nonce: str, now: float, window_s: float) -> bool:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at >= now - window_s and len(self._seen) < self._max:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return True
        self._seen[nonce] = now
        return False


@dataclass(frozen=True, slots=True)
class Verified:
    key_id: str


def verify(
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    keys: Mapping[str, str],
    now: float,
    window_s: float,
    nonces: NonceCache,
) -> Verified:
    """Check a signed request; raise :class:`SignatureError` saying why it is refused."""
    key_id = headers.get(KEY_ID, "")
    timestamp = headers.get(TIMESTAMP, "")
    nonce = headers.get(NONCE, "")
    signature = headers.get(SIGNATURE, "")
    if not (key_id and timestamp and nonce and signature):
        raise SignatureError("unsigned request")
    secret = keys.get(key_id)
    if secret is None:
        raise SignatureError(f"unknown key id {key_id!r}")
    if not timestamp.isdigit() or len(nonce) > 64:
        raise SignatureError("malformed signature headers")
    if abs(now - int(timestamp)) > window_s:
        raise SignatureError("timestamp outside the replay window")
    expected = hmac.new(
        secret.encode(), _canonical(method, path, timestamp, nonce, body), "sha256"
    ).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad signature")
    # Only a correctly signed request may consume a nonce (else anyone could burn them).
    if nonces.seen_before(f"{key_id}:{nonce}", now, window_s):
        raise SignatureError("replayed request (nonce already seen)")
    return Verified(key_id)
