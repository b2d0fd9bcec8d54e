"""The assessment figures on a small, hand-made quarter whose every number is checked by hand.

Six records created in 2026Q4 (CST) and one just before it:

| id | kind / direction        | what happened                                             |
|----|-------------------------|-----------------------------------------------------------|
| A  | carry 110->12345        | answered, pushed, 签收 after 10 min, closed in time, satisfied  |
| B  | carry 110->12345        | answered, pushed, 签收 after 30 h (late response), closed late, dissatisfied |
| C  | three-way 12345->110    | answered, pushed, 签收 after 20 min, returned by 110 ("不属于本平台职责") |
| D  | carry 12345->110        | partner no answer, citizen back with the agent            |
| E  | work order (sms) 110->12345 | pushed, never signed for; time limit passed in the quarter |
| F  | work order (wechat) 110->12345 | pushed, 签收 after 1 h, closed in time, follow-up not reached |
| Z  | carry, created 30 Sep 15:59 UTC (23:59 CST) | belongs to Q3: never counted |
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hotline_bridge.catalog import load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    Direction,
    EventKind,
    HandoffKind,
    HandoffRecord,
    IntakeChannel,
    event,
)
from hotline_bridge.reports.figures import Durations, Rate, compute
from hotline_bridge.reports.service import Quarter

Q4 = Quarter.parse("2026Q4")
T0 = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)
SYSTEM = Actor.system()
PARTNER = Actor(kind=ActorKind.PARTNER, id="desk")
CATALOG = load_catalog()


def record(
    rid: str,
    kind: HandoffKind,
    direction: Direction,
    life: list[tuple[float, EventKind, Actor, dict[str, str]]],
    *,
    created: datetime = T0,
    category: str = "dispute.neighbour",
    jurisdiction: Jurisdiction = Jurisdiction.YULONG,
    place: str = "白沙镇",
    deadline_h: float = 72,
    channel: IntakeChannel | None = None,
) -> HandoffRecord:
    base = new_handoff(
        HandoffInput(
            category=category,
            jurisdiction=jurisdiction,
            place=place,
            deadline=created + timedelta(hours=deadline_h),
        ),
        handoff_id="h-" + rid.lower() * 26,
        kind=kind,
        direction=direction,
        target="12345" if direction is Direction.TO_12345 else "110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=created,
        channel=channel,
    )
    events = [
        event(k, actor=a, at=created + timedelta(minutes=m), **d).model_copy(update={"seq": i + 2})
        for i, (m, k, a, d) in enumerate(life)
    ]
    return HandoffRecord(id=base.id, snapshot=base.snapshot, events=(*base.events, *events))


ANSWERED = [
    (0.1, EventKind.TRANSFER_REQUESTED, SYSTEM, {}),
    (0.2, EventKind.PARTNER_ANSWERED, SYSTEM, {}),
    (0.3, EventKind.PUSHED, SYSTEM, {}),
]
RECORDS = [
    record(
        "A",
        HandoffKind.CARRY_TRANSFER,
        Direction.TO_12345,
        [
            *ANSWERED,
            (10.2, EventKind.ACKNOWLEDGED, PARTNER, {}),
            (600, EventKind.CLOSED, PARTNER, {"outcome": "已办结"}),
            (900, EventKind.FOLLOW_UP, SYSTEM, {"satisfaction": "satisfied"}),
        ],
    ),
    record(
        "B",
        HandoffKind.CARRY_TRANSFER,
        Direction.TO_12345,
        [
            *ANSWERED,
            (30 * 60 + 0.2, EventKind.ACKNOWLEDGED, PARTNER, {}),
            (80 * 60, EventKind.CLOSED, PARTNER, {}),
            (81 * 60, EventKind.FOLLOW_UP, SYSTEM, {"satisfaction": "dissatisfied"}),
        ],
        category="help.utilities",
        jurisdiction=Jurisdiction.GUCHENG,
        place="大研街道",
    ),
    record(
        "C",
        HandoffKind.THREE_WAY,
        Direction.TO_110,
        [
            *ANSWERED,
            (20.2, EventKind.ACKNOWLEDGED, PARTNER, {}),
            (60, EventKind.RETURNED, PARTNER, {"reason": "不属于本平台职责"}),
        ],
        category="police.public_order",
        deadline_h=24,
    ),
    record(
        "D",
        HandoffKind.CARRY_TRANSFER,
        Direction.TO_110,
        [
            (0.1, EventKind.TRANSFER_REQUESTED, SYSTEM, {}),
            (0.5, EventKind.PARTNER_FAILED, SYSTEM, {"outcome": "no_answer"}),
            (0.6, EventKind.CITIZEN_RETURNED, SYSTEM, {"agent_id": "1001"}),
        ],
        category="police.harassment",
        deadline_h=24,
    ),
    record(
        "E",
        HandoffKind.WORK_ORDER,
        Direction.TO_12345,
        [(0.05, EventKind.PUSHED, SYSTEM, {})],
        channel=IntakeChannel.SMS,
        deadline_h=48,
    ),
    record(
        "F",
        HandoffKind.WORK_ORDER,
        Direction.TO_12345,
        [
            (0.05, EventKind.PUSHED, SYSTEM, {}),
            (60.05, EventKind.ACKNOWLEDGED, PARTNER, {}),
            (24 * 60, EventKind.CLOSED, PARTNER, {}),
            (25 * 60, EventKind.FOLLOW_UP, SYSTEM, {"satisfaction": "not_reached"}),
        ],
        channel=IntakeChannel.WECHAT,
    ),
    record(
        "Z",
        HandoffKind.CARRY_TRANSFER,
        Direction.TO_12345,
        ANSWERED,
        created=datetime(2026, 9, 30, 15, 59, tzinfo=UTC),
    ),
]


@pytest.fixture(scope="module")
def figures():  # type: ignore[no-untyped-def]
    return compute(RECORDS, Q4.since, Q4.until)


def test_the_quarter_is_local_time_and_counts_only_its_own_records(figures) -> None:  # type: ignore[no-untyped-def]
    assert Q4.since == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert figures.total == 6  # Z was created at 23:59 CST on 30 September: Q3


def test_volumes_by_direction_kind_class_channel_jurisdiction(figures) -> None:  # type: ignore[no-untyped-def]
    assert figures.by_direction == {"110->12345": 4, "12345->110": 2}
    assert figures.by_kind == {"carry_transfer": 3, "work_order": 2, "three_way": 1}
    assert figures.by_class == {"non_police_matter": 4, "police_matter": 2}
    assert figures.by_channel == {"phone": 4, "sms": 1, "wechat": 1}
    assert figures.by_jurisdiction == {"yulong": 5, "gucheng": 1}
    assert figures.nuisance == 1  # D: police.harassment


def test_receipt_response_on_time_and_satisfaction_rates(figures) -> None:  # type: ignore[no-untyped-def]
    # Reached the receiving platform: A, B, C (answered), E, F (pushed) = 5; D never did.
    # Signed for: A, B, C, F = 4 -> 4/5. Within 24 h: A (10 min), C (20 min), F (1 h) = 3/5.
    assert figures.receipt == Rate(4, 5)
    assert figures.response == Rate(3, 5)
    # Kept (reached, not returned) with a settled limit: A (closed 10 h < 72 h: in time),
    # B (closed 80 h > 72 h: late), E (open, limit 12 Oct passed before the quarter ended),
    # F (closed 24 h < 72 h: in time) -> 2/4. C was returned; D never reached.
    assert figures.on_time == Rate(2, 4)
    # Follow-ups: A satisfied, B dissatisfied, F not reached -> 1 of the 2 reached.
    assert figures.satisfaction == Rate(1, 2)
    assert figures.satisfaction.percent() == "50.0%"


def test_durations_returns_transfers_and_topics(figures) -> None:  # type: ignore[no-untyped-def]
    # Time to 签收 from reaching the platform: A 9.9 min... measured from the earlier of
    # partner_answered (0.2 min) and pushed: A 10 min, B 30 h, C 20 min, F 60 min.
    assert figures.time_to_receipt.count == 4
    assert figures.time_to_receipt.median_s == pytest.approx((20 + 60) / 2 * 60)
    assert figures.time_to_receipt.p90_s == pytest.approx(30 * 3600)
    assert figures.returns == 1 and figures.return_reasons == {"不属于本平台职责": 1}
    assert figures.boundary_disputes == 1  # returned by the other platform
    assert figures.transfers == {"total": 3, "answered": 2, "returned_to_agent": 1}
    assert figures.three_way == {"total": 1, "answered": 1}
    assert figures.top_categories[0] == ("dispute.neighbour", 3)
    assert figures.top_places[0] == ("白沙镇", 5)
    # Created -> reached: 0.2 min for the calls, 0.05 min for the work orders.
    assert figures.partner_receipt == Durations(5, 0.2 * 60, 0.2 * 60)


def test_a_rate_without_denominator_is_unknown_not_zero() -> None:
    empty = compute([], Q4.since, Q4.until)
    assert empty.total == 0 and empty.receipt.value is None and empty.receipt.percent() == "—"


def test_quarters_parse_strictly() -> None:
    assert Quarter.parse("2026q1").label == "2026Q1"
    assert Quarter.parse("2026Q1").previous().label == "2025Q4"
    with pytest.raises(ValueError, match="2026Q4"):
        Quarter.parse("2026Q5")
    # Found by the API fuzz: year 0 reached datetime() and answered 500.
    for bad in ("0000Q1", "1999Q4", "3000Q1"):
        with pytest.raises(ValueError, match="years 2000-2999"):
            Quarter.parse(bad)
