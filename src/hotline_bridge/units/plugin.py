"""Mounts handling units: the directory, assignment and the units' API, and the supervision scan
that runs every ``[units].scan_interval_s`` in a worker thread (its own store connection), so a
large scan never holds up a hotkey."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

import structlog
from aiohttp import web

from hotline_bridge.config.settings import ConfigError
from hotline_bridge.deps import Deps
from hotline_bridge.handoffs.store import open_store
from hotline_bridge.units import api
from hotline_bridge.units.directory import Directory, UnitsError, load_directory
from hotline_bridge.units.service import UnitService

log = structlog.get_logger(__name__)

ScanObserver = Callable[[Iterable[tuple[str, str]], dict[str, int]], None]


class Supervisor:
    """The periodic supervision scan; ``on_scan`` sees each scan's warnings and overdue counts."""

    def __init__(self, deps: Deps, directory: Directory, interval_s: float) -> None:
        self._deps = deps
        self._directory = directory
        self._interval_s = interval_s
        self.on_scan: ScanObserver | None = None

    def scan_once(self) -> tuple[list[tuple[str, str]], dict[str, int]]:
        store = open_store(self._deps.settings)
        try:
            service = UnitService(store, self._directory, site=self._deps.site)
            flags = [(e.kind.value, e.stage) for e in service.supervise()]
            return flags, service.open_counts()
        finally:
            store.close()

    async def run(self) -> None:
        while True:
            try:
                flags, counts = await asyncio.to_thread(self.scan_once)
                if flags:
                    log.info("supervision flags raised", count=len(flags))
                if self.on_scan is not None:
                    self.on_scan(flags, counts)
            except Exception:
                log.exception("supervision scan failed")
            await asyncio.sleep(self._interval_s)


def install(app: web.Application, deps: Deps) -> Supervisor:
    s = deps.settings.units
    try:
        directory = load_directory(
            s.directory_path,
            s.limits_path,
            s.calendar_path,
            known_categories=frozenset(deps.catalog.categories),
        )
    except UnitsError as exc:
        raise ConfigError(str(exc)) from None
    unknown = [
        c.id for c in deps.settings.api_clients if c.role == "unit" and c.id not in directory.units
    ]
    if unknown:
        raise ConfigError(f"api_clients with role unit name no known unit: {', '.join(unknown)}")
    app[api.UNITS] = UnitService(deps.store, directory, site=deps.site)
    app.router.add_routes(api.routes())
    supervisor = Supervisor(deps, directory, s.scan_interval_s)

    async def supervise(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(supervisor.run(), name="unit-supervision")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if s.scan_interval_s > 0:
        app.cleanup_ctx.append(supervise)
    return supervisor
