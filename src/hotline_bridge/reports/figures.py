"""The assessment figures of a period, from handoff records (pure: records in, numbers out).

What the plan asks 12345 and 110 to meet over every quarter (每季度1次工作分析) and be assessed on:
work-order receipt (工单签收), on-time completion (按时办结), timely response (及时响应率),
satisfaction (群众满意度), plus what passed between the platforms: volumes by direction, class,
category, jurisdiction and channel, transfers and three-way calls, returns and their reasons,
nuisance reports, frequent topics and boundary disputes. Each figure's definition is in its
docstring or comment; every rate says its denominator, and a rate with no denominator is None
(never 0 %, which would read as a failure).

A record belongs to the period when it was created in it; its later events count wherever they
fall (a matter opened on 30 September and closed on 2 October is the third quarter's).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hotline_bridge.handoffs.model import (
    ActorKind,
    EventKind,
    HandoffKind,
    HandoffRecord,
    Satisfaction,
    Status,
)
from hotline_bridge.handoffs.status import (
    HandoffState,
    fold,
)

# 及时响应: 签收 within this long of the record reaching the platform (the plan's assessment
# window is set by each city; one working day is the common practice, and it is a parameter).
DEFAULT_RESPONSE_LIMIT = timedelta(hours=24)
TOP_N = 10


@dataclass(frozen=True, slots=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def percent(self) -> str:
        v = self.value
        return "—" if v is None else f"{100 * v:.1f}%"


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds; median and 90th percentile of a list of durations (None when empty)."""

    count: int
    median_s: float | None
    p90_s: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Durations:
        if not seconds:
            return cls(0, None, None)
        ordered = sorted(seconds)
        p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
        return cls(len(ordered), statistics.median(ordered), p90)


@dataclass(frozen=True, slots=True)
class Figures:
    since: datetime
    until: datetime
    total: int
    by_direction: dict[str, int]
    by_kind: dict[str, int]
    by_class: dict[str, int]
    by_category: dict[str, int]
    by_jurisdiction: dict[str, int]
    by_channel: dict[str, int]
    receipt: Rate  # 签收率: acknowledged / records that reached the receiving platform
    time_to_receipt: Durations  # reached the platform (pushed / answered) -> 签收
    on_time: Rate  # 按时办结率: closed by the time limit / kept records whose limit is settled
    response: Rate  # 及时响应率: 签收 within the response limit / records that reached it
    satisfaction: Rate  # 满意度: satisfied or basically / follow-ups that reached the citizen
    returns: int
    return_reasons: dict[str, int]
    boundary_disputes: int  # records returned across the platforms (退回 by the other side)
    transfers: dict[str, int]  # carry transfers: answered / returned to a person / abandoned ...
    three_way: dict[str, int]
    partner_receipt: Durations  # created -> the partner platform has it (pushed / answered)
    nuisance: int
    top_categories: list[tuple[str, int]]
    top_places: list[tuple[str, int]]
    supervised: int  # records urged by a supervisor (督办) at least once
    labels: dict[str, str] = field(default_factory=dict)  # category code -> Chinese label


def in_period(
    records: Iterable[HandoffRecord], since: datetime, until: datetime
) -> list[HandoffRecord]:
    return [r for r in records if since <= r.snapshot.created_at < until]


