"""The record write path on SQLite and on PostgreSQL, measured in the same run.

    python -m lab.storebench [--records 2000] [--out bench/results]

What a hotkey writes before it answers: ``create(record, outbox=True)`` (the record, its first
event and its outbox row, one transaction), then what the transfer writes as it moves:
``append(event)`` and ``keep_machine`` (its state). Each is timed call by call, as the caller on
the event loop waits for it, through the product's store classes. Backends:

- SQLite, the default (WAL, ``synchronous=NORMAL``), and with ``synchronous=FULL``;
- PostgreSQL 15 started for the run by ``lab.pgserver`` on loopback TCP, durable (fsync on,
  ``synchronous_commit=on``, as a production server), one connection as the bridge has.

Writes ``store-<time>.json`` and ``.md`` under ``--out``. The box is shared (2 cores): the
numbers are for comparing the backends in one run, not absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from hotline_bridge.catalog import load_catalog
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import HandoffInput, new_handoff
from hotline_bridge.handoffs.model import Actor, Direction, EventKind, HandoffKind, event
from hotline_bridge.handoffs.store import HandoffStore, SqliteHandoffStore

from .pgserver import running_pg

CATALOG = load_catalog()
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
IDLE_S = 0.01


def _records(n: int, salt: int) -> list[Any]:
    out = []
    for i in range(n):
        now = T0 + timedelta(milliseconds=i)
        out.append(
            new_handoff(
                HandoffInput(
                    category="police.criminal", narrative=f"第{i}号 入室盗窃,嫌疑人已离开"
                ),
                handoff_id=new_handoff_id(int(now.timestamp() * 1000) + salt * 10_000_000 + i),
                kind=HandoffKind.CARRY_TRANSFER,
                direction=Direction.TO_110,
                target="110",
                citizen_number="13800138000",
                created_by=Actor.agent("1001"),
                catalog=CATALOG,
                now=now,
            )
        )
    return out


def _timed(calls: list[Callable[[], object]], idle_s: float = 0.0) -> list[float]:
    out = []
    for call in calls:
        if idle_s:
            time.sleep(idle_s)
        t = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t) / 1000.0)
    return out


def _summary(us: list[float]) -> dict[str, float]:
    s = sorted(us)
    return {
        "n": len(s),
        "p50_us": round(statistics.median(s), 1),
        "p99_us": round(s[min(len(s) - 1, int(len(s) * 0.99))], 1),
        "max_us": round(s[-1], 1),
        "mean_us": round(statistics.fmean(s), 1),
    }


def measure(store: HandoffStore, n: int, salt: int) -> dict[str, dict[str, float]]:
    records = _records(n, salt)
    warm = _records(50, salt + 1)
    for r in warm:  # connections, caches, prepared plans
        store.create(r)
    note = event(EventKind.PARTNER_ANSWERED, actor=Actor.system(), at=T0)
    state = json.dumps({"state": "answered", "pad": "x" * 600})
    create = _timed([partial(store.create, r, outbox=True) for r in records])
    # As presses come (20 calls/s: 50 ms apart), each write after the store has sat idle: on
    # this VM a process woken from idle answers later than one kept busy back to back.
    idle = _timed(
        [partial(store.create, r, outbox=True) for r in _records(n // 4, salt + 2)], IDLE_S
    )
    append = _timed([partial(store.append, r.id, note) for r in records])
    keep = _timed(
        [partial(store.keep_machine, "carry_transfer", r.id, state, done=True) for r in records]
    )
    return {
        "create": _summary(create),
        "create_after_idle": _summary(idle),
        "append": _summary(append),
        "keep_machine": _summary(keep),
    }


@contextmanager
def _sqlite(tmp: Path, synchronous: str) -> Iterator[HandoffStore]:
    store = SqliteHandoffStore(tmp / f"bench-{synchronous}.sqlite3", synchronous=synchronous)  # type: ignore[arg-type]
    try:
        yield store
    finally:
        store.close()


def run(n: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hb-storebench-") as tmp:
        with _sqlite(Path(tmp), "NORMAL") as s:
            results["sqlite_normal"] = measure(s, n, 1)
        with _sqlite(Path(tmp), "FULL") as s:
            results["sqlite_full"] = measure(s, n, 2)
    with running_pg(durable=True) as pg:
        from hotline_bridge.handoffs.store.postgres import PostgresHandoffStore

        store = PostgresHandoffStore(pg.create_db("bench"))
        try:
            results["postgres"] = measure(store, n, 3)
            results["postgres_version"] = str(store._db.info.server_version)
        finally:
            store.close()
    return results


def markdown(doc: dict[str, Any]) -> str:
    r = doc["results"]
    lines = [
        f"# Record write path: SQLite vs PostgreSQL ({doc['at']})",
        "",
        f"{doc['records']} records per backend, each call timed as its caller waits for it; "
        f"{doc['host']['cpus']} shared cores, {doc['host']['python']}. PostgreSQL "
        f"{r['postgres_version']} on loopback TCP, fsync on, synchronous_commit on.",
        "",
        "| write | backend | p50 µs | p99 µs | max µs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    names = {
        "sqlite_normal": "SQLite (WAL, NORMAL: the default)",
        "sqlite_full": "SQLite (WAL, FULL)",
        "postgres": "PostgreSQL",
    }
    for op in ("create", "create_after_idle", "append", "keep_machine"):
        for key, label in names.items():
            s = r[key][op]
            lines.append(f"| {op} | {label} | {s['p50_us']} | {s['p99_us']} | {s['max_us']} |")
    lines += [
        "",
        "create = the record + its first event + its outbox row (one transaction): what a hotkey "
        f"waits for before it answers; create_after_idle = the same, each after {IDLE_S * 1000:g} "
        "ms idle (as presses arrive). append = one event (status moves). keep_machine = the "
        "transfer's state after a move.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    results = run(args.records)
    now = datetime.now(UTC)
    doc = {
        "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "records": args.records,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"store-{now.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
