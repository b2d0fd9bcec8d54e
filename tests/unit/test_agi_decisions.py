"""The hooks' pure decisions: jurisdiction, nuisance, urgency, and the variables they set."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hotline_bridge.agi.decisions import (
    CallFacts,
    NuisanceRule,
    Urgency,
    call_facts,
    entry_decision,
    handoff_id_of,
    jurisdiction_for,
    receive_decision,
    urgency_of,
)
from hotline_bridge.catalog import load_catalog
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    HandoffKind,
    HandoffRecord,
)

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
CATALOG = load_catalog()
BY_NUMBER = {"0888512345": Jurisdiction.GUCHENG, "0888612345": Jurisdiction.HUAPING}
BY_ENDPOINT = {"carrier-yulong": Jurisdiction.YULONG, "carrier": Jurisdiction.GUCHENG}
# What the dialplan may safely compare and pass on: no blanks, quotes, commas or parentheses.
DIALPLAN_TOKEN = re.compile(r"[a-z0-9_-]*")


def record(**data: Any) -> HandoffRecord:
    return new_handoff(
        HandoffInput(**data),
        handoff_id=new_handoff_id(),
        kind=HandoffKind.CARRY_TRANSFER,
        direction=Direction.TO_12345,
        target="12345",
        citizen_number="13800138000",
        created_by=Actor.agent("1001"),
        catalog=CATALOG,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("dialled", "endpoint", "expected"),
    [
        ("0888612345", "carrier-yulong", Jurisdiction.HUAPING),  # the number dialled comes first
        ("12345", "carrier-yulong", Jurisdiction.YULONG),  # then the trunk
        ("12345", "carrier", Jurisdiction.GUCHENG),
        ("12345", "carrier-elsewhere", Jurisdiction.UNKNOWN),
        ("12345", None, Jurisdiction.UNKNOWN),
        ("", None, Jurisdiction.UNKNOWN),
    ],
)
def test_jurisdiction_by_number_then_trunk(
    dialled: str, endpoint: str | None, expected: Jurisdiction
) -> None:
    got = jurisdiction_for(dialled, endpoint, by_number=BY_NUMBER, by_endpoint=BY_ENDPOINT)
    assert got is expected


def test_no_mapping_means_unknown() -> None:
    assert jurisdiction_for("12345", "carrier", by_number={}, by_endpoint={}) is (
        Jurisdiction.UNKNOWN
    )


def test_nuisance_rule() -> None:
    rule = NuisanceRule(("police.harassment",), threshold=3, window=timedelta(days=90))
    assert rule.since(NOW) == NOW - timedelta(days=90)
    assert [rule.verdict(n) for n in (0, 2, 3, 40)] == ["no", "no", "yes", "yes"]
    assert rule.verdict(None) == "unknown"  # no number, or the store could not be asked
    assert NuisanceRule((), 1, timedelta(days=1)).verdict(1) == "yes"


@pytest.mark.parametrize(
    ("data", "urgency"),
    [
        ({"danger_to_life": True, "matter_class": "unclear_responsibility"}, Urgency.URGENT),
        ({"violent_risk": True, "matter_class": "non_police_matter"}, Urgency.URGENT),
        ({"police_dispatch_first": True}, Urgency.URGENT),
        ({"matter_class": "police_matter"}, Urgency.URGENT),
        ({"category": "police.criminal"}, Urgency.URGENT),
        ({"matter_class": "police_first_response"}, Urgency.URGENT),
        ({"category": "gov.violation_report"}, Urgency.NORMAL),
        ({"matter_class": "unclear_responsibility"}, Urgency.NORMAL),
        ({"matter_class": "neither_platform"}, Urgency.NORMAL),
        ({}, Urgency.NORMAL),
    ],
)
def test_urgency_of_a_record(data: dict[str, Any], urgency: Urgency) -> None:
    assert urgency_of(record(**data)) is urgency


def test_no_record_is_unknown_urgency() -> None:
    assert urgency_of(None) is Urgency.UNKNOWN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("h-01m8m3h46eseknac2jvyq5j6te", "h-01m8m3h46eseknac2jvyq5j6te"),
        (" h-01m8m3h46eseknac2jvyq5j6te ", "h-01m8m3h46eseknac2jvyq5j6te"),
        ("none", None),
        ("", None),
        ("h-01M8M3H46ESEKNAC2JVYQ5J6TE", None),
        ("h-01m8m3h46eseknac2jvyq5j6te,x", None),
        ("h-short", None),
    ],
)
def test_handoff_id_of(value: str, expected: str | None) -> None:
    assert handoff_id_of(value) == expected


ENV = {
    "agi_request": "agi://127.0.0.1:4573/entry",
    "agi_uniqueid": "1764432000.42",
    "agi_channel": "PJSIP/carrier-0000001a",
    "agi_callerid": "13800138000",
    "agi_extension": "12345",
    "agi_dnid": "12345",
}


def test_call_facts_from_the_environment() -> None:
    assert call_facts(ENV) == CallFacts("1764432000.42", "13800138000", "12345", "carrier")
    anonymous = call_facts({**ENV, "agi_callerid": "anonymous", "agi_channel": "Local/x@y-1;2"})
    assert anonymous.caller is None and anonymous.endpoint is None
    assert call_facts({"agi_request": "x", "agi_dnid": "110"}).dialled == "110"


def test_entry_decision_sets_two_variables_and_opens_the_call() -> None:
    d = entry_decision(call_facts(ENV), Jurisdiction.YULONG, "yes", NOW)
    assert d.variables == {"CALL_JURISDICTION": "yulong", "CALL_NUISANCE": "yes"}
    assert d.call is not None
    assert (d.call.call_id, d.call.kind, d.call.caller, d.call.endpoint) == (
        "1764432000.42",
        "citizen",
        "13800138000",
        "carrier",
    )
    assert d.call.jurisdiction is Jurisdiction.YULONG and d.call.nuisance is True
    assert d.call.arrived_at == NOW
    no_id = entry_decision(call_facts({"agi_request": "x"}), Jurisdiction.UNKNOWN, "no", NOW)
    assert no_id.call is None  # nothing to key a call log row on


def test_receive_decision_for_a_known_record() -> None:
    rec = record(
        danger_to_life=True, matter_class="unclear_responsibility", jurisdiction="ninglang"
    )
    d = receive_decision(call_facts(ENV), rec.id, rec, NOW)
    assert d.variables == {
        "HANDOFF_RECEIVED_ID": rec.id,
        "HANDOFF_CLASS": "unclear_responsibility",
        "HANDOFF_JURISDICTION": "ninglang",
        "HANDOFF_URGENCY": "urgent",
    }
    assert d.call is not None
    assert (d.call.kind, d.call.handoff_id, d.call.urgency) == ("from_partner", rec.id, "urgent")
    assert d.call.jurisdiction is Jurisdiction.NINGLANG


def test_receive_decision_without_a_record_routes_as_normal() -> None:
    d = receive_decision(call_facts(ENV), None, None, NOW)
    assert d.variables == {
        "HANDOFF_RECEIVED_ID": "",
        "HANDOFF_CLASS": "",
        "HANDOFF_JURISDICTION": "unknown",
        "HANDOFF_URGENCY": "unknown",
    }


@pytest.mark.parametrize("jurisdiction", list(Jurisdiction))
@pytest.mark.parametrize("nuisance", ["yes", "no", "unknown"])
def test_every_entry_value_is_a_dialplan_token(jurisdiction: Jurisdiction, nuisance: Any) -> None:
    for value in entry_decision(call_facts(ENV), jurisdiction, nuisance, NOW).variables.values():
        assert DIALPLAN_TOKEN.fullmatch(value), value


@pytest.mark.parametrize("matter_class", [None, "police_matter", "non_police_matter"])
@pytest.mark.parametrize("jurisdiction", list(Jurisdiction))
def test_every_receive_value_is_a_dialplan_token(
    matter_class: str | None, jurisdiction: Jurisdiction
) -> None:
    rec = record(matter_class=matter_class, jurisdiction=jurisdiction)
    for value in receive_decision(call_facts(ENV), rec.id, rec, NOW).variables.values():
        assert DIALPLAN_TOKEN.fullmatch(value), value
