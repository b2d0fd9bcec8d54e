"""Producing a period's report from the store: which records, which figures, which files.

Quarters are the plan's (每季度1次工作分析) and are local: China Standard Time (UTC+8, no summer
time), so ``2026Q4`` is 1 October 00:00 to 1 January 00:00 in Lijiang.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hotline_bridge.catalog.model import Catalog
from hotline_bridge.handoffs.model import (
    HandoffRecord,
)
from hotline_bridge.handoffs.store import MAX_PAGE, HandoffFilter, HandoffStore, PageRequest
from hotline_bridge.reports.figures import Figures, compute
from hotline_bridge.reports.render import write_report

CST = timezone(timedelta(hours=8), "CST")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
# The reports are of this millennium: another year is a typo (and 0000Q1 or 9999Q4 have no
# start or end a datetime can hold).
YEARS = range(2000, 3000)


@dataclass(frozen=True, slots=True)
class Quarter:
    year: int
    q: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        m = _QUARTER.fullmatch(text.strip().upper())
        if m is None:
            raise ValueError(f"a quarter looks like 2026Q4, not {text!r}")
        year = int(m.group(1))
        if year not in YEARS:
            raise ValueError(f"a quarter of the years {YEARS[0]}-{YEARS[-1]}, not {text!r}")
        return cls(year, int(m.group(2)))

    @classmethod
    def containing(cls, when: datetime) -> Quarter:
        local = when.astimezone(CST)
        return cls(local.year, (local.month - 1) // 3 + 1)

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.q}"

    @property
    def period_zh(self) -> str:
        last = datetime(self.year, 3 * self.q, 1, tzinfo=CST)
        end = (last.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return f"{self.year}-{3 * self.q - 2:02d}-01 至 {end:%Y-%m-%d}(北京时间)"

    @property
    def since(self) -> datetime:
        return datetime(self.year, 3 * self.q - 2, 1, tzinfo=CST).astimezone(UTC)

    @property
    def until(self) -> datetime:
        year, month = (self.year + 1, 1) if self.q == 4 else (self.year, 3 * self.q + 1)
        return datetime(year, month, 1, tzinfo=CST).astimezone(UTC)

    def previous(self) -> Quarter:
        return Quarter(self.year - 1, 4) if self.q == 1 else Quarter(self.year, self.q - 1)


def records_between(
    store: HandoffStore, since: datetime, until: datetime
) -> Iterator[HandoffRecord]:
    """Every record created in [since, until), page by page (the store's own ordering)."""
    cursor: str | None = None
    while True:
        page = store.list(
            HandoffFilter(since=since, until=until), PageRequest(limit=MAX_PAGE, cursor=cursor)
        )
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def quarter_figures(
    store: HandoffStore,
    catalog: Catalog,
    quarter: Quarter,
    *,
    nuisance_categories: frozenset[str],
) -> Figures:
    labels = {code: c.label_zh for code, c in catalog.categories.items()}
    return compute(
        records_between(store, quarter.since, quarter.until),
        quarter.since,
        quarter.until,
        nuisance_categories=nuisance_categories,
        labels=labels,
    )


def write_quarter_report(
    store: HandoffStore,
    catalog: Catalog,
    quarter: Quarter,
    out: Path,
    *,
    site: str,
    nuisance_categories: frozenset[str],
) -> Path:
    """Figures from the store, then ``out/report.html`` and its tables and charts."""
    figures = quarter_figures(store, catalog, quarter, nuisance_categories=nuisance_categories)
    title = f"{quarter.year}年第{quarter.q}季度 12345与110对接联动工作分析"
    return write_report(figures, out, site=site, title=title, period=quarter.period_zh)
