"""The fold: status, timeline and outcome derived from the events, never stored as truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hotline_bridge.catalog import load_catalog
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    CallRef,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    Satisfaction,
    Status,
)
from hotline_bridge.handoffs.status import (
    append_problem,
    fold,
    next_status,
)

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
SYSTEM = Actor.system()
PARTNER = Actor(kind=ActorKind.PARTNER, id="110-desk")
K = EventKind


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(*events: tuple[EventKind, int, dict[str, str]]) -> HandoffRecord:
    base = new_handoff(
        HandoffInput(),
        handoff_id="h-01hx0000000000000000000000",
        kind=HandoffKind.THREE_WAY,
        direction=Direction.TO_110,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=load_catalog(),
        now=at(5),
        call=CallRef(call_id="1714550400.1", started_at=at(0), answered_at=at(2)),
    )
    evs = [
        HandoffEvent(
            seq=i,
            at=at(t),
            actor=PARTNER if kind in (K.ACKNOWLEDGED, K.RETURNED, K.CLOSED) else SYSTEM,
            kind=kind,
            data=data,
        )
        for i, (kind, t, data) in enumerate(events, start=2)
    ]
    return base.model_copy(update={"events": (*base.events, *evs)})


def test_fresh_record_is_created_with_call_times_in_the_timeline() -> None:
    state = fold(record())
    assert state.status is Status.CREATED
    assert state.timeline.call_started == at(0)
    assert state.timeline.answered == at(2)
    assert state.timeline.created == at(5)
    assert state.last_seq == 1 and state.updated_at == at(5)


def test_three_way_then_partner_signs_and_closes() -> None:
    state = fold(
        record(
            (K.TRANSFER_REQUESTED, 6, {}),
            (K.THREE_WAY_STARTED, 7, {}),
            (K.PARTNER_RINGING, 8, {}),
            (K.PARTNER_ANSWERED, 12, {}),
            (K.AGENT_LEFT, 30, {}),
            (K.THREE_WAY_ENDED, 200, {}),
            (K.ACKNOWLEDGED, 210, {}),
            (K.STATUS_CHANGED, 300, {"status": "in_progress"}),
            (K.CLOSED, 900, {"outcome": "已出警处置,纠纷化解"}),
            (K.FOLLOW_UP, 1000, {"satisfaction": "satisfied"}),
        )
    )
    assert state.status is Status.CLOSED
    assert state.call_outcome == "answered"
    assert state.outcome == "已出警处置,纠纷化解"
    assert state.satisfaction is Satisfaction.SATISFIED
    tl = state.timeline
    assert (tl.transfer_requested, tl.three_way_started, tl.partner_ringing) == (
        at(6),
        at(7),
        at(8),
    )
    assert (tl.partner_answered, tl.agent_left, tl.three_way_ended) == (at(12), at(30), at(200))
    assert (tl.acknowledged, tl.closed) == (at(210), at(900))
    assert state.last_seq == 11 and state.updated_at == at(1000)


def test_partner_failed_then_retry_then_answered() -> None:
    r = record((K.TRANSFER_REQUESTED, 6, {}), (K.PARTNER_FAILED, 26, {"outcome": "busy"}))
    assert fold(r).status is Status.FAILED
    assert fold(r).call_outcome == "busy"
    r = record(
        (K.TRANSFER_REQUESTED, 6, {}),
        (K.PARTNER_FAILED, 26, {"outcome": "busy"}),
        (K.CITIZEN_RETURNED, 28, {"agent_id": "1001"}),
        (K.TRANSFER_REQUESTED, 40, {}),
    )
    assert fold(r).status is Status.CREATED
    assert fold(r).timeline.transfer_requested == at(6)  # first occurrence
    r = record(
        (K.TRANSFER_REQUESTED, 6, {}),
        (K.PARTNER_FAILED, 26, {"outcome": "no_answer"}),
        (K.TRANSFER_REQUESTED, 40, {}),
        (K.PARTNER_ANSWERED, 45, {}),
    )
    assert fold(r).status is Status.PUSHED
    assert fold(r).call_outcome == "answered"


def test_returned_keeps_the_reason() -> None:
    state = fold(record((K.PUSHED, 6, {}), (K.RETURNED, 60, {"reason": "属12345受理范围"})))
    assert state.status is Status.RETURNED
    assert state.return_reason == "属12345受理范围"
    assert state.timeline.returned == at(60)


def test_late_and_repeated_telephony_events_never_move_status_backwards() -> None:
    state = fold(
        record(
            (K.PUSHED, 6, {}),
            (K.ACKNOWLEDGED, 8, {}),
            (K.PARTNER_ANSWERED, 9, {}),  # late AMI event after the partner link's ack
            (K.PARTNER_FAILED, 10, {"outcome": "busy"}),  # stale
            (K.ACKNOWLEDGED, 11, {}),  # duplicate
        )
    )
    assert state.status is Status.ACKNOWLEDGED
    assert state.call_outcome == "answered"
    assert state.timeline.acknowledged == at(8)


def test_nothing_reopens_a_closed_record() -> None:
    state = fold(
        record(
            (K.CLOSED, 6, {"outcome": "办结"}),
            (K.RETURNED, 7, {"reason": "x"}),
            (K.CLOSED, 8, {"outcome": "second"}),
            (K.ACKNOWLEDGED, 9, {}),
        )
    )
    assert state.status is Status.CLOSED
    assert state.outcome == "办结"
    assert state.return_reason is None


def test_notes_supervision_and_audits_do_not_change_status() -> None:
    state = fold(
        record(
            (K.PUSHED, 6, {}),
            (K.NOTE, 7, {"text": "补充:现场有老人"}),
            (K.SUPERVISED, 8, {"text": "请加快办理"}),
            (K.SUPERVISED, 9, {"text": "再次督办"}),
            (K.READ_CONFIDENTIAL, 10, {"view": "record"}),
        )
    )
    assert state.status is Status.PUSHED
    assert state.supervised == 2
    assert state.last_seq == 6


def test_fold_is_pure_and_repeatable() -> None:
    r = record((K.PUSHED, 6, {}), (K.ACKNOWLEDGED, 8, {}))
    assert fold(r) == fold(r)
    assert r == HandoffRecord.model_validate_json(r.model_dump_json())


@pytest.mark.parametrize(
    ("status", "kind", "data", "after"),
    [
        (Status.CREATED, K.ACKNOWLEDGED, {}, Status.ACKNOWLEDGED),
        (Status.PUSHED, K.STATUS_CHANGED, {"status": "in_progress"}, Status.IN_PROGRESS),
        (Status.CREATED, K.STATUS_CHANGED, {"status": "in_progress"}, Status.CREATED),
        (Status.IN_PROGRESS, K.RETURNED, {"reason": "r"}, Status.RETURNED),
        (Status.RETURNED, K.CLOSED, {}, Status.CLOSED),
        (Status.FAILED, K.PUSHED, {}, Status.PUSHED),
        (Status.RETURNED, K.ACKNOWLEDGED, {}, Status.RETURNED),
    ],
)
def test_next_status(status: Status, kind: EventKind, data: dict[str, str], after: Status) -> None:
    assert next_status(status, kind, data) is after


@pytest.mark.parametrize(
    ("status", "kind", "allowed"),
    [
        (Status.PUSHED, K.ACKNOWLEDGED, True),
        (Status.CLOSED, K.ACKNOWLEDGED, False),
        (Status.CLOSED, K.RETURNED, False),
        (Status.RETURNED, K.RETURNED, False),
        (Status.CLOSED, K.CLOSED, False),
        (Status.CLOSED, K.NOTE, True),
        (Status.PUSHED, K.FOLLOW_UP, False),
        (Status.CLOSED, K.FOLLOW_UP, True),
        (Status.CLOSED, K.SUPERVISED, False),
        (Status.CREATED, K.STATUS_CHANGED, False),
    ],
)
def test_append_problem(status: Status, kind: EventKind, allowed: bool) -> None:
    assert (append_problem(status, kind) is None) is allowed
