"""Masking, redaction and authorisation decisions per role (pure, no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hotline_bridge.catalog import Platform, load_catalog
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
)

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CREATOR = Principal(id="agent-1001", role="agent", agent_id="1001")
OTHER_AGENT = Principal(id="agent-1002", role="agent", agent_id="1002")
SUPERVISOR = Principal(id="supervisor1", role="supervisor")
PARTNER = Principal(id="partner-110", role="partner")


def make(confidential: bool = False, direction: Direction = Direction.TO_110) -> HandoffRecord:
    record = new_handoff(
        HandoffInput(
            category="dispute.neighbour",
            citizen_name="木丽",
            callback="13912345678",
            confidential=confidential,
            people="对门邻居",
            place="古城区",
            narrative="她说邻居威胁她,电话13800138000",
        ),
        handoff_id="h-01hx0000000000000000000000",
        kind=HandoffKind.THREE_WAY,
        direction=direction,
        target="110",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=load_catalog(),
        now=NOW,
    )
    note = HandoffEvent(
        seq=2,
        at=NOW,
        actor=Actor(kind=ActorKind.PARTNER, id="p"),
        kind=EventKind.NOTE,
        data={"text": "回拨13800138000未接"},
    )
    return record.model_copy(update={"events": (*record.events, note)})


def citizen(view: dict[str, Any]) -> dict[str, Any]:
    return view["snapshot"]["citizen"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("principal", "listing", "full"),
    [
        (SUPERVISOR, True, True),
        (SUPERVISOR, False, True),
        (CREATOR, False, True),
        (CREATOR, True, False),
        (OTHER_AGENT, False, False),
        (PARTNER, False, False),
        (PARTNER, True, False),
    ],
)
def test_numbers_by_role(principal: Principal, listing: bool, full: bool) -> None:
    view = views.record_view(make(), principal, listing=listing)
    if full:
        assert citizen(view)["number"] == "13800138000"
        assert citizen(view)["callback"] == "13912345678"
        assert view["view"]["numbers"] == "full"
    else:
        assert citizen(view)["number"] == "138****8000"
        assert citizen(view)["callback"] == "139****5678"
        assert view["view"]["numbers"] == "masked"
        # Numbers inside event text are masked as well.
        assert view["events"][1]["data"]["text"] == "回拨138****8000未接"
    # Not confidential: the words are visible to everyone.
    assert view["snapshot"]["content"]["narrative"].startswith("她说邻居威胁她")
    assert citizen(view)["name"] == "木丽"


@pytest.mark.parametrize("principal", [CREATOR, OTHER_AGENT, PARTNER])
def test_confidential_record_hides_number_and_words_from_all_but_supervisors(
    principal: Principal,
) -> None:
    view = views.record_view(make(confidential=True), principal)
    assert citizen(view)["number"] == "138****8000"
    assert citizen(view)["name"] == views.REDACTED
    content = view["snapshot"]["content"]
    assert content["narrative"] == views.REDACTED and content["people"] == views.REDACTED
    assert content["place"] == "古城区"  # the matter can still be handled
    assert view["events"][1]["data"]["text"] == views.REDACTED
    assert view["view"] == {"numbers": "masked", "content": "redacted"}


def test_confidential_record_is_whole_for_supervisors() -> None:
    record = make(confidential=True)
    view = views.record_view(record, SUPERVISOR, listing=True)
    assert citizen(view)["number"] == "13800138000"
    assert view["snapshot"]["content"]["narrative"] == record.snapshot.content.narrative
    assert view["view"] == {"numbers": "full", "content": "full"}


def test_view_does_not_touch_the_record() -> None:
    record = make(confidential=True)
    before = record.model_dump_json()
    views.record_view(record, PARTNER)
    assert record.model_dump_json() == before


def test_view_carries_derived_state() -> None:
    view = views.record_view(make(), CREATOR)
    assert view["state"]["status"] == "created"
    assert view["state"]["last_seq"] == 2


def test_the_access_entry_names_the_reader_and_what_they_saw() -> None:
    record = make(confidential=True)
    entry = views.access_entry(PARTNER, record, True, NOW)
    assert (entry.principal, entry.role, entry.view, entry.full) == (
        "partner-110", "partner", "list", False,
    )  # fmt: skip
    assert views.access_entry(SUPERVISOR, record, False, NOW).full is True
    assert views.read_is_audited(record) and not views.read_is_audited(make())


K = EventKind


@pytest.mark.parametrize(
    ("principal", "direction", "kind", "expected"),
    [
        # Records we sent are handled by the partner platform.
        (PARTNER, Direction.TO_110, K.ACKNOWLEDGED, None),
        (PARTNER, Direction.TO_110, K.RETURNED, None),
        (CREATOR, Direction.TO_110, K.ACKNOWLEDGED, 403),
        (CREATOR, Direction.TO_110, K.CLOSED, 403),
        # Records we received are handled by our agents.
        (CREATOR, Direction.TO_12345, K.ACKNOWLEDGED, None),
        (PARTNER, Direction.TO_12345, K.ACKNOWLEDGED, 403),
        # Supervisors may do either; only they record 督办.
        (SUPERVISOR, Direction.TO_110, K.ACKNOWLEDGED, None),
        (SUPERVISOR, Direction.TO_110, K.SUPERVISED, None),
        (CREATOR, Direction.TO_110, K.SUPERVISED, 403),
        # Everyone may note.
        (PARTNER, Direction.TO_110, K.NOTE, None),
        (OTHER_AGENT, Direction.TO_110, K.NOTE, None),
        # Follow-up (回访) comes after closing, by our side.
        (CREATOR, Direction.TO_110, K.FOLLOW_UP, 409),
        (PARTNER, Direction.TO_110, K.FOLLOW_UP, 403),
        # Telephony events are the bridge's own.
        (SUPERVISOR, Direction.TO_110, K.PARTNER_ANSWERED, 422),
        (SUPERVISOR, Direction.TO_110, K.READ_CONFIDENTIAL, 422),
        # status_changed needs the partner to have it first.
        (PARTNER, Direction.TO_110, K.STATUS_CHANGED, 409),
    ],
)
def test_append_refusal(
    principal: Principal, direction: Direction, kind: EventKind, expected: int | None
) -> None:
    refusal = views.append_refusal(
        principal, make(direction=direction), kind, site=Platform.HOTLINE_12345
    )
    assert (refusal[0] if refusal else None) == expected


def test_only_agents_and_supervisors_file_work_orders() -> None:
    assert views.may_create(CREATOR) is None
    assert views.may_create(SUPERVISOR) is None
    assert views.may_create(PARTNER) is not None
