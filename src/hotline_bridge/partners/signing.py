"""Request signatures between partner sites: HMAC-SHA256 over method, path, time, nonce, body.

Pure: no clock, no storage. The receiver passes the current time and a :class:`Nonces` memory
so a captured request can be replayed neither later (outside the time window) nor now (seen
nonce). A nonce is remembered until its request's own timestamp leaves the window (not from when
it was received), and the memory the bridge uses is the store, so a restart does not reopen the
window. Timestamps from the future are refused beyond a small clock skew.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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


# How far ahead of our clock a partner's timestamp may be (NTP-synchronised hosts).
FUTURE_SKEW_S = 30
_HEADER = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, bounded: nothing else is valid


class Nonces(Protocol):
    def remember_nonce(self, nonce: str, expires_at: float, now: float) -> bool:
        """Remember ``nonce`` until ``expires_at``; False if it is remembered already."""
        ...


class NonceCache:
    """An in-memory :class:`Nonces` (bounded; the soonest to expire fall out first)."""

    def __init__(self, max_size: int = 100_000) -> None:
        self._seen: dict[str, float] = {}
        self._max = max_size

    def remember_nonce(self, nonce: str, expires_at: float, now: float) -> bool:
        for old in [n for n, until in self._seen.items() if until < now]:
            del self._seen[old]
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._max:
            del self._seen[min(self._seen, key=self._seen.__getitem__)]
        self._seen[nonce] = expires_at
        return True


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
    nonces: Nonces,
) -> Verified:
    """Check a signed request; raise :class:`SignatureError` saying why it is refused."""
    key_id = headers.get(KEY_ID, "")
    timestamp = headers.get(TIMESTAMP, "")
    nonce = headers.get(NONCE, "")
    signature = headers.get(SIGNATURE, "")
    if not (key_id and timestamp and nonce and signature):
        raise SignatureError("unsigned request")
    if not all(_HEADER.fullmatch(v) for v in (key_id, timestamp, nonce, signature)):
        raise SignatureError("malformed signature headers")
    secret = keys.get(key_id)
    if secret is None:
        raise SignatureError("unknown key id")
    if not timestamp.isdigit() or len(timestamp) > 12 or len(nonce) > 64:
        raise SignatureError("malformed signature headers")
    sent_at = int(timestamp)
    if sent_at > now + FUTURE_SKEW_S:
        raise SignatureError("timestamp in the future")
    if now - sent_at > window_s:
        raise SignatureError("timestamp outside the replay window")
    expected = hmac.new(
        secret.encode(), _canonical(method, path, timestamp, nonce, body), "sha256"
    ).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad signature")
    # Only a correctly signed request may consume a nonce (else anyone could burn them). It is
    # kept for as long as its timestamp could pass the window check.
    if not nonces.remember_nonce(f"{key_id}:{nonce}", sent_at + window_s, now):
        raise SignatureError("replayed request (nonce already seen)")
    return Verified(key_id)
