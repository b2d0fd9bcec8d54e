"""Handling units, time limits and supervision, pure: the shipped directory, the suggestion rules,
working-day deadlines, load errors that name file/line/field, and the supervision check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotline_bridge.catalog import load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.model import (
    Actor,
    EventKind,
    HandoffEvent,
    Status,
    event,
)
from hotline_bridge.handoffs.status import (
    fold_events,
)
from hotline_bridge.units.directory import UnitsError, load_directory, shipped
from hotline_bridge.units.supervision import check

CATEGORIES = frozenset(load_catalog().categories)
DIRECTORY = load_directory(known_categories=CATEGORIES)


def test_the_shipped_directory_has_every_county_and_the_departments() -> None:
    counties = {u.jurisdiction for u in DIRECTORY.units.values() if u.kind.value == "county"}
    assert counties == set(Jurisdiction) - {Jurisdiction.UNKNOWN}
    assert len(DIRECTORY.units) == 11


@pytest.mark.parametrize(
    ("category", "jurisdiction", "unit"),
    [
        ("dispute.consumer", Jurisdiction.YULONG, "city-market"),  # by function, city-wide
        ("dispute.labour", Jurisdiction.HUAPING, "city-hrss"),
        ("dispute.neighbour", Jurisdiction.NINGLANG, "ninglang-gov"),  # 属地
        (None, Jurisdiction.GUCHENG, "gucheng-gov"),
    ],
)
def test_suggestion_by_function_then_territory(
    category: str | None, jurisdiction: Jurisdiction, unit: str
) -> None:
    suggestion = DIRECTORY.suggest(category, jurisdiction)
    assert suggestion is not None and suggestion.unit.id == unit


def test_no_suggestion_without_a_rule() -> None:
    assert DIRECTORY.suggest("dispute.neighbour", Jurisdiction.UNKNOWN) is None


def test_limits_count_working_days_skipping_holidays_and_honouring_working_weekends() -> None:
    # Wednesday 30 Sep 2026, 10:00 Beijing time; 1-7 October are holidays, Saturday 10 October
    # is worked (shipped example calendar).
    assigned = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)
    sign_by, complete_by = DIRECTORY.deadlines("help.utilities", assigned)
    assert sign_by == assigned + timedelta(hours=2)
    assert complete_by == datetime(2026, 10, 8, 16, 0, tzinfo=UTC)  # end of Thu 8 Oct (CST)
    _, complete_by = DIRECTORY.deadlines("dispute.neighbour", assigned)  # default: 5 days
    # 8 (Thu), 9 (Fri), 10 (worked Sat), 12 (Mon), 13 (Tue): end of 13 October, Beijing time.
    assert complete_by == datetime(2026, 10, 13, 16, 0, tzinfo=UTC)
    # An ordinary week: Monday 2 Nov, 3 working days -> end of Thursday 5 Nov.
    _, complete_by = DIRECTORY.deadlines("consult.law_policy", datetime(2026, 11, 2, 1, tzinfo=UTC))
    assert complete_by == datetime(2026, 11, 5, 16, 0, tzinfo=UTC)


def test_load_errors_name_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    units = tmp_path / "units.toml"
    text = shipped("units.toml").read_text(encoding="utf-8")
    units.write_text(
        text.replace('kind = "department"\ncategories = ["dispute.labour"]',
                     'kind = "department"\ncategories = ["dispute.labor"]')
        .replace('jurisdiction = "huaping"', 'jurisdiction = "gucheng"')
        + '\n[[units]]\nid = "x"\nname_zh = "某单位"\nname_en = "X"\nkind = "agency"\n',
        encoding="utf-8",
    )  # fmt: skip
    with pytest.raises(UnitsError) as err:
        load_directory(units, known_categories=CATEGORIES)
    problems = "\n".join(err.value.problems)
    assert f"{units}:" in problems
    assert "units[11].kind" in problems  # the enum error on the new unit
    line_of_kind = text.count("\n") + 1 + 5
    assert f"{units}:{line_of_kind}: units[11].kind" in problems


def test_semantic_errors_are_named_too(tmp_path: Path) -> None:
    units = tmp_path / "units.toml"
    units.write_text(
        shipped("units.toml")
        .read_text(encoding="utf-8")
        .replace('categories = ["dispute.labour"]', 'categories = ["dispute.labor"]')
        .replace('jurisdiction = "huaping"', 'jurisdiction = "gucheng"'),
        encoding="utf-8",
    )
    with pytest.raises(UnitsError) as err:
        load_directory(units, known_categories=CATEGORIES)
    problems = "\n".join(err.value.problems)
    assert "units[3].jurisdiction: gucheng-gov has it" in problems
    assert "units[6].categories: unknown 'dispute.labor'" in problems


# -- supervision ----------------------------------------------------------------------------------

T = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
SYS = Actor.system()


def life(*events: HandoffEvent) -> list[HandoffEvent]:
    created = event(EventKind.CREATED, actor=SYS, at=T - timedelta(hours=1))
    return [e.model_copy(update={"seq": i}) for i, e in enumerate((created, *events), start=1)]


def assigned(sign_by: datetime, complete_by: datetime) -> HandoffEvent:
    return event(
        EventKind.ASSIGNED,
        actor=Actor.agent("1001"),
        at=T,
        unit="yulong-gov",
        sign_by=sign_by.isoformat(),
        complete_by=complete_by.isoformat(),
    )


def test_the_fold_follows_a_matter_through_its_unit() -> None:
    sign_by, complete_by = T + timedelta(hours=24), T + timedelta(days=5)
    state = fold_events(life(assigned(sign_by, complete_by)))
    assert (state.status, state.unit, state.sign_by, state.complete_by) == (
        Status.ASSIGNED, "yulong-gov", sign_by, complete_by,
    )  # fmt: skip
    unit = Actor(kind="unit", id="yulong-gov")  # type: ignore[arg-type]
    signed = event(EventKind.UNIT_ACKNOWLEDGED, actor=unit, at=T, unit="yulong-gov")
    back = event(
        EventKind.UNIT_RETURNED, actor=unit, at=T, unit="yulong-gov", reason="非本单位职责"
    )
    state = fold_events(life(assigned(sign_by, complete_by), signed, back))
    assert state.status is Status.UNIT_RETURNED and state.unit is None
    assert state.unit_return_reason == "非本单位职责" and state.complete_by is None


def test_supervision_warns_once_then_escalates_once_per_stage() -> None:
    sign_by, complete_by = T + timedelta(hours=24), T + timedelta(days=5)
    limit = DIRECTORY.limit_for(None)  # due_soon_hours = 24
    history = life(assigned(sign_by, complete_by))
    assert check(fold_events(history), limit, T + timedelta(hours=1)) != []  # sign due soon
    first = check(fold_events(history), limit, T + timedelta(hours=1))
    assert [(d.kind, d.data["stage"]) for d in first] == [(EventKind.DUE_SOON, "sign")]
    history += [event(d.kind, actor=SYS, at=T, **d.data) for d in first]
    assert check(fold_events(history), limit, T + timedelta(hours=2)) == []  # already warned
    late = check(fold_events(history), limit, sign_by + timedelta(minutes=1))
    assert [d.kind for d in late] == [EventKind.OVERDUE, EventKind.SUPERVISED]
    assert "超期未签收" in late[1].data["text"]
    history += [event(d.kind, actor=SYS, at=T, **d.data) for d in late]
    renumbered = [e.model_copy(update={"seq": i}) for i, e in enumerate(history, start=1)]
    assert check(fold_events(renumbered), limit, sign_by + timedelta(hours=2)) == []
    # Past the completion limit while still unsigned: the completion stage escalates too.
    stage = check(fold_events(renumbered), limit, complete_by + timedelta(seconds=1))
    assert [(d.kind, d.data.get("stage")) for d in stage] == [
        (EventKind.OVERDUE, "complete"), (EventKind.SUPERVISED, None),
    ]  # fmt: skip


def test_closed_matters_are_not_supervised() -> None:
    sign_by, complete_by = T + timedelta(hours=1), T + timedelta(hours=2)
    closed = event(EventKind.CLOSED, actor=SYS, at=T)
    state = fold_events(life(assigned(sign_by, complete_by), closed))
    assert check(state, DIRECTORY.limit_for(None), T + timedelta(days=9)) == []
