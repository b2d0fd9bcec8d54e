"""The handoff record service: the imperative shell between the HTTP resource and the store.

It reads the clock, makes ids, calls the store and appends audit events; every decision (who may
do what, what each reader sees, which status moves are legal, how a matter is routed) is made by
the pure functions of ``model``, ``views`` and ``catalog.advisor``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_bridge.catalog.model import Catalog, MatterClass, Platform
from hotline_bridge.core.errors import Forbidden, Invalid, NotFound, field_errors, refusal
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.textfields import PhoneNumber
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    HandoffInputError,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    DataValue,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    IntakeChannel,
    Satisfaction,
    ShortText,
    Status,
    UtcDatetime,
)
from hotline_bridge.handoffs.store import HandoffFilter, HandoffStore, PageRequest

# -- request bodies ----------------------------------------------------------------------------


class WorkOrderInput(HandoffInput):
    """A work order filed without a live call (e.g. a matter received by WeChat or SMS)."""

    citizen_number: PhoneNumber | None = None


class EventInput(BaseModel):
    """An event a person records: 签收, 退回, status, note, 督办, 回访, 办结."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal[
        "acknowledged", "returned", "status_changed", "note", "supervised", "follow_up", "closed"
    ]
    reason: ShortText | None = None
    status: Literal["in_progress"] | None = None
    text: DataValue | None = None
    outcome: ShortText | None = None
    satisfaction: Satisfaction | None = None


# Which fields each event kind takes, and which of them it must have.
_EVENT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "acknowledged": (frozenset({"text"}), frozenset()),
    "returned": (frozenset({"reason", "text"}), frozenset({"reason"})),
    "status_changed": (frozenset({"status", "text"}), frozenset({"status"})),
    "note": (frozenset({"text"}), frozenset({"text"})),
    "supervised": (frozenset({"text"}), frozenset({"text"})),
    "follow_up": (frozenset({"satisfaction", "text"}), frozenset({"satisfaction"})),
    "closed": (frozenset({"outcome", "text"}), frozenset()),
}


def event_data(body: EventInput) -> dict[str, str]:
    """The event's ``data``, or 422 naming each missing or misplaced field."""
    allowed, required = _EVENT_FIELDS[body.kind]
    given = {k: v for k, v in body.model_dump(exclude={"kind"}).items() if v not in (None, "")}
    problems = [
        {"field": f, "problem": f"required for a {body.kind} event"}
        for f in sorted(required - given.keys())
    ] + [
        {"field": f, "problem": f"not used by a {body.kind} event"}
        for f in sorted(given.keys() - allowed)
    ]
    if problems:
        raise Invalid("invalid request body", problems)
    return {k: str(v) for k, v in given.items()}


class ListQuery(BaseModel):
    """``GET /v1/handoffs`` query parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    since: UtcDatetime | None = Field(None, alias="from")
    until: UtcDatetime | None = Field(None, alias="to")
    matter_class: MatterClass | None = Field(None, alias="class")
    direction: Direction | None = None
    status: Status | None = None
    jurisdiction: Jurisdiction | None = None
    kind: HandoffKind | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: Annotated[str, Field(max_length=400)] | None = None


# -- the service -------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HandoffService:
    def __init__(
        self,
        store: HandoffStore,
        catalog: Catalog,
        *,
        site: Platform,
        target: str,
        clock: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], str] = new_handoff_id,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.site = site
        self.target = target  # the partner's target key in settings, e.g. "110"
        # Targets reached by a plain line: their records are read by reference, never pushed.
        self.by_reference: frozenset[str] = frozenset()
        # A plain line's API client (role "line") -> the targets whose records it may read.
        self.line_readers: dict[str, frozenset[str]] = {}
        self._clock = clock
        self._new_id = new_id

    def create_work_order(
        self, principal: Principal, body: WorkOrderInput, *, channel: IntakeChannel | None = None
    ) -> dict[str, Any]:
        if (why := views.may_create(principal)) is not None:
            raise Forbidden(why)
        data = HandoffInput.model_validate(body.model_dump(exclude={"citizen_number"}))
        try:
            record = new_handoff(
                data,
                handoff_id=self._new_id(),
                kind=HandoffKind.WORK_ORDER,
                direction=Direction.from_site(self.site),
                target=self.target,
                citizen_number=body.citizen_number,
                created_by=views.actor_of(principal),
                catalog=self.catalog,
                now=self._clock(),
                channel=channel,
            )
        except HandoffInputError as exc:
            raise Invalid("invalid request body", exc.problems) from None
        self.store.create(record, outbox=True)
        return views.record_view(record, principal)

    def read(self, principal: Principal, handoff_id: str) -> dict[str, Any]:
        record = self._get(handoff_id)
        if principal.role == "line" and record.snapshot.target not in self.line_readers.get(
            principal.id, frozenset()
        ):
            raise Forbidden("this record was not handed to your line")
        if views.read_is_audited(record):
            self.store.log_access(views.access_entry(principal, record, False, self._clock()))
        return views.record_view(record, principal)

    def access(self, principal: Principal, handoff_id: str) -> dict[str, Any]:
        """Who read this confidential record, how, when and how often (supervisors only)."""
        if principal.role != "supervisor":
            raise Forbidden("the access log is for supervisors")
        self._get(handoff_id)
        return {
            "handoff_id": handoff_id,
            "reads": [
                {
                    "principal": r.principal,
                    "role": r.role,
                    "view": r.view,
                    "full": r.full,
                    "first_at": r.first_at.isoformat(),
                    "last_at": r.last_at.isoformat(),
                    "count": r.reads,
                }
                for r in self.store.access_log(handoff_id)
            ],
        }

    def append(self, principal: Principal, handoff_id: str, body: EventInput) -> dict[str, Any]:
        data = event_data(body)
        kind = EventKind(body.kind)
        record = self._get(handoff_id)
        problem = views.append_refusal(principal, record, kind, site=self.site)
        if problem is not None:
            raise refusal(*problem)
        event = HandoffEvent(
            at=self._clock(), actor=views.actor_of(principal), kind=kind, data=data
        )
        # Handling events travel to the partner platform too (a later partner link drains them),
        # unless the record is ours and went to a plain line (nobody to push it to).
        by_reference = record.snapshot.target in self.by_reference and (
            record.snapshot.source == self.site
        )
        stored = self.store.append(handoff_id, event, outbox=not by_reference)
        return views.event_view(stored)

    def list(self, principal: Principal, query: ListQuery) -> dict[str, Any]:
        try:
            page = self.store.list(
                HandoffFilter(
                    since=query.since,
                    until=query.until,
                    matter_class=query.matter_class,
                    direction=query.direction,
                    status=query.status,
                    jurisdiction=query.jurisdiction,
                    kind=query.kind,
                ),
                PageRequest(limit=query.limit, cursor=query.cursor),
            )
        except ValueError as exc:
            raise Invalid("invalid query", [{"field": "cursor", "problem": str(exc)}]) from None
        now = self._clock()
        for record in page.items:
            if views.read_is_audited(record):
                self.store.log_access(views.access_entry(principal, record, True, now))
        return {
            "items": [views.record_view(r, principal, listing=True) for r in page.items],
            "next_cursor": page.next_cursor,
        }

    def _get(self, handoff_id: str) -> HandoffRecord:
        record = self.store.get(handoff_id)
        if record is None:
            raise NotFound(f"no handoff {handoff_id}")
        return record


def parse_query(params: dict[str, str]) -> ListQuery:
    try:
        return ListQuery.model_validate(params)
    except ValidationError as exc:
        raise Invalid("invalid query", field_errors(exc)) from None
