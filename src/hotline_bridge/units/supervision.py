"""Time-limit supervision (督办问效), pure: what a matter's state calls for at a given moment.

A matter assigned to a unit has two limits: 签收 (sign by) while it waits for the unit, 办结
(complete by) until it is closed. Near a limit (``due_soon_hours`` before it) supervisors are
warned (``due_soon``); past it the matter is ``overdue`` and a ``supervised`` (督办) event by the
bridge escalates it. Each warning is raised once per stage and deadline: the record's state
remembers what was flagged, so running this twice, or again after a restart, adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hotline_bridge.handoffs.model import (
    EventKind,
    Status,
)
from hotline_bridge.handoffs.status import (
    HandoffState,
    flag,
)
from hotline_bridge.units.directory import Limit

WAITING_FOR_SIGN = frozenset({Status.ASSIGNED})
OPEN_AT_UNIT = frozenset({Status.ASSIGNED, Status.IN_PROGRESS})
STAGE_ZH = {"sign": "签收", "complete": "办结"}


@dataclass(frozen=True, slots=True)
class Due:
    kind: EventKind  # DUE_SOON, OVERDUE or SUPERVISED
    data: dict[str, str]


def check(state: HandoffState, limit: Limit, now: datetime) -> list[Due]:
    """The events a matter in ``state`` needs now (empty if none)."""
    out: list[Due] = []
    stages = (
        ("sign", state.sign_by, WAITING_FOR_SIGN),
        ("complete", state.complete_by, OPEN_AT_UNIT),
    )
    for stage, due, statuses in stages:
        if due is None or state.status not in statuses:
            continue
        stamp = due.isoformat()
        data = {"stage": stage, "due": stamp}
        if now >= due:
            if flag(EventKind.OVERDUE, stage, stamp) not in state.flagged:
                out.append(Due(EventKind.OVERDUE, data))
                text = f"超期未{STAGE_ZH[stage]}(时限 {stamp}),督办 {state.unit or ''}".strip()
                out.append(Due(EventKind.SUPERVISED, {"text": text}))
        elif now >= due - timedelta(hours=limit.due_soon_hours):
            if flag(EventKind.DUE_SOON, stage, stamp) not in state.flagged:
                out.append(Due(EventKind.DUE_SOON, data))
    return out
