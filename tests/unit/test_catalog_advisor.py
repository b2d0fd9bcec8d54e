"""The routing advisor: every rule of the annex (and the plan's body it relies on) is a case."""

from __future__ import annotations

import pytest

from hotline_bridge.catalog import (
    Action,
    AdviceError,
    Channel,
    MatterClass,
    Platform,
    advise,
    load_catalog,
)
from hotline_bridge.catalog.advisor import Rule

CATALOG = load_catalog()
AT_12345 = Platform.HOTLINE_12345
AT_110 = Platform.POLICE_110
A = Action


# -- annex 1: 12345转110受理事项 --------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "police.criminal",
        "police.public_order",
        "police.road_traffic",
        "police.mass_incident",
        "police.crime_related",
        "police.facility_hazard",
        "police.disaster_accident",
        "police.misconduct",
        "police.stability_lead",
    ],
)
def test_annex_1_police_matter_at_12345_goes_to_110_by_three_way(code: str) -> None:
    advice = advise(code, catalog=CATALOG, received_by=AT_12345)
    assert advice.action is A.THREE_WAY_TO_110
    assert advice.alternatives == (A.CARRY_TRANSFER_TO_110,)  # the one-key alternative
    assert advice.matter_class is MatterClass.POLICE_MATTER
    assert advice.rule is Rule.ANNEX_1
    assert "三方通话" in advice.reason_zh and "three-way" in advice.reason_en


def test_annex_1_by_class_without_category() -> None:
    advice = advise(
        None, catalog=CATALOG, matter_class=MatterClass.POLICE_MATTER, received_by=AT_12345
    )
    assert advice.action is A.THREE_WAY_TO_110


def test_police_matter_at_110_is_its_own() -> None:
    advice = advise("police.criminal", catalog=CATALOG, received_by=AT_110)
    assert advice.action is A.HANDLE_HERE and advice.rule is Rule.OWN_SCOPE


def test_harassment_is_reported_to_110_by_work_order() -> None:
    # 二.(二).7: 12345 遇到恶意骚扰…可及时通报110平台.
    advice = advise("police.harassment", catalog=CATALOG, received_by=AT_12345)
    assert advice.action is A.WORK_ORDER_TO_110
    assert advice.alternatives == (A.THREE_WAY_TO_110,)


def test_online_police_matter_at_12345_is_a_work_order_plus_phone_alert() -> None:
    # 二.(二).2: 通过热线系统工单转110受理,并通过电话提醒辖区110.
    advice = advise(
        "police.criminal", catalog=CATALOG, received_by=AT_12345, channel=Channel.ONLINE
    )
    assert advice.action is A.WORK_ORDER_TO_110
    assert advice.alert_110_by_phone is True
    assert advice.rule is Rule.ONLINE_CHANNEL


# -- annex 2: 110转12345受理事项 --------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "gov.violation_report",
        "gov.complaint_department",
        "gov.complaint_public_service",
        "dispute.economic",
        "dispute.family",
        "dispute.neighbour",
        "dispute.consumer",
        "dispute.labour",
        "dispute.homestead",
        "help.utilities",
        "help.aid_relief",
        "help.legal_aid",
        "consult.law_policy",
        "consult.public_service",
    ],
)
def test_annex_2_non_police_matter_at_110_goes_to_12345(code: str) -> None:
    advice = advise(code, catalog=CATALOG, received_by=AT_110)
    assert advice.action is A.WORK_ORDER_TO_12345
    # 三方通话或者推送工单: the three-way (and the one-key transfer) stay available.
    assert A.THREE_WAY_TO_12345 in advice.alternatives
    assert advice.rule is Rule.ANNEX_2
    assert advice.police_dispatch_first is False


def test_online_non_police_matter_at_110_registers_and_files_a_work_order() -> None:
    advice = advise("dispute.labour", catalog=CATALOG, received_by=AT_110, channel=Channel.ONLINE)
    assert advice.action is A.WORK_ORDER_TO_12345
    assert advice.alternatives == ()
    assert "登记" in advice.reason_zh


def test_non_police_matter_at_12345_is_its_own() -> None:
    advice = advise("help.utilities", catalog=CATALOG, received_by=AT_12345)
    assert advice.action is A.HANDLE_HERE
    assert "属地" in advice.reason_zh


# -- annex 3: 责任主体不明确事项 --------------------------------------------------------------


@pytest.mark.parametrize("here", [AT_12345, AT_110])
def test_annex_3_unclear_responsibility_starts_with_a_three_way_consult(here: Platform) -> None:
    advice = advise("unclear.overlapping", catalog=CATALOG, received_by=here)
    assert advice.action is A.THREE_WAY_CONSULT
    assert advice.rule is Rule.ANNEX_3_CONSULT
    assert "协商" in advice.reason_zh


@pytest.mark.parametrize("here", [AT_12345, AT_110])
def test_annex_3_still_undecided_first_receiver_handles(here: Platform) -> None:
    advice = advise("unclear.overlapping", catalog=CATALOG, received_by=here, decided=False)
    assert advice.action is A.FIRST_RECEIVER_HANDLES
    assert advice.rule is Rule.ANNEX_3_UNDECIDED


def test_annex_3_decided_means_the_agreed_class_applies() -> None:
    agreed = advise(
        None,
        catalog=CATALOG,
        matter_class=MatterClass.NON_POLICE_MATTER,
        received_by=AT_110,
        decided=True,
    )
    assert agreed.action is A.WORK_ORDER_TO_12345
    with pytest.raises(AdviceError) as exc:
        advise("unclear.overlapping", catalog=CATALOG, received_by=AT_110, decided=True)
    assert exc.value.field == "decided"


