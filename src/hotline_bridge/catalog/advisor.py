"""The routing advisor: the annex's five routing rules as one pure function.

Given what the agent knows (a catalog category or a matter class, danger flags, which platform
received the request and whether a three-way consult already failed to decide), it says what to
do and why, in Chinese and English, naming the rule it applied. It advises; the agent decides.

Decisions taken where the plan leaves room (documented here so they can be argued with):

- **12345 gets a police matter by phone → three-way call to 110, carry-transfer as the
  alternative.** The annex says 12345 hands such requests to 110 "可通过三方通话直接分流" and lets
  110 ask the details; the plan's body (二.(二).2) also allows one-key transfer for matters clearly
  in the other's scope. A three-way keeps the 12345 agent on the line until 110 has answered, so an
  urgent caller is never left ringing into a busy desk; once 110 has it, the agent leaves. The
  one-key carry-transfer stays available as the faster alternative.
- **110 gets a 12345 matter by phone → pushed work order first**, three-way or carry-transfer as
  alternatives: the annex allows either, and a work order frees 110's line ("110生命线") at once.
- **Danger to life, property or public safety, or a dispute that may turn violent, overrides the
  class**: the annex gives that rule inside classes 3 and 5, and the body (二.(二).3) tells 12345 to
  pass stability threats to 110 "第一时间". 12345 cannot dispatch police, so there it means a
  three-way to 110 with ``police_dispatch_first``; at 110 it means dispatch now and hand any
  12345-scope part over afterwards.
- **Non-voice channels** (WeChat, SMS, web): 12345 files a work order to 110 and phones the
  jurisdiction's 110 (电话提醒辖区110); 110 registers the citizen and the matter and files a work
  order to 12345. A matter of unclear responsibility arriving online cannot be consulted on in a
  three-way, so the first receiver takes it (our reading, not the plan's words).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hotline_bridge.catalog.model import Catalog, MatterClass, Platform, Via


class Action(StrEnum):
    THREE_WAY_TO_110 = "three_way_to_110"
    CARRY_TRANSFER_TO_110 = "carry_transfer_to_110"
    WORK_ORDER_TO_110 = "work_order_to_110"
    WORK_ORDER_TO_12345 = "work_order_to_12345"
    THREE_WAY_TO_12345 = "three_way_to_12345"
    CARRY_TRANSFER_TO_12345 = "carry_transfer_to_12345"
    THREE_WAY_CONSULT = "three_way_consult"
    FIRST_RECEIVER_HANDLES = "first_receiver_handles"
    GUIDE_AND_EXPLAIN = "guide_and_explain"
    POLICE_DISPATCH_FIRST_THEN_HANDOVER = "police_dispatch_first_then_handover"
    HANDLE_HERE = "handle_here"  # the request reached the platform whose matter it is


class Channel(StrEnum):
    PHONE = "phone"
    ONLINE = "online"  # WeChat, SMS, web: no live call to hand over


class Rule(StrEnum):
    """Where the advice comes from: the annex's class numbers and the plan's body."""

    ANNEX_1 = "annex.1"  # 12345转110受理事项
    ANNEX_2 = "annex.2"  # 110转12345受理事项
    ANNEX_3_CONSULT = "annex.3.consult"
    ANNEX_3_UNDECIDED = "annex.3.undecided"
    ANNEX_3_DANGER = "annex.3.danger"
    ANNEX_4 = "annex.4"  # 不属于两平台事项
    ANNEX_5 = "annex.5"  # 110平台第一时间处置事项
    OWN_SCOPE = "scope"  # 一.(一) 明确职责边界: the receiving platform's own matter
    ONLINE_CHANNEL = "body.2.2.online"  # 二.(二).2: other channels go by work order
    STABILITY = "body.2.2.3"  # 二.(二).3: 12345 passes stability threats to 110 at once


@dataclass(frozen=True, slots=True)
class Advice:
    action: Action
    matter_class: MatterClass | None
    rule: Rule
    reason_zh: str
    reason_en: str
    police_dispatch_first: bool = False
    alternatives: tuple[Action, ...] = ()
    # Online police matters at 12345: the work order is followed by a phone call to the
    # jurisdiction's 110 (电话提醒辖区110).
    alert_110_by_phone: bool = False


class AdviceError(ValueError):
    """The question cannot be answered as asked; ``field`` names the input at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def advise(
    category_code: str | None,
    *,
    catalog: Catalog,
    matter_class: MatterClass | None = None,
    danger_to_life: bool = False,
    violent_risk: bool = False,
    received_by: Platform,
    decided: bool | None = None,
    channel: Channel = Channel.PHONE,
) -> Advice:
    """What the agent at ``received_by`` should do with the request. Pure.

    ``decided`` only matters for unclear responsibility: ``None`` before the three-way consult,
    ``False`` when the consult could not decide. When it did decide, pass the agreed class.
    """
    via: Via | None = None
    if category_code is not None:
        category = catalog.category(category_code)
        if category is None:
            raise AdviceError("category", f"unknown category code {category_code!r}")
        if matter_class is not None and matter_class is not category.matter_class:
            raise AdviceError(
                "matter_class",
                f"{matter_class.value} contradicts category {category_code!r} "
                f"({category.matter_class.value})",
            )
        matter_class, via = category.matter_class, category.via
    if matter_class is None and not (danger_to_life or violent_risk):
        raise AdviceError("category", "give a category or a matter_class")
    if decided is True and matter_class is MatterClass.UNCLEAR_RESPONSIBILITY:
        raise AdviceError("decided", "when the consult decided, pass the agreed matter_class")

    at_110 = received_by is Platform.POLICE_110
    online = channel is Channel.ONLINE

    # Danger overrides the class (annex 3 and 5, body 二.(二).3).
    if danger_to_life or violent_risk or matter_class is MatterClass.POLICE_FIRST_RESPONSE:
        rule = _danger_rule(matter_class, danger_to_life)
        if at_110:
            if matter_class is MatterClass.POLICE_MATTER:
                return Advice(
                    Action.HANDLE_HERE,
                    matter_class,
                    Rule.OWN_SCOPE,
                    "属110受理范围,110立即派警处置。",
                    "A police matter at 110: dispatch police now.",
                    police_dispatch_first=True,
                )
            return Advice(
                Action.POLICE_DISPATCH_FIRST_THEN_HANDOVER,
                matter_class,
                rule,
                "存在危及人身财产安全或可能激化的情况,110第一时间派警处置;"
                "属于12345受理范围的,现场处置后转交12345。",
                "Danger or a dispute that may turn violent: 110 dispatches at once and hands any "
                "12345-scope matter to 12345 after on-site handling.",
                police_dispatch_first=True,
            )
        if online:
            return Advice(
                Action.WORK_ORDER_TO_110,
                matter_class,
                Rule.ONLINE_CHANNEL,
                "网络渠道收到的紧急警情:工单转110,并立即电话提醒辖区110派警。",
                "An urgent police matter received online: file a work order to 110 and phone the "
                "jurisdiction's 110 at once so it dispatches.",
                police_dispatch_first=True,
                alert_110_by_phone=True,
            )
        return Advice(
            Action.THREE_WAY_TO_110,
            matter_class,
            Rule.STABILITY if violent_risk and not danger_to_life else rule,
            "存在危及人身财产安全或可能激化的情况,12345第一时间通过三方通话转110派警处置。",
            "Danger or a dispute that may turn violent: 12345 cannot dispatch police, so it "
            "brings 110 in on a three-way call at once for 110 to dispatch first.",
            police_dispatch_first=True,
            alternatives=(Action.CARRY_TRANSFER_TO_110,),
        )

    match matter_class:
        case MatterClass.POLICE_MATTER if at_110:
            return _own_scope(matter_class, received_by)
        case MatterClass.POLICE_MATTER if online:
            return Advice(
                Action.WORK_ORDER_TO_110,
                matter_class,
                Rule.ONLINE_CHANNEL,
                "网络渠道收到属于110受理范围的事项:通过热线系统工单转110,并电话提醒辖区110。",
                "A police matter received online: file a work order to 110 and phone the "
                "jurisdiction's 110.",
                alert_110_by_phone=True,
            )
        case MatterClass.POLICE_MATTER if via is Via.WORK_ORDER:
            return Advice(
                Action.WORK_ORDER_TO_110,
                matter_class,
                Rule.ANNEX_1,
                "属110受理范围,按清单以工单通报110平台。",
                "A police matter the catalog says to report to 110 by work order.",
                alternatives=(Action.THREE_WAY_TO_110,),
            )
        case MatterClass.POLICE_MATTER:
            primary, alternative = (
                (Action.CARRY_TRANSFER_TO_110, Action.THREE_WAY_TO_110)
                if via is Via.CARRY_TRANSFER
                else (Action.THREE_WAY_TO_110, Action.CARRY_TRANSFER_TO_110)
            )
            return Advice(
                primary,
                matter_class,
                Rule.ANNEX_1,
                "12345接到涉及公安的紧急求助,通过三方通话直接分流到110,由110问明情况后分级分类处置;"
                "110接听后话务员可退出。",
                "A police matter at 12345: bring 110 in on a three-way call; 110 asks the details "
                "and grades it. The agent may leave once 110 has answered.",
                alternatives=(alternative,),
            )
        case MatterClass.NON_POLICE_MATTER if not at_110:
            return _own_scope(matter_class, received_by)
        case MatterClass.NON_POLICE_MATTER:
            return Advice(
                Action.WORK_ORDER_TO_12345,
                matter_class,
                Rule.ONLINE_CHANNEL if online else Rule.ANNEX_2,
                "非警务求助:登记诉求人信息及诉求事项后推送工单转12345,由12345按属地和职能转办。",
                "A non-police matter at 110: register the citizen and the matter and push a work "
                "order to 12345, which routes it by territory and function.",
                alternatives=()
                if online or via is Via.WORK_ORDER
                else (Action.THREE_WAY_TO_12345, Action.CARRY_TRANSFER_TO_12345),
            )
        case MatterClass.UNCLEAR_RESPONSIBILITY if decided is False or online:
            return Advice(
                Action.FIRST_RECEIVER_HANDLES,
                matter_class,
                Rule.ANNEX_3_UNDECIDED,
                "协商后仍无法确定受理平台,由首先接到诉求的平台先行受理。",
                "The platforms could not agree: the platform that received it first handles it.",
            )
        case MatterClass.UNCLEAR_RESPONSIBILITY:
            return Advice(
                Action.THREE_WAY_CONSULT,
                matter_class,
                Rule.ANNEX_3_CONSULT,
                "责任主体不明确:通过三方通话(诉求方、12345、110)了解诉求后协商确定受理平台。",
                "Responsibility unclear: a three-way call (citizen, 12345, 110) to learn the "
                "matter, then the platforms agree who takes it.",
                alternatives=(Action.FIRST_RECEIVER_HANDLES,),
            )
        case MatterClass.NEITHER_PLATFORM:
            return Advice(
                Action.GUIDE_AND_EXPLAIN,
                matter_class,
                Rule.ANNEX_4,
                "不属于12345与110受理范围,由首接话务人员做好合理引导和解释。",
                "Neither platform's matter: the first-receiving agent guides and explains where "
                "it belongs.",
            )
    raise AssertionError(f"unhandled matter class {matter_class}")  # pragma: no cover


def _danger_rule(matter_class: MatterClass | None, danger_to_life: bool) -> Rule:
    if matter_class is MatterClass.UNCLEAR_RESPONSIBILITY and danger_to_life:
        return Rule.ANNEX_3_DANGER
    return Rule.ANNEX_5


def _own_scope(matter_class: MatterClass, here: Platform) -> Advice:
    if here is Platform.POLICE_110:
        return Advice(
            Action.HANDLE_HERE,
            matter_class,
            Rule.OWN_SCOPE,
            "属110受理范围,由110受理处置。",
            "A police matter at 110: 110 takes it.",
        )
    return Advice(
        Action.HANDLE_HERE,
        matter_class,
        Rule.OWN_SCOPE,
        "属12345受理范围,由12345受理并按属地和职能转办。",
        "A 12345 matter at 12345: 12345 takes it and routes it by territory and function.",
    )
