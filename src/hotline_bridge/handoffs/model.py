"""The handoff record (工单): a frozen snapshot plus append-only events, and the fold over them.

What was known when a matter was handed over is the ``snapshot``; it never changes. Everything
that happens afterwards (the partner rang, answered, signed for it, returned it, closed it; a
supervisor read a confidential record) is a :class:`HandoffEvent` appended to ``events``. The
current status, timeline and outcome are derived by :func:`fold`, so the record always says who
did what and when, and nothing is ever silently rewritten.

Fields merge national hotline work-order practice (GB/T 33358: requester basics, content,
handling, supervision, follow-up) with NG911's incident data object (ids, location, timeline).
Text that may reach an AMI field or a SIP header (ids, numbers, codes) is ``SafeLine``; narrative
is ``SafeText`` with line endings normalised to LF. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from hotline_bridge.catalog.model import Catalog, MatterClass, Platform
from hotline_bridge.core.textfields import PhoneNumber, SafeLine, SafeText
from hotline_bridge.core.vocabulary import CategoryCode, Jurisdiction

SCHEMA_VERSION: Literal[1] = 1


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
HandoffId = Annotated[str, Field(pattern=r"^h-[0-9a-z]{26}$")]
# Ids and codes that may travel in AMI variables or SIP headers: SafeLine plus a dull alphabet.
RefId = Annotated[SafeLine, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]


def _lf(value: object) -> object:
    # One line ending in the record: softphones on Windows send CRLF, the partner may not.
    if isinstance(value, str):
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value


Narrative = Annotated[SafeText, BeforeValidator(_lf)]
ShortText = Annotated[Narrative, Field(max_length=1000)]
PersonName = Annotated[SafeLine, Field(min_length=1, max_length=100)]
DataKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
DataValue = Annotated[Narrative, Field(max_length=2000)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- vocabulary --------------------------------------------------------------------------------


class Direction(StrEnum):
    TO_110 = "12345->110"
    TO_12345 = "110->12345"

    @property
    def source(self) -> Platform:
        return Platform.HOTLINE_12345 if self is Direction.TO_110 else Platform.POLICE_110

    @classmethod
    def from_site(cls, site: Platform) -> Direction:
        return cls.TO_110 if site is Platform.HOTLINE_12345 else cls.TO_12345


class HandoffKind(StrEnum):
    CARRY_TRANSFER = "carry_transfer"  # 一键携号转接: the live call moves to the partner
    THREE_WAY = "three_way"  # 三方通话: citizen, agent and partner on one call
    WORK_ORDER = "work_order"  # 工单: the record travels without a live call


class IntakeChannel(StrEnum):
    """How the matter reached the first receiver (受理渠道); live-call handoffs leave it unset."""

    PHONE = "phone"
    WECHAT = "wechat"  # 微信
    SMS = "sms"  # 短信
    WEB = "web"  # 网站
    APP = "app"  # 客户端
    EMAIL = "email"  # 电子邮件


class ActorKind(StrEnum):
    AGENT = "agent"
    SYSTEM = "system"
    PARTNER = "partner"
    SUPERVISOR = "supervisor"
    UNIT = "unit"  # a handling unit (承办单位): a county government or a city department


class Status(StrEnum):
    CREATED = "created"  # written; the call or work order is on its way to the partner
    FAILED = "failed"  # the live handoff did not reach the partner (the citizen came back)
    PUSHED = "pushed"  # the partner has it (answered the call, or received the work order)
    ACKNOWLEDGED = "acknowledged"  # 签收
    IN_PROGRESS = "in_progress"  # 办理中
    RETURNED = "returned"  # 退回, with a reason
    ASSIGNED = "assigned"  # 交办: given to a handling unit, waiting for its 签收
    UNIT_RETURNED = "unit_returned"  # the unit gave it back (退回): to be assigned again
    CLOSED = "closed"  # 办结


class EventKind(StrEnum):
    CREATED = "created"
    TRANSFER_REQUESTED = "transfer_requested"
    PARTNER_RINGING = "partner_ringing"
    PARTNER_ANSWERED = "partner_answered"
    PARTNER_FAILED = "partner_failed"  # data: outcome (busy, no_answer, ...)
    CITIZEN_RETURNED = "citizen_returned"  # data: agent_id
    THREE_WAY_STARTED = "three_way_started"
    AGENT_LEFT = "agent_left"
    THREE_WAY_ENDED = "three_way_ended"
    CALL_PROGRESS = "call_progress"  # any other step of the live handoff; data: what, detail?
    PUSHED = "pushed"  # the record reached the partner platform
    ACKNOWLEDGED = "acknowledged"  # 签收
    RETURNED = "returned"  # 退回; data: reason
    STATUS_CHANGED = "status_changed"  # data: status
    NOTE = "note"  # data: text
    SUPERVISED = "supervised"  # 督办; data: text
    FOLLOW_UP = "follow_up"  # 回访; data: satisfaction, text?
    CLOSED = "closed"  # 办结; data: outcome?
    READ_CONFIDENTIAL = "read_confidential"  # audit of a read; data: view, full
    ASSIGNED = "assigned"  # 交办; data: unit, sign_by, complete_by, suggested, override_reason?
    UNIT_ACKNOWLEDGED = "unit_acknowledged"  # the unit's 签收; data: unit
    UNIT_RETURNED = "unit_returned"  # the unit's 退回; data: unit, reason
    DUE_SOON = "due_soon"  # a time limit is near; data: stage (sign | complete), due
    OVERDUE = "overdue"  # a time limit passed; data: stage, due (督办 follows)


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"
    NOT_REACHED = "not_reached"  # the citizen could not be reached for the follow-up


# Statuses a ``status_changed`` event may set; the others have their own event kinds.
CHANGEABLE_STATUSES = frozenset({Status.IN_PROGRESS})

# Keys each event kind must carry in ``data`` (and the values they may take, where fixed).
_REQUIRED_DATA: Mapping[EventKind, Mapping[str, frozenset[str] | None]] = {
    EventKind.RETURNED: {"reason": None},
    EventKind.STATUS_CHANGED: {"status": frozenset(s.value for s in CHANGEABLE_STATUSES)},
    EventKind.NOTE: {"text": None},
    EventKind.SUPERVISED: {"text": None},
    EventKind.FOLLOW_UP: {"satisfaction": frozenset(s.value for s in Satisfaction)},
    EventKind.READ_CONFIDENTIAL: {"view": frozenset({"record", "list"})},
    EventKind.CALL_PROGRESS: {"what": None},
    EventKind.ASSIGNED: {"unit": None, "sign_by": None, "complete_by": None},
    EventKind.UNIT_ACKNOWLEDGED: {"unit": None},
    EventKind.UNIT_RETURNED: {"unit": None, "reason": None},
    EventKind.DUE_SOON: {"stage": frozenset({"sign", "complete"}), "due": None},
    EventKind.OVERDUE: {"stage": frozenset({"sign", "complete"}), "due": None},
}


# -- parts of the snapshot ---------------------------------------------------------------------


class Actor(_Frozen):
    kind: ActorKind
    id: RefId

    @classmethod
    def agent(cls, agent_id: str) -> Actor:
        return cls(kind=ActorKind.AGENT, id=agent_id)

    @classmethod
    def system(cls) -> Actor:
        return cls(kind=ActorKind.SYSTEM, id="hotline-bridge")


class Location(_Frozen):
    """Where the matter is: a free address and, when known, WGS84 coordinates."""

    address: ShortText | None = None
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    datum: Literal["WGS84"] = "WGS84"

    @model_validator(mode="after")
    def _both_or_neither(self) -> Location:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class Citizen(_Frozen):
    number: PhoneNumber | None = None  # as carried on the call (caller ID)
    callback: PhoneNumber | None = None
    name: PersonName | None = None
    confidential: bool = False  # 保密: number and narrative shown to supervisors only
    # May the citizen be called back for the follow-up (回访)? None: not asked (allowed unless
    # the record is confidential); a confidential record is called back only when True.
    follow_up_consent: bool | None = None


class Content(_Frozen):
    """The five elements of a report (时间、地点、人物、事件、诉求) and the agent's narrative."""

    time: ShortText | None = None
    place: ShortText | None = None
    people: ShortText | None = None
    event: ShortText | None = None
    request: ShortText | None = None
    narrative: Narrative | None = None
    location: Location | None = None


