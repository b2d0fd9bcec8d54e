"""Personal data in free text and in a record's derived state (issue 10's findings): numbers in
the ways people write them are masked; what the state repeats of an event is masked like it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.test_handoff_views import OTHER_AGENT, PARTNER, SUPERVISOR, make

from hotline_bridge.core.principal import Principal
from hotline_bridge.core.privacy import contains_phone_number, mask_text
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    EventKind,
    HandoffEvent,
)


@pytest.mark.parametrize(
    ("written", "masked"),
    [
        ("+8613800138000", "+861******8000"),
        ("8613800138000", "861******8000"),
        ("138 0013 8000", "138 **** 8000"),
        ("138-0013-8000", "138-****-8000"),
        ("010-12345678", "010-****5678"),
        ("0888 5123456", "088* ***3456"),
        ("请回拨+86 138 0013 8000,谢谢", "请回拨+86 1** **** 8000,谢谢"),
    ],
)
def test_numbers_as_people_write_them_are_masked(written: str, masked: str) -> None:
    assert mask_text(written) == masked
    assert not contains_phone_number(mask_text(written))


@pytest.mark.parametrize(
    "text",
    ["报警110", "拨打12345", "2026-12-02 10:30", "Uniqueid 1764432000.12", "工单LJ-20261202-001",
     "h-01m8w3mpf2zcv9868dj6xrpqnx", "共3人受伤"],
)  # fmt: skip
def test_service_numbers_dates_and_ids_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


@given(
    st.sampled_from(["13", "15", "18", "19"]),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
    st.sampled_from(["", " ", "-"]),
    st.sampled_from(["", "+86", "86", "0086", "+86 "]),
    st.sampled_from(["电话", "tel: ", "号码是", " "]),
)
def test_no_mobile_number_survives_in_any_spelling(
    head: str, rest: str, sep: str, country: str, before: str
) -> None:
    number = head + rest
    written = country + sep.join([number[:3], number[3:7], number[7:]])
    out = mask_text(f"{before}{written}。")
    assert number[3:7] not in out.replace(sep, "") or number[3:7] == number[7:11]


CONFIDENTIAL_REASON = "家属要求回拨 138 0013 8000 再处理"


@pytest.mark.parametrize("principal", [OTHER_AGENT, PARTNER])
def test_derived_state_of_a_confidential_record_is_masked_like_its_events(
    principal: Principal,
) -> None:
    record = make(confidential=True)
    returned = HandoffEvent(
        seq=3,
        at=datetime(2024, 5, 1, 9, tzinfo=UTC),
        actor=Actor(kind=ActorKind.PARTNER, id="p"),
        kind=EventKind.RETURNED,
        data={"reason": CONFIDENTIAL_REASON},
    )
    record = record.model_copy(update={"events": (*record.events, returned)})
    view = views.record_view(record, principal)
    assert view["events"][2]["data"]["reason"] == "家属要求回拨 138 **** 8000 再处理"
    assert view["state"]["return_reason"] == "家属要求回拨 138 **** 8000 再处理"
    assert views.record_view(record, SUPERVISOR)["state"]["return_reason"] == CONFIDENTIAL_REASON
