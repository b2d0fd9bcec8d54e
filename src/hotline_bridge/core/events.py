"""What the capabilities read from a PBX event: named header fields, nothing more.

``ami.AmiEvent`` satisfies it, and so does a plain ``dict`` in unit tests.
"""

from __future__ import annotations

from typing import Protocol


class PbxEvent(Protocol):
    def get(self, key: str, default: str = "", /) -> str: ...
