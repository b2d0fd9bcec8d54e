"""A record's present, derived from its events: status, timeline, outcome, the unit it is with
and its time limits. Pure: :func:`fold` is a left fold, and :func:`next_status` the status
machine (which events may move a record from which status), so a late or repeated event never
moves a record backwards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hotline_bridge.handoffs.model import (
    EventKind,
    HandoffEvent,
    HandoffRecord,
    Satisfaction,
    Status,
    _Frozen,
    _utc,
)


class Timeline(_Frozen):
    """When each milestone first happened (the events hold every occurrence)."""

    call_started: datetime | None = None
    answered: datetime | None = None
    created: datetime | None = None
    transfer_requested: datetime | None = None
    partner_ringing: datetime | None = None
    partner_answered: datetime | None = None
    partner_failed: datetime | None = None
    citizen_returned: datetime | None = None
    three_way_started: datetime | None = None
    agent_left: datetime | None = None
    three_way_ended: datetime | None = None
    pushed: datetime | None = None
    acknowledged: datetime | None = None
    returned: datetime | None = None
    assigned: datetime | None = None
    unit_acknowledged: datetime | None = None
    closed: datetime | None = None


_TIMELINE_KINDS = frozenset(Timeline.model_fields) & frozenset(k.value for k in EventKind)


class HandoffState(_Frozen):
    """The record's present, derived from its events by :func:`fold`."""

    status: Status
    timeline: Timeline
    call_outcome: str | None = None  # how the live handoff ended: answered, busy, no_answer, ...
    outcome: str | None = None  # 办理结果, from the closing event
    return_reason: str | None = None
    satisfaction: Satisfaction | None = None
    supervised: int = 0  # how many times a supervisor urged it (督办)
    unit: str | None = None  # the handling unit it is assigned to now (交办)
    sign_by: datetime | None = None  # the unit's 签收 time limit
    complete_by: datetime | None = None  # the unit's 办结 time limit (办理时限)
    unit_return_reason: str | None = None
    flagged: frozenset[str] = frozenset()  # "due_soon:complete@<due>", "overdue:sign@<due>", ...
    last_seq: int
    updated_at: datetime


# For each status-moving event: the statuses it may leave from. Anything else leaves the status
# alone, so a late or repeated telephony event never moves a record backwards.
_MOVES: Mapping[EventKind, tuple[frozenset[Status], Status | None]] = {
    EventKind.TRANSFER_REQUESTED: (frozenset({Status.FAILED}), Status.CREATED),
    EventKind.PARTNER_FAILED: (frozenset({Status.CREATED}), Status.FAILED),
    EventKind.PARTNER_ANSWERED: (frozenset({Status.CREATED, Status.FAILED}), Status.PUSHED),
    EventKind.PUSHED: (frozenset({Status.CREATED, Status.FAILED}), Status.PUSHED),
    EventKind.ACKNOWLEDGED: (frozenset({Status.CREATED, Status.PUSHED}), Status.ACKNOWLEDGED),
    EventKind.STATUS_CHANGED: (frozenset({Status.PUSHED, Status.ACKNOWLEDGED}), None),
    EventKind.RETURNED: (
        frozenset({Status.CREATED, Status.PUSHED, Status.ACKNOWLEDGED, Status.IN_PROGRESS}),
        Status.RETURNED,
    ),
    EventKind.ASSIGNED: (
        frozenset(
            {
                Status.CREATED,
                Status.PUSHED,
                Status.ACKNOWLEDGED,
                Status.ASSIGNED,
                Status.UNIT_RETURNED,
            }
        ),
        Status.ASSIGNED,
    ),
    EventKind.UNIT_ACKNOWLEDGED: (frozenset({Status.ASSIGNED}), Status.IN_PROGRESS),
    EventKind.UNIT_RETURNED: (
        frozenset({Status.ASSIGNED, Status.IN_PROGRESS}),
        Status.UNIT_RETURNED,
    ),
    EventKind.CLOSED: (frozenset(Status) - {Status.CLOSED}, Status.CLOSED),
}
# Events that only make sense once the matter is closed, or while it is still open.
_ONLY_WHEN_CLOSED = frozenset({EventKind.FOLLOW_UP})
_ONLY_WHEN_OPEN = frozenset({EventKind.SUPERVISED})


