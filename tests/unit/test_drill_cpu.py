"""The drill's CPU accounting: the machine's busy share and the bridge loop's run-queue wait,
which tell a box that is out of CPU from a bridge that is slow at its own work."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.bench import INVITE, _record_share
from lab.drill.options import DrillCall, box_ticks, loop_schedstat
from lab.drill.report import box_entry, loop_wait_entry, record_writes


def test_the_machine_busy_share_is_busy_ticks_over_all_ticks_of_the_window() -> None:
    assert box_entry((1_000, 4_000), (1_900, 5_000)) == {"busy_pct": 90.0}
    assert box_entry((1_000, 4_000), (1_000, 4_000)) == {"busy_pct": None}  # no time passed
    assert box_entry(None, (1, 2)) == {"busy_pct": None}


def test_the_loop_wait_is_reported_beside_its_run_time() -> None:
    entry = loop_wait_entry((10.0, 2.0), (13.0, 19.0), window=20.0)
    assert entry == {"loop_ran_s": 3.0, "loop_waited_for_cpu_s": 17.0, "loop_waiting_pct": 85.0}
    assert loop_wait_entry(None, (1.0, 1.0), 20.0) == {}


def test_the_counters_read_from_proc_move_forward() -> None:
    first, mine = box_ticks(), loop_schedstat(os.getpid())
    assert first is not None and 0 < first[0] <= first[1]
    assert mine is not None and mine[0] > 0 and mine[1] >= 0
    sum(i * i for i in range(200_000))  # some CPU, so the counters move
    second, later = box_ticks(), loop_schedstat(os.getpid())
    assert second is not None and second[1] >= first[1]
    assert later is not None and later[0] > mine[0]
    assert loop_schedstat(None) is None


def test_the_record_writes_come_from_the_bridges_requested_lines(tmp_path: Path) -> None:
    log = tmp_path / "bridge.log"
    lines = [
        {"event": "carry transfer requested", "handoff_id": "h-1", "record_ms": 1.5,
         "timestamp": "2026-12-04T15:00:00.004000Z"},
        {"event": "carry transfer state", "state": "dialing"},
        {"event": "three-way requested", "handoff_id": "h-2", "record_ms": 3.0,
         "timestamp": "2026-12-04T15:00:01.000000Z"},
        {"event": "carry transfer requested", "handoff_id": "h-3", "record_ms": 0.5,
         "timestamp": "2026-12-04T15:00:02.000000Z"},
    ]  # fmt: skip
    log.write_text("\n".join(json.dumps(x) for x in lines) + '\nnot json "record_ms"\n')
    t0 = datetime(2026, 12, 4, 15, tzinfo=UTC).timestamp()
    calls = [
        DrillCall("u1", "c", "n", "a", "ac", way="bridge", press_at=t0 + 0.001,
                  handoff_id="h-1", partner_invite_at=t0 + 0.014),
        DrillCall("u2", "c", "n", "a", "ac", way="raw", press_at=t0 + 0.5,
                  handoff_id="raw-u2", partner_invite_at=t0 + 0.511),
        DrillCall("u3", "c", "n", "a", "ac", way="bridge", press_at=t0 + 3, handoff_id="h-9"),
    ]  # fmt: skip
    entry = record_writes(log, calls)
    rec = entry["record_write_ms"]
    assert (rec["n"], rec["p50"], rec["max"]) == (3, 1.5, 3.0)
    assert entry["press_to_actions_ms"]["p50"] == 3.0  # 15:00:00.004 - .001
    assert entry["actions_to_invite_ms"]["p50"] == 10.0  # .014 - .004
    assert entry["raw_actions_to_invite_ms"]["p50"] == 11.0
    assert set(record_writes(log)) == {"record_write_ms"}  # no calls: no split
    assert record_writes(tmp_path / "none.log") == {} and record_writes(None) == {}


def test_the_bench_sets_each_phases_record_write_beside_its_p50_gap() -> None:
    def way(p50: float) -> dict[str, Any]:
        return {"latency_ms": {INVITE: {"p50": p50}}}

    split = {
        "record_write_ms": {"n": 600, "p50": 2.1, "p99": 9.4},
        "press_to_actions_ms": {"p50": 3.6},
        "actions_to_invite_ms": {"p50": 15.1},
        "raw_actions_to_invite_ms": {"p50": 12.75},
    }
    phases = {
        "mixed@postgres": {
            "by_way": {"bridge": way(20.5), "raw": way(12.75)},
            "press_split": split,
        },
        "raw": {"by_way": {"raw": way(12.0)}, "press_split": {}},
    }
    (row,) = [line for line in _record_share(phases) if line.startswith("| mixed")]
    assert row == "| mixed@postgres | 7.75 (20.5 - 12.75) | 2.1 / 9.4 | 3.6 | 15.1 | 12.75 |"
    assert _record_share({"raw": phases["raw"]}) == []
