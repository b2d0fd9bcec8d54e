"""Who may see and do what with a handoff record, and the view each reader gets. Pure.

Rules (the plan's 保护隐私 principle and the audit it needs):
- a citizen's numbers (``citizen.number``, ``citizen.callback``) are masked in list views unless
  the reader is a supervisor; a single record shows them in full to a supervisor and to the agent
  who created it;
- a confidential (保密) record shows its numbers and the words that identify the citizen (name,
  people, narrative, free-text notes) to supervisors only; everyone else gets masked numbers and
  ``[保密]`` in their place. Place, event and request stay visible so the matter can be handled;
- every read of a confidential record, by anyone, is audited in the store's access log (not in
  the record's events: a screen polling every second must not grow the record);
- actions that belong to the platform handling the matter (签收 acknowledge, 退回 return, status,
  办结 close) are taken by that platform: the partner for records we sent, our agents for records
  we received, and supervisors for either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hotline_bridge.catalog.model import Platform
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.privacy import mask_number, mask_text
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    EventKind,
    HandoffEvent,
    HandoffRecord,
)
from hotline_bridge.handoffs.status import (
    HandoffState,
    append_problem,
    fold,
)
from hotline_bridge.handoffs.store import AccessEntry

REDACTED = "[保密]"

# Event kinds people may append through the API (telephony events come from the bridge itself).
API_EVENT_KINDS = frozenset(
    {
        EventKind.ACKNOWLEDGED,
        EventKind.RETURNED,
        EventKind.STATUS_CHANGED,
        EventKind.NOTE,
        EventKind.SUPERVISED,
        EventKind.FOLLOW_UP,
        EventKind.CLOSED,
    }
)
_HANDLER_KINDS = frozenset(
    {EventKind.ACKNOWLEDGED, EventKind.RETURNED, EventKind.STATUS_CHANGED, EventKind.CLOSED}
)
# Event data that may hold a citizen's own words.
_FREE_TEXT_KEYS = frozenset({"text"})
# Derived state copied from event data people wrote (masked like that data).
_DERIVED_TEXT_KEYS = ("return_reason", "outcome", "unit_return_reason")

_ACTOR_KIND = {
    "agent": ActorKind.AGENT,
    "supervisor": ActorKind.SUPERVISOR,
    "partner": ActorKind.PARTNER,
}


def actor_of(principal: Principal) -> Actor:
    return Actor(kind=_ACTOR_KIND[principal.role], id=principal.agent_id or principal.id)


def is_creator(principal: Principal, record: HandoffRecord) -> bool:
    creator = record.snapshot.created_by
    return (
        principal.role == "agent"
        and creator.kind is ActorKind.AGENT
        and creator.id == (principal.agent_id or principal.id)
    )


def sees_full_number(principal: Principal, record: HandoffRecord, *, listing: bool) -> bool:
    if principal.role == "supervisor":
        return True
    if record.snapshot.citizen.confidential or listing:
        return False
    return is_creator(principal, record)


def sees_confidential_words(principal: Principal, record: HandoffRecord) -> bool:
    return not record.snapshot.citizen.confidential or principal.role == "supervisor"


def read_is_audited(record: HandoffRecord) -> bool:
    return record.snapshot.citizen.confidential


def access_entry(
    principal: Principal, record: HandoffRecord, listing: bool, now: datetime
) -> AccessEntry:
    """The access-log entry of one read of a confidential record (who, how, what they saw)."""
    full = sees_full_number(principal, record, listing=listing)
    return AccessEntry(
        handoff_id=record.id,
        principal=principal.agent_id or principal.id,
        role=principal.role,
        view="list" if listing else "record",
        full=full and sees_confidential_words(principal, record),
        at=now,
    )


def record_view(
    record: HandoffRecord,
    principal: Principal,
    *,
    listing: bool = False,
    state: HandoffState | None = None,
) -> dict[str, Any]:
    """The record as ``principal`` may see it, with its derived ``state``, as JSON-able data."""
    data = record.model_dump(mode="json")
    full_number = sees_full_number(principal, record, listing=listing)
    words = sees_confidential_words(principal, record)
    citizen = data["snapshot"]["citizen"]
    if not full_number:
        for key in ("number", "callback"):
            if citizen[key]:
                citizen[key] = mask_number(citizen[key])
    if not words:
        if citizen["name"]:
            citizen["name"] = REDACTED
        content = data["snapshot"]["content"]
        for key in ("people", "narrative"):
            if content[key]:
                content[key] = REDACTED
    if not (full_number and words):
        for ev in data["events"]:
            ev["data"] = {
                k: (REDACTED if not words and k in _FREE_TEXT_KEYS else mask_text(v))
                for k, v in ev["data"].items()
            }
    derived = (state or fold(record)).model_dump(mode="json")
    if not (full_number and words):
        # The state repeats what events said (a return's reason, the outcome): mask it alike.
        for key in _DERIVED_TEXT_KEYS:
            if derived.get(key):
                derived[key] = mask_text(derived[key])
    data["state"] = derived
    data["view"] = {
        "numbers": "full" if full_number else "masked",
        "content": "full" if words else "redacted",
    }
    return data


def event_view(event: HandoffEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def may_create(principal: Principal) -> str | None:
    """Why ``principal`` may not file a work order (None if it may)."""
    if principal.role not in ("agent", "supervisor"):
        return "work orders are filed by agents and supervisors"
    return None


def append_refusal(
    principal: Principal, record: HandoffRecord, kind: EventKind, *, site: Platform
) -> tuple[int, str] | None:
    """Why ``principal`` may not append an event of ``kind`` now: (HTTP status, reason) or None."""
    if kind not in API_EVENT_KINDS:
        return 422, f"{kind.value} events are recorded by the bridge, not through the API"
    role = principal.role
    if kind in _HANDLER_KINDS and role != "supervisor":
        # The platform handling the matter is the one the record went to.
        incoming = record.snapshot.direction.source is not site
        handler_role = "agent" if incoming else "partner"
        if role != handler_role:
            who = "our agents" if incoming else "the partner platform"
            return 403, f"{kind.value} is recorded by the handling platform ({who}) or a supervisor"
    if kind is EventKind.SUPERVISED and role != "supervisor":
        return 403, "supervised (督办) is recorded by supervisors"
    if kind is EventKind.FOLLOW_UP and role not in ("agent", "supervisor"):
        return 403, "follow_up (回访) is recorded by agents or supervisors"
    problem = append_problem(fold(record).status, kind)
    if problem is not None:
        return 409, problem
    return None
