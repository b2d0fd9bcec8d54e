"""The handoff record (工单) as it travels: a frozen snapshot plus append-only events.

What was known when a matter was handed over is the ``snapshot``; it never changes. Everything
that happens afterwards (the partner rang, answered, signed for it, returned it, closed it; a
supervisor read a confidential record) is a :class:`HandoffEvent` appended to ``events``. The
current status, timeline and outcome are derived from the events (``handoffs.status``), so the
record always says who did what and when, and nothing is ever silently rewritten. A new record
is made from what an agent's softphone sends by ``handoffs.intake``.

Fields merge national hotline work-order practice (GB/T 33358: requester basics, content,
handling, supervision, follow-up) with NG911's incident data object (ids, location, timeline).
Text that may reach an AMI field or a SIP header (ids, numbers, codes) is ``SafeLine``; narrative
is ``SafeText`` with line endings normalised to LF. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from hotline_bridge.catalog.model import MatterClass, Platform
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
    NOTICE = "notice"  # 互相通报: a major emergency made known to the linkage network


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
