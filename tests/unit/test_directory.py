"""The linkage directory: the seed loads, bad files name path:line: field, resolution is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline_bridge.directory.loader import DirectoryError, load_directory, parse_directory
from hotline_bridge.directory.model import (
    CITY_WIDE,
    DialPlanEntry,
    Purpose,
    Refusal,
    TargetKind,
    can_receive_record,
    resolve,
)

JURISDICTIONS = ["gucheng", "yulong", "yongsheng", "huaping", "ninglang"]
P = Path("t.toml")

GOOD = """\
[directory]
version = 1

[targets.110]
kind = "linked"
site = "110"
label_zh = "110"
label_en = "110 police"
forwarding_number = "12345"
three_way = true
[targets.110.desks]
city = { dial = "PJSIP/110@partner-110", number = "110" }
yulong = { dial = "PJSIP/1102@desk-110-yulong", number = "1102" }

[targets.gas]
kind = "line"
label_zh = "燃气"
label_en = "Gas"
forwarding_number = "12345"
hours = ["08:00-12:00", "14:00-18:00"]
[targets.gas.desks]
city = { dial = "PJSIP/96777@desk-gas", number = "96777" }
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(DirectoryError) as info:
        parse_directory(text, P)
    return info.value.problems


def test_the_seed_has_every_target_for_every_jurisdiction() -> None:
    d = load_directory()
    assert set(d.targets) == {"110", "119", "120", "122", "water", "power", "gas"}
    assert d.linked_sites() == {"110"}
    for tid in d.targets:
        for j in JURISDICTIONS:
            entry = resolve(d, tid, j)
            assert isinstance(entry, DialPlanEntry), (tid, j, entry)
    # Section 2's proof: two jurisdictions reach two different SIPp desks.
    a = resolve(d, "110", "gucheng")
    b = resolve(d, "110", "yulong")
    assert isinstance(a, DialPlanEntry) and isinstance(b, DialPlanEntry)
    assert a.dial.rpartition("@")[2] != b.dial.rpartition("@")[2]


def test_own_desk_then_city_wide() -> None:
    d = parse_directory(GOOD, P)
    own = resolve(d, "110", "yulong")
    city = resolve(d, "110", "ninglang")
    unknown = resolve(d, "110", "unknown")
    assert isinstance(own, DialPlanEntry) and own.routed_as == "yulong" and own.number == "1102"
    assert isinstance(city, DialPlanEntry) and city.routed_as == CITY_WIDE
    assert city.dial == "PJSIP/110@partner-110" and not city.overridden
    assert isinstance(unknown, DialPlanEntry) and unknown.routed_as == CITY_WIDE
    assert own.pushes_record and own.kind is TargetKind.LINKED


def test_an_override_is_recorded_and_the_call_keeps_its_jurisdiction() -> None:
    d = parse_directory(GOOD, P)
    e = resolve(d, "110", "gucheng", override="yulong")
    assert isinstance(e, DialPlanEntry)
    assert (e.jurisdiction, e.routed_as, e.overridden) == ("gucheng", "yulong", True)
    same = resolve(d, "110", "yulong", override="yulong")
    assert isinstance(same, DialPlanEntry) and not same.overridden


@pytest.mark.parametrize(
    ("target", "kwargs", "code"),
    [
        ("119", {}, "unknown_target"),
        ("gas", {"purpose": Purpose.THREE_WAY}, "three_way_not_allowed"),
        ("110", {"override": "beijing"}, "unknown_jurisdiction"),
        ("110", {"override": "unknown"}, "unknown_jurisdiction"),
        ("gas", {"minute_of_day": 13 * 60}, "target_closed"),
        ("gas", {"minute_of_day": 18 * 60}, "target_closed"),
    ],
)
def test_refusals_carry_a_reason(target: str, kwargs: dict[str, object], code: str) -> None:
    d = parse_directory(GOOD, P)
    r = resolve(d, target, "gucheng", **kwargs)  # type: ignore[arg-type]
    assert isinstance(r, Refusal) and r.code == code and r.reason


def test_open_hours_and_three_way_allowed() -> None:
    d = parse_directory(GOOD, P)
    assert isinstance(resolve(d, "gas", "huaping", minute_of_day=8 * 60), DialPlanEntry)
    assert isinstance(resolve(d, "110", "huaping", purpose=Purpose.THREE_WAY), DialPlanEntry)


def test_who_can_receive_a_record() -> None:
    d = parse_directory(GOOD, P)
    police, gas = d.targets["110"], d.targets["gas"]
    assert can_receive_record(police, "110", frozenset()) is None
    refused = can_receive_record(police, None, frozenset())
    assert isinstance(refused, Refusal) and refused.code == "target_unreachable"
    assert can_receive_record(gas, None, frozenset()) is None
    water = load_directory().targets["water"]
    assert can_receive_record(water, None, frozenset({"water-co"})) is None
    assert isinstance(can_receive_record(water, None, frozenset()), Refusal)


def test_schema_errors_name_line_and_field() -> None:
    bad = GOOD.replace('dial = "PJSIP/1102@desk-110-yulong"', 'dial = "PJSIP/x,r(evil)"')
    (p,) = _problems(bad)
    assert p.startswith("t.toml:13: targets.110.desks.yulong.dial:"), p


def test_unknown_key_and_unknown_jurisdiction_are_refused() -> None:
    problems = _problems(GOOD.replace("three_way = true", "three_wya = true"))
    assert any(p.startswith("t.toml:10: targets.110.three_wya:") for p in problems), problems
    problems = _problems(GOOD.replace("yulong = {", "lijiang = {"))
    assert any("t.toml:13: targets.110.desks.lijiang: unknown jurisdiction" in p for p in problems)


def test_semantic_problems() -> None:
    no_city = GOOD.replace('city = { dial = "PJSIP/96777@desk-gas", number = "96777" }\n', "")
    no_city = no_city.replace(
        "[targets.gas.desks]\n",
        '[targets.gas.desks]\nyulong = { dial = "PJSIP/1@d", number = "1" }\n',
    )
    assert any("targets.gas.desks: no 'city' desk" in p for p in _problems(no_city))
    linked_without_site = GOOD.replace('site = "110"\n', "")
    assert any("targets.110.site:" in p for p in _problems(linked_without_site))
    line_with_site = GOOD.replace('kind = "line"', 'kind = "line"\nsite = "12345"')
    assert any("targets.gas.site:" in p for p in _problems(line_with_site))
    backwards = GOOD.replace('"14:00-18:00"', '"18:00-14:00"')
    assert any("targets.gas.hours[1]: window" in p for p in _problems(backwards))
    wrong_version = GOOD.replace("version = 1", "version = 2")
    assert any(p.startswith("t.toml:2: directory.version:") for p in _problems(wrong_version))


def test_syntax_error_names_the_line() -> None:
    (p,) = _problems(GOOD.replace('label_en = "Gas"', "label_en = Gas"))
    assert p.startswith("t.toml:18: label_en:") and "TOML syntax error" in p, p


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="file not found"):
        load_directory(tmp_path / "none.toml")
