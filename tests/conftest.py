"""Shared fixtures: the topology and the sandbox PBX (see lab)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.ami import AmiSession
from lab.pgserver import PgServer, PgUnavailable
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


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the whole session (lab.pgserver), on a loopback port."""
    try:
        server = PgServer().start()
    except PgUnavailable as exc:
        if os.environ.get("HOTLINE_REQUIRE_PBX") == "1":
            raise  # `make test` never silently skips the PostgreSQL half
        pytest.skip(f"postgres test skipped: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server (left for the server's removal)."""
    return pg_server.create_db(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """``open_store(name)``: a store named ``name`` on this test's backend (each test runs on
    both): a SQLite file in tmp_path, or a database on the session's PostgreSQL server. The same
    name opens the same store again; all are closed after the test."""
    from hotline_bridge.handoffs.store import SqliteHandoffStore
    from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore

    opened: list[Any] = []
    dsns: dict[str, str] = {}

    def open_(name: str) -> Any:
        if request.param == "sqlite":
            store: Any = SqliteHandoffStore(tmp_path / f"{name}.sqlite3")
        else:
            if name not in dsns:
                dsns[name] = request.getfixturevalue("pg_server").create_db(
                    f"t_{uuid.uuid4().hex[:16]}"
                )
            store = PostgresHandoffStore(dsns[name])
        opened.append(store)
        return store

    yield open_
    for s in opened:
        s.close()
