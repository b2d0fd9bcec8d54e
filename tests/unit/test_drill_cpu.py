"""The drill's CPU accounting: the machine's busy share and the bridge loop's run-queue wait,
which tell a box that is out of CPU from a bridge that is slow at its own work."""

from __future__ import annotations

import os

from lab.drill.options import box_ticks, loop_schedstat
from lab.drill.report import box_entry, loop_wait_entry


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
