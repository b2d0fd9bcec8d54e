"""The report resource (supervisors): write a quarter's report now, read it, read the latest.

- ``POST /v1/reports`` ``{"quarter": "2026Q4"}`` → 201 ``{quarter, url}`` (409 while another is
  being written: one at a time, off the event loop);
- ``GET /v1/reports/{quarter}`` the HTML report; ``GET /v1/reports/latest`` the newest one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hotline_bridge.core.errors import Conflict, Invalid, NotFound
from hotline_bridge.reports.service import Quarter
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 2000-2099: a joint analysis of the linkage era, never year 0 (no 500 from datetime).
    quarter: str = Field(pattern=r"^20\d{2}Q[1-4]$", examples=["2026Q4"])


class ReportDesk:
    """Where reports live and how one is written (``write(quarter, folder)``, blocking)."""

    def __init__(self, root: Path, write: Callable[[Quarter, Path], Path]) -> None:
        self.root = root
        self._write = write
        self._busy = asyncio.Lock()

    async def make(self, quarter: Quarter) -> Path:
        if self._busy.locked():
            raise Conflict("a report is being written; try again when it is done")
        async with self._busy:
            return await asyncio.to_thread(self._write, quarter, self.root / quarter.label)

    def page(self, label: str) -> Path:
        if label == "latest":
            done = sorted(p.parent.name for p in self.root.glob("*/report.html"))
            if not done:
                raise NotFound("no report has been written yet")
            label = done[-1]
        if not re.fullmatch(r"\d{4}Q[1-4]", label):
            raise Invalid("a quarter looks like 2026Q4")
        page = self.root / label / "report.html"
        if not page.is_file():
            raise NotFound(f"no report for {label}; POST /v1/reports writes one")
        return page


REPORTS = web.AppKey("reports", ReportDesk)


@described(
    "Write a quarter's joint analysis report (supervisors)",
    body=ReportRequest,
    ok=201,
    errors=(400, 401, 403, 409, 413, 415, 422),
)
async def make_report(request: web.Request) -> web.Response:
    require(request, "supervisor")
    body = await read_model(request, ReportRequest)
    try:
        quarter = Quarter.parse(body.quarter)
    except ValueError as exc:
        raise Invalid("invalid request body", [{"field": "quarter", "problem": str(exc)}]) from None
    await request.app[REPORTS].make(quarter)
    url = f"/v1/reports/{quarter.label}"
    response = json_ok({"quarter": quarter.label, "url": url}, status=201)
    response.headers["Location"] = url
    return response


@described("A quarter's report as HTML (or the latest)", errors=(401, 403, 404, 422))
async def get_report(request: web.Request) -> web.StreamResponse:
    require(request, "supervisor")
    page = request.app[REPORTS].page(request.match_info["quarter"])
    return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8"})


def routes() -> list[web.RouteDef]:
    return [web.post("/v1/reports", make_report), web.get("/v1/reports/{quarter}", get_report)]
