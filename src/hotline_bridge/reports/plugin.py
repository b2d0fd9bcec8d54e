"""Mounts the quarterly report resource over this site's store and catalog."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from hotline_bridge.deps import Deps
from hotline_bridge.reports import api
from hotline_bridge.reports.service import Quarter, write_quarter_report


def install(app: web.Application, deps: Deps) -> api.ReportDesk:
    nuisance = frozenset(deps.settings.agi.nuisance_categories)

    def write(quarter: Quarter, out: Path) -> Path:
        # Runs in a worker thread (the charts take seconds): it reads through its own
        # connection, since a SQLite connection belongs to the thread that opened it.
        store = deps.store.reopen()
        try:
            return write_quarter_report(
                store,
                deps.catalog,
                quarter,
                out,
                site=deps.site.value,
                nuisance_categories=nuisance,
            )
        finally:
            store.close()

    desk = app[api.REPORTS] = api.ReportDesk(deps.settings.reports_dir, write)
    app.router.add_routes(api.routes())
    return desk
