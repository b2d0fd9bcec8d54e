"""A realistic quarter of handoff records for the sandbox (seeded, so the same seed, same quarter).

    python -m lab.quarter --quarter 2026Q4 --store /tmp/q.sqlite3 [--seed 12345] [--per-day 36]

Lijiang has about 1.25 million people in five counties/districts. The volumes are an estimate
of what passes BETWEEN the two platforms, not of all 12345 calls: about 36 linkage records a day
(most of them non-police matters that 110 hands to 12345: disputes, utilities, complaints; a
quarter of them police matters 12345 hands to 110; a few online work orders), more on weekdays.
Each record gets a plausible life: the partner answers or the call comes back to an agent, the
work order is signed for (签收) within minutes to hours, some are returned with a reason, most
are closed before or after their time limit, most citizens called back are satisfied.
The records are written through the store's own interface, so every report test reads exactly
what a running bridge would have written.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hotline_bridge.catalog import Catalog, load_catalog
from hotline_bridge.catalog.model import Platform
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    CallRef,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    IntakeChannel,
    event,
)
from hotline_bridge.handoffs.store import HandoffStore, SqliteHandoffStore
from hotline_bridge.reports.service import Quarter

# Population shares (approximate, 2020 census) for where matters happen.
JURISDICTIONS = {
    Jurisdiction.GUCHENG: 0.17,
    Jurisdiction.YULONG: 0.17,
    Jurisdiction.YONGSHENG: 0.31,
    Jurisdiction.HUAPING: 0.14,
    Jurisdiction.NINGLANG: 0.21,
}
PLACES = {
    Jurisdiction.GUCHENG: ["大研街道", "束河街道", "西安街道", "祥和街道", "金山白族乡", "七河镇"],
    Jurisdiction.YULONG: ["黄山镇", "白沙镇", "拉市镇", "石鼓镇", "巨甸镇"],
    Jurisdiction.YONGSHENG: ["永北镇", "程海镇", "期纳镇", "三川镇", "涛源镇"],
    Jurisdiction.HUAPING: ["中心镇", "荣将镇", "兴泉镇", "石龙坝镇"],
    Jurisdiction.NINGLANG: ["大兴镇", "永宁镇", "战河镇", "翠玉傈僳族普米族乡"],
}
# What 110 hands to 12345 (non-police matters), and what 12345 hands to 110, with weights.
TO_12345 = {
    "dispute.neighbour": 14, "dispute.family": 10, "dispute.consumer": 12, "dispute.labour": 11,
    "dispute.economic": 6, "dispute.homestead": 3, "help.utilities": 16, "help.aid_relief": 4,
    "help.legal_aid": 3, "gov.complaint_department": 5, "gov.complaint_public_service": 6,
    "gov.violation_report": 7, "consult.law_policy": 5, "consult.public_service": 6,
    "unclear.overlapping": 3,
}  # fmt: skip
TO_110 = {
    "police.public_order": 30, "police.road_traffic": 18, "police.criminal": 8,
    "police.crime_related": 10, "police.facility_hazard": 6, "police.disaster_accident": 5,
    "police.harassment": 8, "police.stability_lead": 2, "police.misconduct": 1,
    "first.violent_risk": 6, "first.harm_occurred": 6,
}  # fmt: skip
RETURN_REASONS = [
    "不属于本平台职责范围",
    "信息不全,无法办理",
    "已由属地先期处置",
    "重复工单",
    "需转其他部门办理",
]
SATISFACTION = {"satisfied": 70, "basically_satisfied": 15, "dissatisfied": 7, "not_reached": 8}


@dataclass
class Volumes:
    per_day: float = 36.0  # linkage records a day, weekdays (weekends x 0.8)
    to_110_share: float = 0.25
    work_order_share: float = 0.12  # of 110 -> 12345: received online (WeChat, SMS, ...)
    three_way_share: float = 0.15


def _pick(rng: random.Random, weights: dict[str, int] | dict[Jurisdiction, float]) -> str:
    keys = list(weights)
    return str(rng.choices(keys, weights=[float(w) for w in weights.values()])[0])


def generate(
    store: HandoffStore,
    quarter: Quarter,
    *,
    seed: int = 12345,
    volumes: Volumes | None = None,
    catalog: Catalog | None = None,
) -> int:
    """Write the quarter's records into ``store``; returns how many."""
    rng = random.Random(seed)
    v = volumes or Volumes()
    catalog = catalog or load_catalog()
    day = quarter.since
    written = 0
    while day < quarter.until:
        weekday = (day + timedelta(hours=8)).weekday()
        n = _poisson(rng, v.per_day * (0.8 if weekday >= 5 else 1.0))
        for _ in range(n):
            at = day + timedelta(seconds=rng.uniform(0, 86_400))
            if at >= quarter.until:
                continue
            store.create(_record(rng, v, catalog, at), outbox=False)
            written += 1
        day += timedelta(days=1)
    return written


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method is fine for the small means here.
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _record(rng: random.Random, v: Volumes, catalog: Catalog, at: datetime) -> HandoffRecord:
    to_110 = rng.random() < v.to_110_share
    direction = Direction.TO_110 if to_110 else Direction.TO_12345
    category = _pick(rng, TO_110 if to_110 else TO_12345)
    jurisdiction = Jurisdiction(_pick(rng, JURISDICTIONS))
    place = rng.choice(PLACES[jurisdiction])
    if not to_110 and rng.random() < v.work_order_share:
        kind, channel = HandoffKind.WORK_ORDER, rng.choice(list(IntakeChannel)[1:])
    elif rng.random() < v.three_way_share:
        kind, channel = HandoffKind.THREE_WAY, None
    else:
        kind, channel = HandoffKind.CARRY_TRANSFER, None
    limit_days = 1 if to_110 else rng.choice([3, 5, 5, 7])
    number = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
    record = new_handoff(
        HandoffInput(
            category=category,
            jurisdiction=jurisdiction,
            place=place,
            deadline=at + timedelta(days=limit_days),
        ),
        handoff_id=new_handoff_id(int(at.timestamp() * 1000)),
        kind=kind,
        direction=direction,
        target="110" if to_110 else "12345",
        citizen_number=number,
        created_by=Actor.agent(str(rng.randrange(1001, 1041))),
        catalog=catalog,
        now=at,
        call=CallRef(call_id=f"{at.timestamp():.3f}") if channel is None else None,
        channel=channel,
    )
    life = tuple(_life(rng, kind, at))
    return HandoffRecord(id=record.id, snapshot=record.snapshot, events=record.events + life)