def compute(
    records: Iterable[HandoffRecord],
    since: datetime,
    until: datetime,
    *,
    nuisance_categories: frozenset[str] = frozenset({"police.harassment"}),
    response_limit: timedelta = DEFAULT_RESPONSE_LIMIT,
    labels: dict[str, str] | None = None,
) -> Figures:
    """The figures of the records created in [since, until); ``until`` also settles deadlines."""
    mine = in_period(records, since, until)
    states = [(r, fold(r)) for r in mine]

    def count(values: Iterable[str]) -> dict[str, int]:
        return dict(Counter(values).most_common())

    reached = [(r, s) for r, s in states if _reached_at(s) is not None]
    acknowledged = [(r, s) for r, s in reached if s.timeline.acknowledged is not None]
    to_receipt = [
        (s.timeline.acknowledged - _reached_at(s)).total_seconds()  # type: ignore[operator]
        for _, s in acknowledged
    ]
    responded = sum(1 for t in to_receipt if t <= response_limit.total_seconds())

    # 按时办结: of the matters the receiving platform kept (reached it and not returned) and that
    # have a time limit, those whose limit is settled: closed (in time or late), or still open
    # when the period ended after the limit.
    # The limit is the handling unit's (办理时限, set when assigned), else the record's own.
    deadlines = [
        (d, s)
        for r, s in reached
        if (d := s.complete_by or r.snapshot.deadline) is not None
        and s.status is not Status.RETURNED
    ]
    settled = [(d, s) for d, s in deadlines if s.timeline.closed is not None or d < until]
    closed_in_time = sum(
        1 for d, s in settled if s.timeline.closed is not None and s.timeline.closed <= d
    )

    follow_ups = [s.satisfaction for _, s in states if s.satisfaction is not None]
    reached_citizens = [f for f in follow_ups if f is not Satisfaction.NOT_REACHED]
    pleased = sum(
        1
        for f in reached_citizens
        if f in (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED)
    )

    returns = [(r, e) for r in mine for e in r.events if e.kind is EventKind.RETURNED]
    across = {r.id for r, e in returns if e.actor.kind is ActorKind.PARTNER}

    carry = [s for r, s in states if r.snapshot.kind is HandoffKind.CARRY_TRANSFER]
    three = [s for r, s in states if r.snapshot.kind is HandoffKind.THREE_WAY]

    return Figures(
        since=since,
        until=until,
        total=len(mine),
        by_direction=count(r.snapshot.direction.value for r in mine),
        by_kind=count(r.snapshot.kind.value for r in mine),
        by_class=count(_class_of(r) for r in mine),
        by_category=count(r.snapshot.matter.category or "uncategorised" for r in mine),
        by_jurisdiction=count(r.snapshot.matter.jurisdiction.value for r in mine),
        by_channel=count(_channel_of(r) for r in mine),
        receipt=Rate(len(acknowledged), len(reached)),
        time_to_receipt=Durations.of(to_receipt),
        on_time=Rate(closed_in_time, len(settled)),
        response=Rate(responded, len(reached)),
        satisfaction=Rate(pleased, len(reached_citizens)),
        returns=len({r.id for r, _ in returns}),
        return_reasons=count(e.data.get("reason", "") for _, e in returns),
        boundary_disputes=len(across),
        transfers=_live_outcomes(carry),
        three_way=_live_outcomes(three),
        partner_receipt=Durations.of(
            [
                (at - r.snapshot.created_at).total_seconds()
                for r, s in states
                if (at := _reached_at(s)) is not None
            ]
        ),
        nuisance=sum(1 for r in mine if r.snapshot.matter.category in nuisance_categories),
        top_categories=Counter(
            r.snapshot.matter.category for r in mine if r.snapshot.matter.category
        ).most_common(TOP_N),
        top_places=Counter(
            r.snapshot.content.place for r in mine if r.snapshot.content.place
        ).most_common(TOP_N),
        supervised=sum(1 for _, s in states if s.supervised),
        labels=dict(labels or {}),
    )


def _reached_at(state: HandoffState) -> datetime | None:
    """When the record reached the receiving platform: the partner answered the live call, or
    the pushed record arrived (whichever came first)."""
    timeline = state.timeline
    times = [t for t in (timeline.partner_answered, timeline.pushed) if t is not None]
    return min(times) if times else None


def _class_of(record: HandoffRecord) -> str:
    mc = record.snapshot.matter.matter_class
    return mc.value if mc is not None else "unclassified"


def _channel_of(record: HandoffRecord) -> str:
    if record.snapshot.channel is not None:
        return record.snapshot.channel.value
    # Live-call handoffs came by phone; older work orders did not say.
    return "phone" if record.snapshot.kind is not HandoffKind.WORK_ORDER else "unknown"


def _live_outcomes(states: Sequence[HandoffState]) -> dict[str, int]:
    """How live handoffs ended: answered by the partner, returned to a person after a failed
    attempt, abandoned by the citizen, or another failure (busy, no answer, ...)."""
    out: Counter[str] = Counter()
    for s in states:
        timeline, outcome = s.timeline, s.call_outcome
        if outcome == "answered":
            out["answered"] += 1
        elif timeline.citizen_returned is not None:
            out["returned_to_agent"] += 1
        elif outcome == "abandoned":
            out["abandoned"] += 1
        elif outcome is None and s.status is Status.CREATED:
            out["unsettled"] += 1
        else:
            out[outcome or "failed"] += 1
    return {"total": len(states), **dict(out.most_common())}
