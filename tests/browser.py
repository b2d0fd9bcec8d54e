"""Debian's Chromium driven by Playwright (never `playwright install`: its download is not
reachable; `make deps` installs the chromium package)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

CHROMIUM = "/usr/bin/chromium"
# As root, without a GPU, on a closed network: no sandbox, no background fetches.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need_browser() -> None:
    """Skip where there is no browser, except where the run requires every real part."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "playwright (dev extras)"
    else:
        missing = "" if shutil.which(CHROMIUM) else "chromium (make deps)"
    if missing:
        if os.environ.get("HOTLINE_REQUIRE_PBX") or os.environ.get("CI"):
            pytest.fail(f"the browser tests need {missing}")
        pytest.skip(f"no {missing}")


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()