class Matter(_Frozen):
    matter_class: MatterClass | None = None
    category: CategoryCode | None = None
    # The label as the catalog had it at handoff time: the partner may run another catalog.
    category_label_zh: ShortText | None = None
    danger_to_life: bool = False
    violent_risk: bool = False
    police_dispatch_first: bool = False
    jurisdiction: Jurisdiction = Jurisdiction.UNKNOWN
    reason: ShortText | None = None


class Refs(_Frozen):
    work_order_no: RefId | None = None  # 12345 工单编号
    incident_no: RefId | None = None  # 110 警情编号
    call_id: RefId | None = None  # Asterisk Uniqueid of the citizen's channel
    linked_id: RefId | None = None  # Asterisk Linkedid of the call
    related: tuple[RefId, ...] = Field((), max_length=20)  # other handoff or work-order ids


class CallRef(_Frozen):
    """The live call a handoff was made from, as the call model knew it."""

    call_id: RefId
    linked_id: RefId | None = None
    started_at: UtcDatetime | None = None
    answered_at: UtcDatetime | None = None


class HandoffSnapshot(_Frozen):
    """What was known when the matter was handed over. Never changes after creation."""

    created_at: UtcDatetime
    created_by: Actor
    kind: HandoffKind
    direction: Direction
    first_receiver: Platform  # 首接: who got the citizen's request first
    target: RefId  # the configured target key, e.g. "110"
    matter: Matter
    citizen: Citizen
    content: Content
    refs: Refs
    call_started_at: UtcDatetime | None = None
    call_answered_at: UtcDatetime | None = None
    deadline: UtcDatetime | None = None
    # How the matter arrived (WeChat, SMS, ...); None on records that did not say (older ones).
    channel: IntakeChannel | None = None

    @property
    def source(self) -> Platform:
        return self.direction.source


