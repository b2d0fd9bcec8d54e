"""tests/unit holds pure tests: no network. A unit test that opens an IP socket fails here (it
belongs in tests/component); an event loop's own self-pipe (a local socketpair) is allowed. The
guard is the definition, not a convention."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

_REAL = socket.socket


class _NoNetwork(_REAL):
    def __init__(self, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6, -1):
            raise AssertionError("a unit test opened a network socket: move it to tests/component")
        super().__init__(family, *args, **kwargs)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    yield
