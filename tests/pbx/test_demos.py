"""The README's demos keep working: each runs end to end and says every step happened."""

from __future__ import annotations

import pytest
from lab import demo, demo_two_site
from lab.sandbox import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.pbx


async def test_make_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert await demo.run(DEFAULT_TOPOLOGY) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "demo: every step happened as described." in out


async def test_make_demo_two_site(capsys: pytest.CaptureFixture[str]) -> None:
    assert await demo_two_site.run() == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "demo-two-site: every step happened as described." in out