class HandoffEvent(_Frozen):
    seq: int = Field(0, ge=0)  # assigned by the store; 0 until then
    at: UtcDatetime
    actor: Actor
    kind: EventKind
    data: dict[DataKey, DataValue] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _required_data(self) -> HandoffEvent:
        for key, allowed in _REQUIRED_DATA.get(self.kind, {}).items():
            value = self.data.get(key, "").strip()
            if not value:
                raise ValueError(f"a {self.kind.value} event needs data.{key}")
            if allowed is not None and value not in allowed:
                raise ValueError(f"data.{key} must be one of {sorted(allowed)}")
        return self


class HandoffRecord(_Frozen):
    """One handoff: the frozen snapshot and everything that happened to it since, in order."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="HandoffRecord",
        json_schema_extra={
            "description": "hotline-bridge handoff record (工单), schema version 1: a frozen "
            "snapshot plus append-only events; status and timeline are derived from the events."
        },
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    id: HandoffId
    snapshot: HandoffSnapshot
    events: tuple[HandoffEvent, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _events_in_order(self) -> HandoffRecord:
        if self.events[0].kind is not EventKind.CREATED:
            raise ValueError("the first event must be 'created'")
        for i, event in enumerate(self.events, start=1):
            if event.seq != i:
                raise ValueError(f"event seq must run 1, 2, 3, ...; found {event.seq} at {i}")
        return self


def event(kind: EventKind, *, actor: Actor, at: datetime, **data: str) -> HandoffEvent:
    """A new event (seq 0: the store numbers it when appending)."""
    return HandoffEvent(at=at, actor=actor, kind=kind, data=data)


# -- what an agent's softphone sends -----------------------------------------------------------


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
    created = HandoffEvent(seq=1, at=now, actor=created_by, kind=EventKind.CREATED)
    return HandoffRecord(id=handoff_id, snapshot=snapshot, events=(created,))


# -- the fold ----------------------------------------------------------------------------------


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
