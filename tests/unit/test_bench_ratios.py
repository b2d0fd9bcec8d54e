"""The bench's store verdicts: each mixed phase's bridge/raw ratio against the raw calls of the
same phase, and the median of the --repeat'ed phases per store, which the targets are judged by."""

from __future__ import annotations

from typing import Any

from lab.bench import INVITE, markdown, store_ratios


def mixed(bridge: tuple[float, float], raw: tuple[float, float]) -> dict[str, Any]:
    def way(p50: float, p99: float) -> dict[str, Any]:
        return {"latency_ms": {INVITE: {"p50": p50, "p99": p99}}}

    return {"by_way": {"bridge": way(*bridge), "raw": way(*raw)}}


def test_one_phase_per_store_is_judged_alone() -> None:
    got = store_ratios(
        {
            "mixed": mixed((11.0, 30.0), (10.0, 25.0)),
            "mixed@postgres": mixed((20.0, 60.0), (10.0, 30.0)),
            "bridge": {"by_way": {}},
        }
    )
    assert got["sqlite"]["p50_ratio"] == 1.1 and got["sqlite"]["p50_met"] is True
    assert got["sqlite"]["p99_ratio"] == 1.2 and got["sqlite"]["p99_met"] is True
    assert got["postgres"]["p50_ratio"] == 2.0 and got["postgres"]["p50_met"] is False
    assert len(got["sqlite"]["repeats"]) == 1


def test_repeats_are_judged_by_their_median_not_by_their_best_or_worst() -> None:
    got = store_ratios(
        {
            "mixed": mixed((7.0, 30.0), (10.0, 30.0)),  # 0.7x: a lucky spell
            "mixed#2": mixed((12.0, 30.0), (10.0, 30.0)),  # 1.2x
            "mixed#3": mixed((30.0, 90.0), (10.0, 30.0)),  # 3.0x: someone else's load
            "mixed@postgres#2": mixed((15.0, 30.0), (10.0, 30.0)),
        }
    )
    sqlite = got["sqlite"]
    assert [r["p50_ratio"] for r in sqlite["repeats"]] == [0.7, 1.2, 3.0]
    assert sqlite["p50_ratio"] == 1.2 and sqlite["p50_met"] is False
    assert sqlite["p99_ratio"] == 1.0 and sqlite["p99_met"] is True
    assert sqlite["bridge_p50_ms"] == 12.0 and sqlite["raw_p50_ms"] == 10.0
    assert got["postgres"]["p50_ratio"] == 1.5


def test_the_table_names_the_median_and_every_repeat() -> None:
    by_store = store_ratios(
        {"mixed": mixed((7.0, 30.0), (10.0, 30.0)), "mixed#2": mixed((12.0, 30.0), (10.0, 30.0))}
    )
    result: dict[str, Any] = {
        "stamp": "x",
        "machine": {
            "cpu": "c",
            "cores": 2,
            "memory": "m",
            "kernel": "k",
            "python": "3",
            "loadavg_at_start": ["0", "0", "0"],
        },
        "conditions": {
            "rate": 20,
            "duration": 60,
            "hold": 8,
            "burst_rate": 0,
            "burst_duration": 0,
            "order": ["mixed"],
            "foreign_channels_at_start": 0,
            "event_loop": "asyncio",
        },
        "phases": {},
        "bursts": {},
        "micro": {"error": "not run"},
        "drill_dirs": "d",
        "verdicts": {"by_store": by_store},
    }
    text = markdown(result)
    assert "sqlite, median of 2 repeats" in text
    assert "0.95x (each: 0.7x, 1.2x)" in text
