"""Shared fixtures: the topology and the sandbox PBX (see lab)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.sandbox import Sandbox, load_topology


def _pbx_unavailable() -> str | None:
    """Why the sandbox PBX cannot run on this machine, or None."""
    if os.environ.get("HOTLINE_SKIP_PBX") == "1":
        return "HOTLINE_SKIP_PBX=1"
    if os.geteuid() != 0:
        return "the sandbox PBX needs root (debootstrap, mount, chroot)"
    if shutil.which("sipp") is None:
        return "sipp is not installed (apt-get install sip-tester)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _pbx_unavailable()
    if reason is None or os.environ.get("HOTLINE_REQUIRE_PBX") == "1":
        return
    skip = pytest.mark.skip(reason=f"pbx test skipped: {reason}")
    for item in items:
        if item.get_closest_marker("pbx"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def topology() -> dict[str, Any]:
    """asterisk/sandbox.toml as a dict."""
    return load_topology()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The running sandbox PBX. Provisions and starts it if needed; stops it at the end only if
    this session started it (a PBX someone else runs is left alone)."""
    reason = _pbx_unavailable()
    if reason is not None:
        pytest.fail(f"the sandbox PBX cannot run here: {reason}")
    sb = Sandbox()
    started = sb.start()
    try:
        yield sb
    finally:
        if started:
            sb.stop()


@pytest.fixture(autouse=True)
def _pbx_tests_get_the_sandbox(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("pbx"):
        request.getfixturevalue("sandbox")


@pytest.fixture
async def admin_ami(sandbox: Sandbox) -> AsyncIterator[AmiSession]:
    """A raw AMI session as the all-privileged sandbox-admin user (events on)."""
    async with sandbox.admin_ami() as ami:
        yield ami
