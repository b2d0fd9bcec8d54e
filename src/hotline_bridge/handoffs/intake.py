"""A new handoff record from what an agent (or a work-order form) sends: the input's schema, the
matter resolved against the catalog (contradictions refused, naming the field), the factory."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import Field

from hotline_bridge.catalog.model import Catalog, MatterClass, Platform
from hotline_bridge.core.textfields import PhoneNumber
from hotline_bridge.core.vocabulary import CategoryCode, Jurisdiction
from hotline_bridge.handoffs.model import (
    Actor,
    CallRef,
    Citizen,
    Content,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    HandoffSnapshot,
    IntakeChannel,
    Location,
    Matter,
    Narrative,
    PersonName,
    RefId,
    Refs,
    ShortText,
    UtcDatetime,
    _Frozen,
)


class HandoffInput(_Frozen):
    """A hotkey press's payload. Everything is optional: ``{}`` must work mid-call."""

    category: CategoryCode | None = None
    matter_class: MatterClass | None = None
    danger_to_life: bool = False
    violent_risk: bool = False
    police_dispatch_first: bool | None = None  # derived from the flags and class when absent
    jurisdiction: Jurisdiction = Jurisdiction.UNKNOWN
    reason: ShortText | None = None
    citizen_name: PersonName | None = None
    callback: PhoneNumber | None = None
    confidential: bool = False
    follow_up_consent: bool | None = None
    time: ShortText | None = None
    place: ShortText | None = None
    people: ShortText | None = None
    event: ShortText | None = None
    request: ShortText | None = None
    narrative: Narrative | None = None
    location: Location | None = None
    work_order_no: RefId | None = None
    incident_no: RefId | None = None
    related: tuple[RefId, ...] = Field((), max_length=20)
    deadline: UtcDatetime | None = None


class HandoffInputError(ValueError):
    """The input contradicts the catalog; ``problems`` use the API's ``field``/``problem`` shape."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['problem']}" for p in problems))
        self.problems = problems


def resolve_matter(data: HandoffInput, catalog: Catalog) -> Matter:
    """The matter part of the snapshot: class filled from the category, contradictions refused."""
    matter_class, label = data.matter_class, None
    if data.category is not None:
        category = catalog.category(data.category)
        if category is None:
            raise HandoffInputError(
                [{"field": "category", "problem": f"unknown category code {data.category!r}"}]
            )
        if matter_class is not None and matter_class is not category.matter_class:
            raise HandoffInputError(
                [
                    {
                        "field": "matter_class",
                        "problem": f"{matter_class.value} contradicts category "
                        f"{category.code!r}, which is {category.matter_class.value}",
                    }
                ]
            )
        matter_class, label = category.matter_class, category.label_zh
    dispatch_first = data.police_dispatch_first
    if dispatch_first is None:
        dispatch_first = (
            data.danger_to_life
            or data.violent_risk
            or matter_class is MatterClass.POLICE_FIRST_RESPONSE
        )
    return Matter(
        matter_class=matter_class,
        category=data.category,
        category_label_zh=label,
        danger_to_life=data.danger_to_life,
        violent_risk=data.violent_risk,
        police_dispatch_first=dispatch_first,
        jurisdiction=data.jurisdiction,
        reason=data.reason,
    )


def new_handoff(
    data: HandoffInput,
    *,
    handoff_id: str,
    kind: HandoffKind,
    direction: Direction,
    target: str,
    citizen_number: str | None,
    created_by: Actor,
    catalog: Catalog,
    now: datetime,
    call: CallRef | None = None,
    first_receiver: Platform | None = None,
    channel: IntakeChannel | None = None,
    created_data: Mapping[str, str] | None = None,
) -> HandoffRecord:
    """A new record with its ``created`` event. Pure; raises HandoffInputError, ValidationError."""
    snapshot = HandoffSnapshot(
        created_at=now,
        created_by=created_by,
        kind=kind,
        direction=direction,
        first_receiver=first_receiver or direction.source,
        target=target,
        matter=resolve_matter(data, catalog),
        citizen=Citizen(
            number=citizen_number or None,
            callback=data.callback,
            name=data.citizen_name,
            confidential=data.confidential,
            follow_up_consent=data.follow_up_consent,
        ),
        content=Content(
            time=data.time,
            place=data.place,
            people=data.people,
            event=data.event,
            request=data.request,
            narrative=data.narrative,
            location=data.location,
        ),
        refs=Refs(
            work_order_no=data.work_order_no,
            incident_no=data.incident_no,
            call_id=call.call_id if call else None,
            linked_id=call.linked_id if call else None,
            related=data.related,
        ),
        call_started_at=call.started_at if call else None,
        call_answered_at=call.answered_at if call else None,
        deadline=data.deadline,
        channel=channel,
    )
    created = HandoffEvent(
        seq=1, at=now, actor=created_by, kind=EventKind.CREATED, data=dict(created_data or {})
    )
    return HandoffRecord(id=handoff_id, snapshot=snapshot, events=(created,))