def _life(rng: random.Random, kind: HandoffKind, at: datetime) -> list[HandoffEvent]:
    """What happened after the handoff, in time order, numbered from 2."""
    partner = Actor(kind=ActorKind.PARTNER, id="desk")
    out: list[HandoffEvent] = []
    t = at

    def add(kind_: EventKind, actor: Actor, after_s: float, **data: str) -> None:
        nonlocal t
        t = t + timedelta(seconds=after_s)
        e = event(kind_, actor=actor, at=t, **data)
        out.append(e.model_copy(update={"seq": len(out) + 2}))

    system = Actor.system()
    if kind is HandoffKind.WORK_ORDER:
        add(EventKind.PUSHED, system, rng.uniform(0.03, 2.0))
    else:
        add(EventKind.TRANSFER_REQUESTED, system, 0.01)
        add(EventKind.PARTNER_RINGING, system, rng.uniform(0.2, 1.0))
        roll = rng.random()
        if roll < 0.05:
            add(EventKind.PARTNER_FAILED, system, rng.uniform(10, 25), outcome="no_answer")
            add(EventKind.CITIZEN_RETURNED, system, rng.uniform(1, 5), agent_id="1001")
            return out
        if roll < 0.08:
            add(EventKind.PARTNER_FAILED, system, rng.uniform(2, 15), outcome="abandoned")
            return out
        add(EventKind.PARTNER_ANSWERED, system, rng.uniform(2, 12))
        if kind is HandoffKind.THREE_WAY:
            add(EventKind.THREE_WAY_STARTED, system, 0.1)
            add(EventKind.AGENT_LEFT, system, rng.uniform(30, 180))
        add(EventKind.PUSHED, system, rng.uniform(0.03, 0.3))
    if rng.random() < 0.04:
        return out  # never signed for: counts against the receipt rate
    # Most are signed for within the hour; a tail waits for the next working day.
    slow = rng.random() < 0.12
    add(
        EventKind.ACKNOWLEDGED,
        partner,
        rng.uniform(4, 60) * 3600 if slow else rng.expovariate(1 / 1800),
    )
    if rng.random() < 0.06:
        add(EventKind.RETURNED, partner, rng.uniform(600, 7200), reason=rng.choice(RETURN_REASONS))
        return out
    add(EventKind.STATUS_CHANGED, partner, rng.uniform(600, 14_400), status="in_progress")
    if rng.random() < 0.1:
        add(
            EventKind.SUPERVISED,
            Actor(kind=ActorKind.SUPERVISOR, id="s1"),
            86_400,
            text="请加快办理",
        )
    if rng.random() < 0.9:
        add(EventKind.CLOSED, partner, rng.lognormvariate(11.3, 0.8), outcome="已办结")
        add(
            EventKind.FOLLOW_UP,
            Actor.agent("1002"),
            rng.uniform(3600, 86_400),
            satisfaction=_pick(rng, SATISFACTION),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.quarter", description=__doc__)
    p.add_argument("--quarter", default="2026Q4")
    p.add_argument("--store", type=Path, required=True, help="SQLite file to write (created)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--per-day", type=float, default=Volumes.per_day)
    args = p.parse_args(argv)
    store = SqliteHandoffStore(args.store)
    try:
        n = generate(
            store, Quarter.parse(args.quarter), seed=args.seed, volumes=Volumes(args.per_day)
        )
    finally:
        store.close()
    print(f"{n} records for {args.quarter} ({Platform.HOTLINE_12345.value} site) in {args.store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
