"""The handoff record: construction from a hotkey press, validation, JSON round-trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from hotline_bridge.catalog import MatterClass, Platform, load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    HandoffInputError,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    CallRef,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    Location,
    event,
)

NOW = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
CATALOG = load_catalog()
AGENT = Actor.agent("1001")


def make(data: HandoffInput | None = None, **overrides: Any) -> HandoffRecord:
    args: dict[str, Any] = {
        "handoff_id": "h-01hx0000000000000000000000",
        "kind": HandoffKind.CARRY_TRANSFER,
        "direction": Direction.TO_110,
        "target": "110",
        "citizen_number": "13800138000",
        "created_by": AGENT,
        "catalog": CATALOG,
        "now": NOW,
        "call": CallRef(call_id="1714552200.17", linked_id="1714552200.17"),
    }
    args.update(overrides)
    return new_handoff(data or HandoffInput(), **args)


def errors_for(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


# -- a hotkey press --------------------------------------------------------------------------


def test_empty_hotkey_press_makes_a_valid_record() -> None:
    record = make(HandoffInput.model_validate({}))
    assert record.id.startswith("h-")
    assert record.snapshot.matter.matter_class is None
    assert record.snapshot.matter.jurisdiction is Jurisdiction.UNKNOWN
    assert record.snapshot.first_receiver is Platform.HOTLINE_12345
    assert record.snapshot.source is Platform.HOTLINE_12345
    assert record.snapshot.refs.call_id == "1714552200.17"
    assert [e.kind for e in record.events] == [EventKind.CREATED]
    assert record.events[0].seq == 1


def test_category_alone_fills_the_matter_class_and_label() -> None:
    record = make(HandoffInput.model_validate({"category": "police.criminal"}))
    matter = record.snapshot.matter
    assert matter.matter_class is MatterClass.POLICE_MATTER
    assert matter.category_label_zh == "刑事类警情"
    assert matter.police_dispatch_first is False


def test_category_and_agreeing_class_are_accepted() -> None:
    data = HandoffInput(category="dispute.labour", matter_class=MatterClass.NON_POLICE_MATTER)
    assert make(data).snapshot.matter.matter_class is MatterClass.NON_POLICE_MATTER


def test_category_and_contradicting_class_name_the_field() -> None:
    data = HandoffInput(category="dispute.labour", matter_class=MatterClass.POLICE_MATTER)
    with pytest.raises(HandoffInputError) as exc:
        make(data)
    assert exc.value.problems[0]["field"] == "matter_class"
    assert "dispute.labour" in exc.value.problems[0]["problem"]


def test_unknown_category_names_the_field() -> None:
    with pytest.raises(HandoffInputError) as exc:
        make(HandoffInput(category="police.nonexistent"))
    assert exc.value.problems[0]["field"] == "category"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"danger_to_life": True}, True),
        ({"violent_risk": True}, True),
        ({"category": "first.harm_occurred"}, True),
        ({"category": "help.utilities"}, False),
        ({"danger_to_life": True, "police_dispatch_first": False}, False),
    ],
)
def test_police_dispatch_first_is_derived_unless_given(
    data: dict[str, Any], expected: bool
) -> None:
    assert make(HandoffInput.model_validate(data)).snapshot.matter.police_dispatch_first is expected


def test_direction_sets_the_first_receiver_unless_given() -> None:
    record = make(direction=Direction.TO_12345, target="12345")
    assert record.snapshot.first_receiver is Platform.POLICE_110
    record = make(direction=Direction.TO_12345, first_receiver=Platform.HOTLINE_12345)
    assert record.snapshot.first_receiver is Platform.HOTLINE_12345


def test_ids_are_url_safe_time_ordered_and_unique() -> None:
    ids = [new_handoff_id(1_714_552_200_000 + i) for i in range(50)]
    assert all(len(i) == 28 and i.startswith("h-") for i in ids)
    assert all(c in "0123456789abcdefghjkmnpqrstvwxyz" for i in ids for c in i[2:])
    assert ids == sorted(ids)
    assert len({new_handoff_id() for _ in range(1000)}) == 1000
    make(handoff_id=new_handoff_id())  # accepted by the model


# -- round trip ------------------------------------------------------------------------------

FULL_INPUT = {
    "category": "dispute.neighbour",
    "jurisdiction": "gucheng",
    "reason": "邻里噪音纠纷,非警务事项",
    "citizen_name": "和丽华",
    "callback": "08885123456",
    "confidential": True,
    "time": "今晚22点起",
    "place": "古城区七一街",
    "people": "楼上住户",
    "event": "深夜装修噪音",
    "request": "请有关部门协调",
    "narrative": "市民反映:\n楼上每晚施工。\t已多次沟通无果。",
    "location": {"address": "丽江市古城区七一街88号", "latitude": 26.872, "longitude": 100.234},
    "work_order_no": "LJ12345-2024-000123",
    "incident_no": "110-5307-20240501-0042",
    "related": ["h-01hx0000000000000000000001"],
    "deadline": "2024-05-03T16:00:00+08:00",
}


def test_json_round_trip_is_equal_and_keeps_chinese() -> None:
    record = make(HandoffInput.model_validate(FULL_INPUT))
    text = record.model_dump_json()
    assert "和丽华" in text and "楼上每晚施工" in text  # not \u-escaped
    again = HandoffRecord.model_validate_json(text)
    assert again == record
    assert again.snapshot.content.narrative == FULL_INPUT["narrative"]
    # Times are normalised to UTC.
    assert again.snapshot.deadline == datetime(2024, 5, 3, 8, 0, tzinfo=UTC)
    # And through the json module too (what the partner link will do).
    assert HandoffRecord.model_validate(json.loads(text)) == record


def test_round_trip_with_events() -> None:
    record = make()
    events = (
        *record.events,
        HandoffEvent(seq=2, at=NOW, actor=Actor.system(), kind=EventKind.PARTNER_ANSWERED),
        HandoffEvent(
            seq=3,
            at=NOW,
            actor=Actor(kind="partner", id="110-desk"),
            kind=EventKind.RETURNED,
            data={"reason": "不属于110受理范围"},
        ),
    )
    record = record.model_copy(update={"events": events})
    assert HandoffRecord.model_validate_json(record.model_dump_json()) == record


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("work_order_no", "LJ-1\r\nAction: Originate"),
        ("incident_no", "110\x00"),
        ("citizen_name", "张三\n李四"),
        ("related", ["h-1\r"]),
    ],
)
def test_control_characters_refused_in_line_fields(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        HandoffInput.model_validate({field: value})
    assert any(loc.startswith(field) for loc in errors_for(exc.value))


def test_narrative_allows_line_breaks_but_not_nul() -> None:
    # Line endings are normalised to LF; tabs and Chinese text are kept as they are.
    assert HandoffInput(narrative="第一行\r\n第二行\t完\r").narrative == "第一行\n第二行\t完\n"
    with pytest.raises(ValidationError) as exc:
        HandoffInput.model_validate({"narrative": "abc\x00def"})
    assert errors_for(exc.value) == {"narrative"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"callback": "138-0013-8000"}, "callback"),
        ({"jurisdiction": "kunming"}, "jurisdiction"),
        ({"matter_class": "police"}, "matter_class"),
        ({"category": "Police Criminal"}, "category"),
        ({"location": {"latitude": 91, "longitude": 100}}, "location.latitude"),
        ({"location": {"latitude": 26, "longitude": 181}}, "location.longitude"),
        ({"location": {"latitude": 26}}, "location"),
        ({"deadline": "2024-05-03T16:00:00"}, "deadline"),  # naive time refused
        ({"narative": "typo"}, "narative"),  # unknown field refused
        ({"narrative": "x" * 8001}, "narrative"),
    ],
)
def test_bad_input_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        HandoffInput.model_validate(data)
    assert field in errors_for(exc.value)


def test_location_coordinates_in_range_accepted() -> None:
    loc = Location(latitude=-90, longitude=180)
    assert loc.datum == "WGS84"


def test_snapshot_is_frozen() -> None:
    record = make()
    with pytest.raises(ValidationError):
        record.snapshot.citizen.number = "13900139000"  # type: ignore[misc]


def test_record_requires_created_first_and_consecutive_seq() -> None:
    record = make()
    bad = record.model_dump(mode="json")
    bad["events"].append({**bad["events"][0], "seq": 3, "kind": "note", "data": {"text": "x"}})
    with pytest.raises(ValidationError, match="seq"):
        HandoffRecord.model_validate(bad)
    bad = record.model_dump(mode="json")
    bad["events"][0]["kind"] = "note"
    bad["events"][0]["data"] = {"text": "x"}
    with pytest.raises(ValidationError, match="created"):
        HandoffRecord.model_validate(bad)


@pytest.mark.parametrize(
    ("kind", "data", "problem"),
    [
        (EventKind.RETURNED, {}, "data.reason"),
        (EventKind.RETURNED, {"reason": "  "}, "data.reason"),
        (EventKind.STATUS_CHANGED, {"status": "closed"}, "data.status"),
        (EventKind.NOTE, {}, "data.text"),
        (EventKind.FOLLOW_UP, {"satisfaction": "happy"}, "data.satisfaction"),
        (EventKind.READ_CONFIDENTIAL, {}, "data.view"),
    ],
)
def test_event_data_is_checked_per_kind(
    kind: EventKind, data: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        event(kind, actor=AGENT, at=NOW, **data)


def test_event_data_keys_and_values_are_checked() -> None:
    with pytest.raises(ValidationError):
        event(EventKind.NOTE, actor=AGENT, at=NOW, text="ok", **{"Bad-Key": "x"})
    with pytest.raises(ValidationError):
        event(EventKind.NOTE, actor=AGENT, at=NOW, text="nul\x00")


def test_event_times_become_utc() -> None:
    cst = timezone(timedelta(hours=8))
    ev = event(EventKind.NOTE, actor=AGENT, at=datetime(2024, 5, 1, 16, 30, tzinfo=cst), text="x")
    assert ev.at == NOW and ev.at.tzinfo is UTC


def test_actor_ids_refuse_control_characters() -> None:
    with pytest.raises(ValidationError):
        Actor(kind="agent", id="1001\r\nX")
