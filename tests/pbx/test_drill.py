"""A short load drill against the real sandbox PBX: outcomes, never timings.

5 citizen calls/s for 20 s, each talking G.711, every one carry-transferred (a tenth three-way,
then the agent leaves) the moment the queue bridges it with a pool agent; the drill's 110 desk
checks From == P-Asserted-Identity and X-Handoff-Id per call, and each number is checked again
against the bridge's own records. Timings on a shared CI machine prove nothing, so none are
asserted; `make bench` measures them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from lab.drill import Drill, DrillOptions, run_drill
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


async def test_a_mix_over_every_target_and_jurisdiction_rings_each_pair_s_own_desk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Issue 12: 35 calls, one per target x jurisdiction (7 x 5, round-robin), each carried
    with the agent's jurisdiction override, or for Yulong by the trunk's own jurisdiction (the
    entry hook's), a tenth three-way where the target takes it. Each
    INVITE is judged from the SIPp desk that got it: the target's own desk (port), the
    jurisdiction's number (request URI), the citizen's number in From and PAI, the handoff's
    X-Handoff-Id. One misrouted, missing or wrong-number call fails the test."""
    targets = ("110", "119", "120", "122", "water", "power", "gas")
    opts = DrillOptions(
        rate=1.75,
        duration=20,
        mix=0.1,
        hold=4,
        topology=sandbox.topology_path,
        results=tmp_path,
        label="ci-mix",
        progress=False,
        plot=False,
        targets=targets,
    )
    report = await run_drill(opts)
    problems = report["problems"]
    calls = report["calls"]
    assert calls["offered"] == 35, calls
    assert calls["reached_agent"] == 35 and calls["dropped"] == 0, problems

    mix = report["mix"]
    t = mix["totals"]
    assert (t["misrouted"], t["number_wrong"], t["missing"], t["other"]) == (0, 0, 0, 0), problems
    assert t["calls"] == t["carried"] == t["verified"] == 35, (t, problems)
    assert t["pairs"] == t["pairs_hit"] == t["pairs_verified"] == 35, t
    # Yulong's 7 calls came in on the drill trunk (Yulong's for this bridge's entry hook) and
    # were pressed without an override: their desks come from the call's own jurisdiction.
    assert t["by_entry"] == 7 and all(
        r["by_entry"] == (r["jurisdiction"] == "yulong") for r in mix["pairs"]
    ), mix["pairs"]
    rows = {(r["target"], r["jurisdiction"]): r for r in mix["pairs"]}
    assert set(rows) == {(tg, j) for tg in targets for j in mix["jurisdictions"]}
    assert all(r["calls"] >= 1 and r["verified"] == r["calls"] for r in rows.values()), rows
    # Each pair rang its own number at its target's desk (the SIP that left the PBX).
    assert rows[("119", "yulong")]["desk"] == "drill-desk-119/1192"
    assert rows[("water", "ninglang")]["desk"] == "drill-desk-water/966065"
    # Calls 10 and 30 (120 and 119) were three-way; call 20 (power) takes none: carried.
    three = report["three_way"]
    assert three["attempted"] == three["answered"] == three["agent_left"] == 2, (three, problems)
    assert t["three_way"] == 2
    assert report["ok"], problems

    out = Path(report["results_dir"])
    per_call = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert all(c["desk"] == c["expected_desk"] and c["verdict"] == "verified" for c in per_call)
    md = (out / "report.md").read_text()
    assert "| 119 | yulong | `drill-desk-119/1192` | 1 |" in md


async def test_a_mix_drill_whose_directory_rings_the_wrong_desk_fails_and_says_where(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The check can fail: the bridge is given a directory with two faults planted (119 Yulong
    dialled at 120's desk; 120 Gucheng dialled as 1203, Yongsheng's number) while the drill
    expects the right desks. Both calls are counted misrouted, from the SIP the desks got."""
    opts = DrillOptions(
        rate=1,
        duration=4,
        hold=3,
        topology=sandbox.topology_path,
        results=tmp_path,
        label="ci-mix-fault",
        progress=False,
        plot=False,
        targets=("119", "120"),
        jurisdictions=("gucheng", "yulong"),
    )
    drill = Drill(opts)
    assert drill.mix is not None
    text = drill.mix.directory_text
    for right, wrong in (
        (
            'yulong = { dial = "PJSIP/1192@drill-desk-119"',
            'yulong = { dial = "PJSIP/1192@drill-desk-120"',
        ),
        (
            'gucheng = { dial = "PJSIP/1201@drill-desk-120"',
            'gucheng = { dial = "PJSIP/1203@drill-desk-120"',
        ),
    ):
        assert right in text
        text = text.replace(right, wrong)
    drill.mix = dataclasses.replace(drill.mix, directory_text=text)
    report = await drill.run()

    assert report["calls"]["reached_agent"] == 4, report["problems"]
    rows = {(r["target"], r["jurisdiction"]): r for r in report["mix"]["pairs"]}
    assert rows[("119", "yulong")]["misrouted"] == 1, rows
    assert rows[("120", "gucheng")]["misrouted"] == 1, rows
    assert rows[("119", "gucheng")]["verified"] == rows[("120", "yulong")]["verified"] == 1, rows
    assert report["mix"]["totals"]["misrouted"] == 2
    assert not report["ok"]
    assert "mix: 2 handoffs rang another desk or number than the directory's" in report["problems"]
    per_call = {
        (c["target"], c["jurisdiction"]): c
        for c in map(json.loads, (Path(report["results_dir"]) / "calls.jsonl").open())
    }
    assert per_call[("119", "yulong")]["desk"] == "drill-desk-120/1192"
    assert per_call[("120", "gucheng")]["desk"] == "drill-desk-120/1203"
