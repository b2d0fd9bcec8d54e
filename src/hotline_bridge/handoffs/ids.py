"""Handoff ids: ``h-`` + a 26-character lowercase ULID (time-ordered, URL-safe, unguessable).

The id travels in the Call-Info URL and AMI variables, so it is plain ``[0-9a-z]``; the leading
48-bit millisecond timestamp keeps ids roughly in creation order, the 80 random bits make them
impossible to guess from a neighbour's.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_handoff_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "h-" + "".join(reversed(chars))
