"""The bench's micro-benchmarks run (they failed silently inside `make bench` for a day: the
agent pool override no longer fit the bridge's strict settings): small sizes, no timing."""

from __future__ import annotations

from lab.microbench import ingest, live_calls_rss, synthetic_stream
from lab.sandbox import DEFAULT_TOPOLOGY


async def test_live_calls_rss_builds_a_pool_and_holds_every_call() -> None:
    got = await live_calls_rss(30, DEFAULT_TOPOLOGY)
    assert got["calls"] == 30 and got["live_calls"] == 30 and got["channels"] == 60
    assert got["agents_configured"] >= 30
    assert got["rss_mb_with_calls"] > 0


async def test_ingest_dispatches_the_subscribed_events_without_handler_errors() -> None:
    got = await ingest(synthetic_stream(5), DEFAULT_TOPOLOGY, repeat=1)
    assert got["events"] > got["dispatched"] > 0
    assert got["handler_errors"] == 0


def test_its_output_is_the_json_the_bench_reads() -> None:
    # The bridge's warnings printed to stdout once made every bench run lose its results.
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lab.microbench", "--calls", "40", "--synthetic-calls", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(proc.stdout)
    assert got["rss"]["live_calls"] == 40 and got["ingest_synthetic"]["handler_errors"] == 0


async def test_the_hotkey_micro_benchmark_presses_through_the_real_api_to_a_stand_in_pbx() -> None:
    from lab.hotkeybench import hotkey_path

    got = await hotkey_path(6, DEFAULT_TOPOLOGY, warmup=2)
    # Every press accepted, each one's actions written and read by the stand-in PBX, and each
    # record's write timed: the figures are of presses that really went through.
    assert got["statuses"] == {"202": 8}
    assert got["presses"] == got["reached_pbx"] == 6
    assert got["record_write"]["n"] == 6 and got["record_write"]["p50"] > 0
    assert got["hotkey_to_answer"]["p50"] >= got["hotkey_to_actions_written"]["p50"] > 0
