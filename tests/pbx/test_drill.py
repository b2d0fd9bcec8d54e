"""A short load drill against the real sandbox PBX: outcomes, never timings.

5 citizen calls/s for 20 s, each talking G.711, every one carry-transferred (a tenth three-way,
then the agent leaves) the moment the queue bridges it with a pool agent; the drill's 110 desk
checks From == P-Asserted-Identity and X-Handoff-Id per call, and each number is checked again
against the bridge's own records. Timings on a shared CI machine prove nothing, so none are
asserted; `make bench` measures them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab.drill import DrillOptions, run_drill
from lab.sandbox import Sandbox

pytestmark = pytest.mark.pbx


async def test_short_drill_transfers_every_call_and_carries_every_number(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    opts = DrillOptions(
        rate=5,
        duration=20,
        mix=0.1,
        hold=4,
        topology=sandbox.topology_path,
        results=tmp_path,
        label="ci",
        progress=False,
    )
    report = await run_drill(opts)
    problems = report["problems"]
    calls, carry, three = report["calls"], report["transfers"], report["three_way"]

    assert calls["offered"] == 100, report["calls"]
    assert calls["dropped"] == 0, problems
    assert calls["reached_agent"] == 100, problems
    assert calls["ended_by_citizen"] == 100, problems

    assert three["attempted"] == 10, three  # every 10th call
    assert three["answered"] == three["agent_left"] == 10, (three, problems)
    assert carry["attempted"] == 90, carry
    assert carry["answered"] == 90 and carry["failed"] == 0, (carry, problems)

    carried = report["carried"]
    assert carried["checked_at_partner"] == 100, carried
    assert carried["verified"] == 100 and carried["unverified"] == 0, carried
    assert carried["records_checked"] == 100, carried

    # Audio really flowed, through Asterisk, both ways.
    media = report["media"]
    assert media.get("ok"), media
    assert media["codecs"] == ["alaw"], media

    assert report["ok"], problems

    # The report files a person (or CI artifact) reads.
    out = Path(report["results_dir"])
    assert out.parent == tmp_path
    saved = json.loads((out / "report.json").read_text())
    assert saved["calls"] == calls and saved["ok"]
    lines = (out / "calls.jsonl").read_text().splitlines()
    assert len(lines) == 100
    assert all(json.loads(line)["carried"] for line in lines)
    assert (out / "latency.png").stat().st_size > 10_000  # matplotlib is a dev dependency
