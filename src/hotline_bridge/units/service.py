"""Assigning matters to handling units and what the units do with them; supervising time limits.

Everything is an appended event of the record (``assigned``, ``unit_acknowledged``,
``unit_returned``, ``note``, ``closed``, ``due_soon``, ``overdue``, ``supervised``): nothing lives
only in memory, so the supervision scan after a restart finds exactly what it would have found
before (see ``supervision``). A unit's 办结 also travels to the platform that sent the matter
(outbox); the rest is this platform's own business and stays here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from hotline_bridge.catalog.model import Platform
from hotline_bridge.core.errors import Conflict, Forbidden, Invalid, NotFound
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffRecord,
    Status,
    event,
)
from hotline_bridge.handoffs.status import (
    HandoffState,
    append_problem,
    fold,
)
from hotline_bridge.handoffs.store import MAX_PAGE, HandoffFilter, HandoffStore, PageRequest
from hotline_bridge.units import supervision
from hotline_bridge.units.directory import Directory

log = structlog.get_logger(__name__)

# Matters waiting for this platform to (re)assign them: received (whatever the sender had
# recorded of their journey), or given back by a unit.
TO_ASSIGN = (Status.CREATED, Status.PUSHED, Status.ACKNOWLEDGED, Status.UNIT_RETURNED)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Escalation:
    handoff_id: str
    unit: str | None
    kind: EventKind  # due_soon | overdue
    stage: str


class UnitService:
    def __init__(
        self,
        store: HandoffStore,
        directory: Directory,
        *,
        site: Platform,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.directory = directory
        self.site = site
        self._clock = clock

    # -- 12345's agents and supervisors -------------------------------------------------------

    def assign(
        self,
        principal: Principal,
        handoff_id: str,
        unit_id: str | None,
        override_reason: str | None,
    ) -> dict[str, Any]:
        """交办: to ``unit_id``, or to the suggested unit when none is named."""
        if principal.role not in ("agent", "supervisor"):
            raise Forbidden("matters are assigned by this platform's agents and supervisors")
        record, state = self._get(handoff_id)
        if record.snapshot.direction.source is self.site:
            raise Conflict("this matter was sent to the partner platform: it assigns it there")
        matter = record.snapshot.matter
        suggestion = self.directory.suggest(matter.category, matter.jurisdiction)
        chosen = unit_id or (suggestion.unit.id if suggestion else None)
        if chosen is None:
            raise Invalid(
                "no unit suggested for this matter: name one",
                [{"field": "unit", "problem": "required: no rule applies to this matter"}],
            )
        unit = self.directory.units.get(chosen)
        if unit is None:
            raise Invalid(f"unknown unit {chosen!r}", [{"field": "unit", "problem": "unknown"}])
        overridden = suggestion is not None and suggestion.unit.id != unit.id
        if overridden and not override_reason:
            raise Invalid(
                f"the suggested unit is {suggestion.unit.id}: say why another",  # type: ignore[union-attr]
                [{"field": "override_reason", "problem": "required when overriding"}],
            )
        self._may(state, EventKind.ASSIGNED)
        now = self._clock()
        sign_by, complete_by = self.directory.deadlines(matter.category, now)
        data = {
            "unit": unit.id,
            "sign_by": sign_by.isoformat(),
            "complete_by": complete_by.isoformat(),
            "suggested": suggestion.unit.id if suggestion else "",
        }
        if overridden:
            data["override_reason"] = str(override_reason)
        ev = self._append(handoff_id, EventKind.ASSIGNED, views.actor_of(principal), data, now)
        log.info("matter assigned", handoff_id=handoff_id, unit=unit.id, overridden=overridden)
        return {
            "event": views.event_view(ev),
            "unit": unit.id,
            "suggested": data["suggested"] or None,
            "rule": suggestion.rule if suggestion else None,
            "sign_by": data["sign_by"],
            "complete_by": data["complete_by"],
        }

    def queue(self, principal: Principal) -> list[dict[str, Any]]:
        """Matters this platform still has to give to a unit (received, or given back)."""
        if principal.role not in ("agent", "supervisor"):
            raise Forbidden("the assignment queue is this platform's agents' and supervisors'")
        out = []
        # Only what the partner sent (asked of the store, not filtered here: our own open
        # handoffs, however many, are never read and decoded for this list).
        received = next(d for d in Direction if d.source is not self.site)
        for status in TO_ASSIGN:
            for record in self._records(status, received):
                state = fold(record)
                suggestion = self.directory.suggest(
                    record.snapshot.matter.category, record.snapshot.matter.jurisdiction
                )
                out.append(
                    {
                        **self._brief(record, state, principal),
                        "suggested": suggestion.unit.id if suggestion else None,
                    }
                )
        return out

    # -- the units ---------------------------------------------------------------------------

    def work(self, principal: Principal, unit_id: str) -> list[dict[str, Any]]:
        """The unit's matters: waiting for its 签收 or in progress, with limits and flags."""
        self._unit_or_supervisor(principal, unit_id)
        out = []
        for status in (Status.ASSIGNED, Status.IN_PROGRESS):
            for record in self._records(status):
                state = fold(record)
                if state.unit == unit_id:
                    out.append(self._brief(record, state, principal))
        return sorted(out, key=lambda m: m["complete_by"] or "")

    def act(
        self, principal: Principal, unit_id: str, handoff_id: str, action: str, text: str | None
    ) -> dict[str, Any]:
        """The unit signs for (sign), gives back (return), reports progress or closes a matter."""
        if principal.role != "unit" or principal.id != unit_id:
            raise Forbidden("only the unit itself acts on its matters")
        _, state = self._get(handoff_id)
        if state.unit != unit_id:
            raise NotFound(f"{handoff_id} is not assigned to {unit_id}")
        actor = Actor(kind=ActorKind.UNIT, id=unit_id)
        kind, data, outbox = {
            "sign": (EventKind.UNIT_ACKNOWLEDGED, {"unit": unit_id}, False),
            "return": (EventKind.UNIT_RETURNED, {"unit": unit_id, "reason": text or ""}, False),
            "progress": (EventKind.NOTE, {"text": text or ""}, False),
            "close": (EventKind.CLOSED, {"outcome": text} if text else {}, True),
        }[action]
        if action in ("return", "progress") and not text:
            field = "reason" if action == "return" else "text"
            raise Invalid(f"{action} needs a {field}", [{"field": field, "problem": "required"}])
        if action == "close" and state.status is not Status.IN_PROGRESS:
            raise Conflict("sign for the matter (签收) before closing it")
        self._may(state, kind)
        ev = self._append(handoff_id, kind, actor, data, self._clock(), outbox=outbox)
        log.info("unit action", handoff_id=handoff_id, unit=unit_id, action=action)
        return views.event_view(ev)

    # -- supervision ---------------------------------------------------------------------------

    def supervise(self, now: datetime | None = None) -> list[Escalation]:
        """One scan: every open matter at a unit checked against its limits (idempotent)."""
        now = now or self._clock()
        raised: list[Escalation] = []
        for status in (Status.ASSIGNED, Status.IN_PROGRESS):
            for record in self._records(status):
                state = fold(record)
                limit = self.directory.limit_for(record.snapshot.matter.category)
                for due in supervision.check(state, limit, now):
                    self._append(record.id, due.kind, Actor.system(), due.data, now)
                    if due.kind is not EventKind.SUPERVISED:
                        raised.append(
                            Escalation(record.id, state.unit, due.kind, due.data["stage"])
                        )
        return raised

    def open_counts(self, now: datetime | None = None) -> dict[str, int]:
        """Matters at units now past their limit, by stage (for the metrics gauge)."""
        now = now or self._clock()
        counts = {"sign": 0, "complete": 0}
        for status in (Status.ASSIGNED, Status.IN_PROGRESS):
            for record in self._records(status):
                state = fold(record)
                if state.status is Status.ASSIGNED and state.sign_by and state.sign_by <= now:
                    counts["sign"] += 1
                if state.complete_by and state.complete_by <= now:
                    counts["complete"] += 1
        return counts

    # -- plumbing -------------------------------------------------------------------------------

    def _records(
        self, status: Status, direction: Direction | None = None
    ) -> Iterator[HandoffRecord]:
        cursor: str | None = None
        while True:
            page = self.store.list(
                HandoffFilter(status=status, direction=direction),
                PageRequest(limit=MAX_PAGE, cursor=cursor),
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _get(self, handoff_id: str) -> tuple[HandoffRecord, HandoffState]:
        record = self.store.get(handoff_id)
        if record is None:
            raise NotFound(f"no handoff {handoff_id}")
        return record, fold(record)

    def _may(self, state: HandoffState, kind: EventKind) -> None:
        problem = append_problem(state.status, kind)
        if problem is not None:
            raise Conflict(problem)

    def _append(
        self,
        handoff_id: str,
        kind: EventKind,
        actor: Actor,
        data: dict[str, str],
        at: datetime,
        *,
        outbox: bool = False,
    ) -> HandoffEvent:
        return self.store.append(handoff_id, event(kind, actor=actor, at=at, **data), outbox=outbox)

    def _unit_or_supervisor(self, principal: Principal, unit_id: str) -> None:
        if unit_id not in self.directory.units:
            raise NotFound(f"no unit {unit_id}")
        if principal.role == "supervisor":
            return
        if principal.role != "unit" or principal.id != unit_id:
            raise Forbidden("a unit sees its own matters only")

    def _brief(
        self, record: HandoffRecord, state: HandoffState, principal: Principal
    ) -> dict[str, Any]:
        view = views.record_view(record, principal, listing=True, state=state)
        snap = view["snapshot"]
        return {
            "id": record.id,
            "status": state.status.value,
            "unit": state.unit,
            "category": snap["matter"]["category"],
            "category_label_zh": snap["matter"]["category_label_zh"],
            "jurisdiction": snap["matter"]["jurisdiction"],
            "place": snap["content"]["place"],
            "request": snap["content"]["request"],
            "citizen_number": snap["citizen"]["number"],
            "sign_by": state.sign_by.isoformat() if state.sign_by else None,
            "complete_by": state.complete_by.isoformat() if state.complete_by else None,
            "overdue": sorted(f.split("@")[0] for f in state.flagged if f.startswith("overdue")),
            "due_soon": sorted(f.split("@")[0] for f in state.flagged if f.startswith("due_soon")),
            "unit_return_reason": state.unit_return_reason,
        }
