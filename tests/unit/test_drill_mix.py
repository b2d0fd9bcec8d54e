"""The mix drill's pure parts: the plan (its directory, the desk each pair must ring), the
round-robin, the verdict per call and the per target x jurisdiction table. The PBX proof is
tests/pbx/test_drill.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab.drill import DrillError, DrillOptions
from lab.drill.mix import JURISDICTIONS, PRESETS, MixPlan, build_plan, table, totals
from lab.drill.options import DrillCall
from lab.drill.verify import judge
from lab.sandbox import DEFAULT_TOPOLOGY, load_topology, sandbox_module

from hotline_bridge.directory.configured import endpoints
from hotline_bridge.directory.loader import parse_directory
from hotline_bridge.directory.model import Refusal, resolve

NETWORK = PRESETS["network"]


def plan(
    targets: tuple[str, ...] = NETWORK[0], jurisdictions: tuple[str, ...] = JURISDICTIONS
) -> MixPlan:
    return build_plan(load_topology(DEFAULT_TOPOLOGY), targets, jurisdictions)


def test_the_drill_directory_sends_every_pair_to_its_target_s_desk_with_its_own_number() -> None:
    p = plan()
    directory = parse_directory(p.directory_text, Path("drill-targets.toml"))
    assert set(endpoints(directory)) == set(p.ports) == {f"drill-desk-{t}" for t in NETWORK[0]}
    numbers = set()
    for (t, j), desk in p.expected.items():
        found = resolve(directory, t, "unknown", j)  # the drill's calls: the agent's override
        assert not isinstance(found, Refusal), found
        assert (found.dial, found.number) == (f"PJSIP/{desk.number}@{desk.endpoint}", desk.number)
        numbers.add((desk.endpoint, desk.number))
    assert len(numbers) == 35  # every pair tells itself apart at its desk
    # The seed's own numbering: 119 Yulong is 1192, water Yulong 966062.
    assert p.expected[("119", "yulong")].number == "1192"
    assert p.expected[("water", "yulong")].number == "966062"
    # Without the override the call would ring the city desk: a misroute the drill can see.
    city = resolve(directory, "120", "unknown")
    assert not isinstance(city, Refusal) and city.number == "120"


def test_the_round_robin_covers_every_pair_in_the_first_t_x_j_calls() -> None:
    p = plan()
    first = [p.assign(n) for n in range(1, 36)]
    assert sorted(first) == sorted(p.pairs)
    assert [t for t, _ in first[:7]] == list(NETWORK[0])  # consecutive calls, different desks
    assert p.assign(36) == p.assign(1)


def test_the_sandbox_renders_a_desk_endpoint_per_drill_desk() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    pjsip = sandbox_module().render_files(topo)["pjsip.conf"]
    for ep, port in plan().ports.items():
        assert f"[{ep}](hotline-endpoint)" in pjsip
        assert f"contact = sip:127.0.0.1:{port}\n" in pjsip  # no user: the R-URI is the number
        assert 5420 <= port <= 5439


def test_options_refuse_a_mix_that_cannot_run() -> None:
    with pytest.raises(DrillError, match="mode bridge"):
        DrillOptions(mode="raw", targets=("110",)).check()
    with pytest.raises(DrillError, match="jurisdictions"):
        DrillOptions(targets=("110",), jurisdictions=("atlantis",)).check()
    with pytest.raises(DrillError, match="give the targets"):
        DrillOptions(jurisdictions=("yulong",)).check()
    opts = DrillOptions(targets=("110", "gas"))
    opts.check()
    assert opts.jurisdictions == JURISDICTIONS
    with pytest.raises(DrillError, match="not in the site's directory"):
        plan(("110", "fire"))


def call(p: MixPlan, n: int, **changes: object) -> DrillCall:
    t, j = p.assign(n)
    desk = p.expected[(t, j)]
    rec = DrillCall(
        uid=f"u{n}",
        channel="PJSIP/drill-carrier-1",
        number=f"1390000{n:04d}",
        agent_id="2001",
        way="bridge",
        press_at=1.0,
        answer_at=1.001,
        status=202,
        ref=f"t-{n}",
        handoff_id=f"h-{n}",
        partner_invite_at=1.005,
        partner_from=f"1390000{n:04d}",
        partner_pai=f"1390000{n:04d}",
        partner_bridged_at=1.01,
        record_number=f"1390000{n:04d}",
        record_outcome="answered",
        record_state="answered",
        target=t,
        jurisdiction=j,
        expected_desk=f"{desk.endpoint}/{desk.number}",
        desk=f"{desk.endpoint}/{desk.number}",
        desk_invites=1,
        record_target=t,
        record_jurisdiction=j,
        by_entry=j == "yulong",
        expected_call_jurisdiction="yulong",
        record_call_jurisdiction="yulong",
        record_override="no" if j == "yulong" else "yes",
    )
    for k, v in changes.items():
        setattr(rec, k, v)
    return rec


def test_each_fault_is_counted_in_its_pair_s_row() -> None:
    p = plan()
    good = call(p, 1)
    wrong_desk = call(p, 2, desk="drill-desk-110/1101")  # 119's call rang 110 Gucheng
    city = call(p, 3, desk="drill-desk-120/120")  # the override lost: the city desk
    wrong_number = call(p, 4, partner_pai="13800000000")
    missing = call(p, 5, partner_invite_at=None, desk="", desk_invites=0)
    calls = [good, wrong_desk, city, wrong_number, missing]
    numbers = {c.number for c in calls}
    for rec in calls:
        judge(rec, numbers)
    assert [c.verdict for c in calls] == [
        "verified",
        "misrouted",
        "misrouted",
        "number_wrong",
        "missing",
    ]
    rows = {(r["target"], r["jurisdiction"]): r for r in table(p, calls)}
    assert rows[("110", "gucheng")]["verified"] == 1
    assert rows[("119", "gucheng")]["misrouted"] == 1
    assert rows[("122", "gucheng")]["number_wrong"] == 1
    assert rows[("water", "gucheng")]["missing"] == 1
    t = totals(list(rows.values()))
    assert (t["calls"], t["verified"], t["misrouted"], t["number_wrong"], t["missing"]) == (
        5,
        1,
        2,
        1,
        1,
    )
    assert (t["pairs"], t["pairs_hit"], t["pairs_verified"]) == (35, 5, 1)


def test_a_record_that_did_not_route_as_pressed_is_a_fault() -> None:
    p = plan()
    by_entry = call(p, 8)  # 110 Yulong: the drill trunk's own jurisdiction, no override
    assert by_entry.by_entry and by_entry.jurisdiction == "yulong"
    overridden_anyway = call(p, 9, record_override="yes")
    lost_entry = call(p, 10, record_call_jurisdiction="unknown")  # the entry hook never ran
    numbers = {c.number for c in (by_entry, overridden_anyway, lost_entry)}
    for rec in (by_entry, overridden_anyway, lost_entry):
        judge(rec, numbers)
    assert by_entry.verdict == "verified"
    assert overridden_anyway.verdict == lost_entry.verdict == "other"
    assert "call jurisdiction unknown" in lost_entry.problem
