"""The quarterly report end to end: a generated quarter in a real store, ``hotline-bridge report``
run as a process, its CSV tables checked against the store's own counts, its HTML and charts
present; and the supervisors' ``/v1/reports`` resource over the same store."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lab.quarter import Volumes, generate
from lab.sandbox import bridge_settings

from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs.model import (
    Direction,
    HandoffKind,
)
from hotline_bridge.handoffs.store import HandoffFilter, PageRequest, SqliteHandoffStore
from hotline_bridge.reports.api import REPORTS, ReportDesk, routes
from hotline_bridge.reports.service import Quarter, records_between, write_quarter_report
from hotline_bridge.runtime.app import build
from hotline_bridge.web.http import MAX_BODY, TokenAuth, make_middlewares

Q = Quarter.parse("2026Q4")
SANDBOX = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"


TOPOLOGY = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"


@pytest.fixture(scope="module")
def quarter_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("quarter") / "handoffs.sqlite3"
    store = SqliteHandoffStore(path)
    # A smaller city than Lijiang keeps the test quick; the shape is the same.
    written = generate(store, Q, seed=7, volumes=Volumes(per_day=6))
    # A record of the quarter before must not be counted.
    generate(store, Q.previous(), seed=8, volumes=Volumes(per_day=1))
    store.close()
    assert 400 < written < 700
    yield path


def count(store: SqliteHandoffStore, **filters: object) -> int:
    n, cursor = 0, None
    while True:
        page = store.list(
            HandoffFilter(since=Q.since, until=Q.until, **filters),  # type: ignore[arg-type]
            PageRequest(limit=200, cursor=cursor),
        )
        n += len(page.items)
        if page.next_cursor is None:
            return n
        cursor = page.next_cursor


def table(path: Path) -> dict[str, list[str]]:
    with path.open(encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    return {row[1] if len(row) > 2 else row[0]: row for row in rows[1:]}


def test_the_cli_writes_a_report_whose_tables_match_the_store(
    quarter_store: Path, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[ami]\nhost = "127.0.0.1"\nport = 5038\nusername = "reports"\n'
        'secret = "report-only-ami-secret"\n'
        f'[bridge]\nsite = "12345"\nreturn_queue = "q"\nstore_path = "{quarter_store}"\n'
        "[agi]\nenabled = false\n"
    )
    out = tmp_path / "2026Q4"
    done = subprocess.run(
        [sys.executable, "-m", "hotline_bridge", "report", "--config", str(config),
         "--quarter", "2026Q4", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(out / "report.html") in done.stdout

    store = SqliteHandoffStore(quarter_store)
    try:
        total = count(store)
        summary = {
            row[0]: row for row in csv.reader((out / "summary.csv").open(encoding="utf-8-sig"))
        }
        assert int(summary["移交记录总数"][1]) == total
        by_direction = table(out / "by_direction.csv")
        for direction in Direction:
            assert int(by_direction[direction.value][2]) == count(store, direction=direction)
        by_kind = table(out / "by_kind.csv")
        for kind in HandoffKind:  # a kind without records this quarter has no row
            got = int(by_kind[kind.value][2]) if kind.value in by_kind else 0
            assert got == count(store, kind=kind)
        by_jurisdiction = table(out / "by_jurisdiction.csv")
        assert sum(int(r[2]) for r in by_jurisdiction.values()) == total
        # The receipt rate's numerator is every record of the quarter with a 签收.
        acked = sum(
            1
            for r in records_between(store, Q.since, Q.until)
            if any(e.kind.value == "acknowledged" for e in r.events)
        )
        assert int(summary["工单签收率"][2]) == acked
    finally:
        store.close()

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "2026年第4季度" in page and "工单签收率" in page
    assert len(re.findall(r"src='data:image/png;base64,", page)) >= 8  # self-contained
    assert (out / "charts" / "rates.png").stat().st_size > 5_000


TOKENS = [
    ("supervisor-token-xxxxxxxxxxxx", Principal("s1", "supervisor")),
    ("agent-token-xxxxxxxxxxxxxxxxx", Principal("1001", "agent", agent_id="1001")),
]


@pytest.fixture
async def reports_api(quarter_store: Path, tmp_path: Path) -> AsyncIterator[TestClient]:
    from hotline_bridge.catalog import load_catalog

    catalog = load_catalog()

    def write(quarter: Quarter, folder: Path) -> Path:  # in a worker thread: its own connection
        store = SqliteHandoffStore(quarter_store)
        try:
            return write_quarter_report(
                store, catalog, quarter, folder, site="12345", nuisance_categories=frozenset()
            )
        finally:
            store.close()

    app = web.Application(middlewares=make_middlewares(TokenAuth(TOKENS)))
    app[MAX_BODY] = 4096
    app[REPORTS] = ReportDesk(tmp_path / "reports", write)
    app.router.add_routes(routes())
    async with TestClient(TestServer(app)) as client:
        yield client


def auth(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[i][0]}"}


async def test_supervisors_write_and_read_the_latest_report(reports_api: TestClient) -> None:
    resp = await reports_api.get("/v1/reports/latest", headers=auth(0))
    assert resp.status == 404  # nothing written yet
    resp = await reports_api.post("/v1/reports", json={"quarter": "2026Q4"}, headers=auth(0))
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == "/v1/reports/2026Q4"
    resp = await reports_api.get("/v1/reports/latest", headers=auth(0))
    assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    assert "12345与110对接联动工作分析" in await resp.text()


async def test_reports_are_for_supervisors_and_quarters_are_checked(
    reports_api: TestClient,
) -> None:
    resp = await reports_api.post("/v1/reports", json={"quarter": "2026Q4"}, headers=auth(1))
    assert resp.status == 403
    resp = await reports_api.get("/v1/reports/latest")
    assert resp.status == 401
    resp = await reports_api.post("/v1/reports", json={"quarter": "2026Q9"}, headers=auth(0))
    assert resp.status == 422
    resp = await reports_api.get("/v1/reports/2026-4", headers=auth(0))
    assert resp.status == 422
    resp = await reports_api.get("/v1/reports/2025Q1", headers=auth(0))
    assert resp.status == 404


async def test_the_bridge_itself_writes_a_report_from_its_own_store(
    quarter_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the runtime's own wiring (``reports.plugin``), not a test's: the report is written
    in a worker thread, which must read through its own connection (the API fuzz found the
    loop's connection used from that thread: every real POST /v1/reports answered 500)."""
    import shutil

    from hotline_bridge.catalog import Platform, load_catalog
    from hotline_bridge.handoffs.recorder import StoreRecorder

    db = tmp_path / "handoffs.sqlite3"
    shutil.copy(quarter_store, db)
    monkeypatch.setenv("HOTLINE_BRIDGE_BRIDGE__STORE_PATH", str(db))
    settings = bridge_settings(TOPOLOGY)
    store = SqliteHandoffStore(db)
    recorder = StoreRecorder(
        store, load_catalog(), site=Platform.HOTLINE_12345, public_url="http://127.0.0.1:8345"
    )
    runtime = build(settings, recorder)
    runtime.app.cleanup_ctx.clear()
    supervisor = {"Authorization": "Bearer sandbox-token-supervisor-1"}
    try:
        async with TestClient(TestServer(runtime.app)) as client:
            resp = await client.post("/v1/reports", json={"quarter": "2026Q4"}, headers=supervisor)
            assert resp.status == 201, await resp.text()
            resp = await client.get("/v1/reports/2026Q4", headers=supervisor)
            assert resp.status == 200
            assert "12345与110对接联动工作分析" in await resp.text()
    finally:
        store.close()
        shutil.rmtree(settings.reports_dir, ignore_errors=True)