def test_annex_3_danger_at_110_dispatches_first() -> None:
    advice = advise("unclear.overlapping", catalog=CATALOG, received_by=AT_110, danger_to_life=True)
    assert advice.action is A.POLICE_DISPATCH_FIRST_THEN_HANDOVER
    assert advice.police_dispatch_first is True
    assert advice.rule is Rule.ANNEX_3_DANGER


def test_annex_3_danger_at_12345_brings_110_in_to_dispatch() -> None:
    advice = advise(
        "unclear.overlapping", catalog=CATALOG, received_by=AT_12345, danger_to_life=True
    )
    assert advice.action is A.THREE_WAY_TO_110
    assert advice.police_dispatch_first is True
    assert advice.rule is Rule.ANNEX_3_DANGER


def test_annex_3_danger_overrides_an_undecided_consult() -> None:
    advice = advise(
        "unclear.overlapping",
        catalog=CATALOG,
        received_by=AT_110,
        decided=False,
        danger_to_life=True,
    )
    assert advice.action is A.POLICE_DISPATCH_FIRST_THEN_HANDOVER


# -- annex 4: 不属于12345、110平台事项 ---------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "neither.litigation",
        "neither.arbitration",
        "neither.discipline",
        "neither.admin_review",
        "neither.info_disclosure",
        "neither.petition",
        "neither.secrets",
        "neither.privacy",
        "neither.public_morals",
    ],
)
@pytest.mark.parametrize("here", [AT_12345, AT_110])
def test_annex_4_neither_platform_first_receiver_guides_and_explains(
    code: str, here: Platform
) -> None:
    advice = advise(code, catalog=CATALOG, received_by=here)
    assert advice.action is A.GUIDE_AND_EXPLAIN
    assert advice.rule is Rule.ANNEX_4
    assert "引导和解释" in advice.reason_zh


# -- annex 5: 110平台第一时间处置事项 ----------------------------------------------------------


@pytest.mark.parametrize("code", ["first.harm_occurred", "first.violent_risk"])
def test_annex_5_at_110_dispatches_at_once_then_hands_over(code: str) -> None:
    advice = advise(code, catalog=CATALOG, received_by=AT_110)
    assert advice.action is A.POLICE_DISPATCH_FIRST_THEN_HANDOVER
    assert advice.police_dispatch_first is True
    assert advice.rule is Rule.ANNEX_5
    assert "现场处置后转交12345" in advice.reason_zh


@pytest.mark.parametrize(
    "code", ["dispute.family", "dispute.neighbour", "dispute.labour", "dispute.homestead"]
)
def test_annex_5_a_dispute_that_may_turn_violent_is_dispatched_not_forwarded(code: str) -> None:
    plain = advise(code, catalog=CATALOG, received_by=AT_110)
    assert plain.action is A.WORK_ORDER_TO_12345
    risky = advise(code, catalog=CATALOG, received_by=AT_110, violent_risk=True)
    assert risky.action is A.POLICE_DISPATCH_FIRST_THEN_HANDOVER
    assert risky.matter_class is MatterClass.NON_POLICE_MATTER
    harmed = advise(code, catalog=CATALOG, received_by=AT_110, danger_to_life=True)
    assert harmed.action is A.POLICE_DISPATCH_FIRST_THEN_HANDOVER


def test_stability_threat_at_12345_goes_to_110_at_once() -> None:
    # 二.(二).3: 12345接到影响社会稳定的苗头信息和隐患线索,第一时间转交110处置.
    advice = advise("dispute.labour", catalog=CATALOG, received_by=AT_12345, violent_risk=True)
    assert advice.action is A.THREE_WAY_TO_110
    assert advice.police_dispatch_first is True
    assert advice.rule is Rule.STABILITY


def test_first_response_class_at_12345_goes_to_110() -> None:
    advice = advise("first.harm_occurred", catalog=CATALOG, received_by=AT_12345)
    assert advice.action is A.THREE_WAY_TO_110 and advice.police_dispatch_first


def test_urgent_online_request_at_12345_alerts_110_by_phone() -> None:
    advice = advise(
        None, catalog=CATALOG, received_by=AT_12345, danger_to_life=True, channel=Channel.ONLINE
    )
    assert advice.action is A.WORK_ORDER_TO_110
    assert advice.alert_110_by_phone and advice.police_dispatch_first


def test_danger_with_a_police_matter_at_110_is_just_110s_own() -> None:
    advice = advise("police.criminal", catalog=CATALOG, received_by=AT_110, danger_to_life=True)
    assert advice.action is A.HANDLE_HERE and advice.police_dispatch_first


def test_danger_overrides_neither_platform() -> None:
    advice = advise("neither.petition", catalog=CATALOG, received_by=AT_12345, danger_to_life=True)
    assert advice.action is A.THREE_WAY_TO_110


# -- questions that cannot be answered -------------------------------------------------------


def test_unknown_category() -> None:
    with pytest.raises(AdviceError) as exc:
        advise("police.bogus", catalog=CATALOG, received_by=AT_12345)
    assert exc.value.field == "category"


def test_category_and_class_disagree() -> None:
    with pytest.raises(AdviceError) as exc:
        advise(
            "dispute.family",
            catalog=CATALOG,
            matter_class=MatterClass.POLICE_MATTER,
            received_by=AT_110,
        )
    assert exc.value.field == "matter_class"


def test_nothing_known() -> None:
    with pytest.raises(AdviceError) as exc:
        advise(None, catalog=CATALOG, received_by=AT_12345)
    assert exc.value.field == "category"


def test_every_class_and_platform_has_advice() -> None:
    for matter_class in MatterClass:
        for here in Platform:
            advice = advise(None, catalog=CATALOG, matter_class=matter_class, received_by=here)
            assert advice.reason_zh and advice.reason_en