def next_status(status: Status, kind: EventKind, data: Mapping[str, str]) -> Status:
    """The status after an event of ``kind`` (unchanged if the event does not apply)."""
    move = _MOVES.get(kind)
    if move is None or status not in move[0]:
        return status
    target = move[1]
    if target is None:  # status_changed names its target
        return Status(data["status"])
    return target


def append_problem(status: Status, kind: EventKind) -> str | None:
    """Why an event of ``kind`` may not be appended now by a person (None if it may).

    The fold tolerates anything (telephony events arrive late and twice); people acting through
    the API get a clear refusal instead of a silently ignored action.
    """
    move = _MOVES.get(kind)
    if move is not None and status not in move[0]:
        return f"cannot record {kind.value} on a {status.value} handoff"
    if kind in _ONLY_WHEN_CLOSED and status is not Status.CLOSED:
        return f"{kind.value} is recorded after the handoff is closed"
    if kind in _ONLY_WHEN_OPEN and status is Status.CLOSED:
        return f"cannot record {kind.value} on a closed handoff"
    return None


def fold(record: HandoffRecord) -> HandoffState:
    """The record's current state: a pure left fold of its events over the snapshot."""
    snap = record.snapshot
    return fold_events(
        record.events,
        Timeline(call_started=snap.call_started_at, answered=snap.call_answered_at),
    )


def fold_events(events: Iterable[HandoffEvent], timeline: Timeline | None = None) -> HandoffState:
    acc = _Acc(timeline=dict((timeline or Timeline()).model_dump()))
    for ev in events:
        acc.apply(ev)
    if acc.last is None:
        raise ValueError("a handoff has at least its 'created' event")
    return HandoffState(
        status=acc.status,
        timeline=Timeline(**acc.timeline),
        call_outcome=acc.call_outcome,
        outcome=acc.outcome,
        return_reason=acc.return_reason,
        satisfaction=acc.satisfaction,
        supervised=acc.supervised,
        unit=acc.unit,
        sign_by=acc.sign_by,
        complete_by=acc.complete_by,
        unit_return_reason=acc.unit_return_reason,
        flagged=frozenset(acc.flagged),
        last_seq=acc.last.seq,
        updated_at=acc.last.at,
    )


@dataclass(slots=True)
class _Acc:
    timeline: dict[str, Any]
    status: Status = Status.CREATED
    call_outcome: str | None = None
    outcome: str | None = None
    return_reason: str | None = None
    satisfaction: Satisfaction | None = None
    supervised: int = 0
    unit: str | None = None
    sign_by: datetime | None = None
    complete_by: datetime | None = None
    unit_return_reason: str | None = None
    flagged: set[str] = field(default_factory=set)
    last: HandoffEvent | None = None

    def apply(self, ev: HandoffEvent) -> None:
        before = self.status
        self.status = next_status(self.status, ev.kind, ev.data)
        self.last = ev
        if ev.kind.value in _TIMELINE_KINDS and self.timeline.get(ev.kind.value) is None:
            self.timeline[ev.kind.value] = ev.at
        match ev.kind:
            case EventKind.PARTNER_ANSWERED:
                self.call_outcome = "answered"
            case EventKind.PARTNER_FAILED if self.call_outcome != "answered":
                self.call_outcome = ev.data.get("outcome") or "failed"
            case EventKind.RETURNED if self.status is not before:
                self.return_reason = ev.data["reason"]
            case EventKind.CLOSED if self.status is not before:
                self.outcome = ev.data.get("outcome")
            case EventKind.FOLLOW_UP:
                self.satisfaction = Satisfaction(ev.data["satisfaction"])
            case EventKind.SUPERVISED:
                self.supervised += 1
            case EventKind.ASSIGNED if self.status is Status.ASSIGNED:
                self.unit = ev.data["unit"]
                self.sign_by = _when(ev.data["sign_by"])
                self.complete_by = _when(ev.data["complete_by"])
                self.unit_return_reason = None
            case EventKind.UNIT_RETURNED if self.status is not before:
                self.unit, self.unit_return_reason = None, ev.data["reason"]
                self.sign_by = self.complete_by = None
            case EventKind.DUE_SOON | EventKind.OVERDUE:
                self.flagged.add(flag(ev.kind, ev.data["stage"], ev.data["due"]))
            case _:
                pass


def flag(kind: EventKind, stage: str, due: str) -> str:
    """One time-limit warning's identity: raised at most once per stage and deadline."""
    return f"{kind.value}:{stage}@{due}"


def _when(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text))
