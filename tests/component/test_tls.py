"""HTTPS between the two sites: the receiver serves the bridge's own TLS context (a certificate
from a throwaway CA made here with the openssl CLI), the partner link verifies it against
``[partner].ca_file``; a link that trusts another CA refuses the connection and keeps the record
in its outbox. And the ops listener: ``/metrics`` and ``/healthz`` off the agents' port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hotline_bridge.config.settings import PartnerSettings, load_settings
from hotline_bridge.handoffs.store import HandoffFilter, PageRequest, SqliteHandoffStore
from hotline_bridge.partners import api as partners_api
from hotline_bridge.partners.link import PUSH_PATH, PartnerLink, PushOutcome
from hotline_bridge.runtime.app import make_ops_app, tls_context
from hotline_bridge.web.http import MAX_BODY
from tests.component.test_partner_link import (
    KEY_110,
    KEY_12345,
    SECRET_110,
    SECRET_12345,
    record,
    settings_of_110,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca(d, "hotline-test-ca")
    other, _ = make_ca(d, "some-other-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=110-bridge",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)  # fmt: skip
    yield {"ca": ca, "other": other, "cert": d / "server.pem", "key": d / "server.key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def https_110(
    pki: dict[str, Path], tmp_path: Path
) -> AsyncIterator[tuple[str, SqliteHandoffStore]]:
    """The 110 site's receiver over HTTPS, with the TLS context the bridge itself would use."""
    store = SqliteHandoffStore(tmp_path / "110.sqlite3")
    settings = load_settings(
        ami={"host": "127.0.0.1", "username": "hb", "secret": "a-real-ami-secret-0123"},
        http={
            "tls_cert_file": pki["cert"],
            "tls_key_file": pki["key"],
            "public_url": "https://127.0.0.1",
        },
        bridge={"return_queue": "q"},
        agi={"enabled": False},
    )
    app = web.Application()
    app[MAX_BODY] = 1 << 20
    app[partners_api.RECEIVER] = partners_api.Receiver(settings_of_110(), store)
    app.router.add_post(PUSH_PATH, partners_api.receive_push)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(settings)).start()
    yield f"https://127.0.0.1:{port}", store
    await runner.cleanup()
    store.close()


def link_settings(base_url: str, ca: Path) -> PartnerSettings:
    return PartnerSettings(
        site="110",
        base_url=base_url,
        key_id=KEY_12345,
        secret=SECRET_12345,
        accept_keys={KEY_110: SECRET_110},
        ca_file=ca,
        retry_initial_s=0.05,
        retry_max_s=0.1,
        poll_interval_s=0.01,
    )


async def push_one(
    settings: PartnerSettings, tmp_path: Path
) -> tuple[list[PushOutcome], SqliteHandoffStore, str]:
    store = SqliteHandoffStore(tmp_path / "12345.sqlite3")
    outcomes: list[PushOutcome] = []
    link = PartnerLink(settings, store, outcomes.append)
    rec = record(1)
    store.create(rec, outbox=True)
    await link.start()
    try:
        for _ in range(100):
            if outcomes:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    finally:
        await link.close()
    return outcomes, store, rec.id


async def test_the_record_crosses_over_https_verified_against_the_partners_ca(
    https_110: tuple[str, SqliteHandoffStore], pki: dict[str, Path], tmp_path: Path
) -> None:
    url, store_110 = https_110
    outcomes, store, rid = await push_one(link_settings(url, pki["ca"]), tmp_path)
    assert outcomes[0] is PushOutcome.DELIVERED
    assert store.outbox_backlog() == (0, None)
    got = store_110.list(HandoffFilter(), PageRequest(limit=10)).items
    assert [r.id for r in got] == [rid]
    store.close()


async def test_a_certificate_from_another_ca_is_refused_and_the_record_waits(
    https_110: tuple[str, SqliteHandoffStore], pki: dict[str, Path], tmp_path: Path
) -> None:
    url, store_110 = https_110
    outcomes, store, _ = await push_one(link_settings(url, pki["other"]), tmp_path)
    assert outcomes and set(outcomes) == {PushOutcome.FAILED}
    assert store.outbox_backlog()[0] == 1  # kept for when the trust is fixed
    assert list(store_110.list(HandoffFilter(), PageRequest(limit=10)).items) == []
    store.close()
    # And a plain-HTTP client gets nothing from the HTTPS port.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(url.replace("https", "http") + PUSH_PATH, data=b"{}")


async def test_the_ops_listener_serves_metrics_and_health_off_the_agents_port() -> None:
    from hotline_bridge.handoffs.recorder import open_recorder
    from hotline_bridge.runtime.app import build

    settings = load_settings(
        ami={"host": "127.0.0.1", "username": "hb", "secret": "a-real-ami-secret-0123"},
        http={"public_url": "https://127.0.0.1"},
        ops={"port": 0},
        bridge={"return_queue": "q", "store_path": ":memory:"},
        agi={"enabled": False},
    )
    with open_recorder(settings) as recorder:
        runtime = build(settings, recorder)
        routes = {r.resource.canonical for r in runtime.app.router.routes() if r.resource}
        assert "/metrics" not in routes and "/healthz" not in routes
        ops = make_ops_app(runtime.app)
        runner = web.AppRunner(ops, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200 and "hotline_transfers" in await resp.text()
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 503  # no AMI here: degraded, and says so
        finally:
            await runner.cleanup()
