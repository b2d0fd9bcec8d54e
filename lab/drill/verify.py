"""After the run: what the SIPp peers and the bridge itself say of every call, and the verdict
on each (was the citizen's own number carried to the 110 desk, and does every side agree?)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .options import DrillCall, _gettimeofday, _log_fields


@dataclass
class SippFindings:
    citizen_numbers: set[str] = field(default_factory=set)  # numbers answered by an agent
    citizen_end: dict[str, str] = field(default_factory=dict)  # number -> "self" | "pbx"
    partner_invites: int = 0
    partner_unmatched: list[str] = field(default_factory=list)  # X-Handoff-Ids of no press


def read_sipp_logs(
    calls: dict[str, DrillCall],
    results: dict[str, Any],
    mode: str,
    desks: list[str] | tuple[str, ...] = ("partner",),
) -> SippFindings:
    """What the SIPp peers logged: which citizens were answered and how each call ended, and
    what every INVITE at a desk carried (matched to its call by X-Handoff-Id). ``desks`` are
    the desk SIPp processes' names: "partner" (the 110 desk) or the mix's desk endpoints, whose
    log lines also give the request URI's user (the number the PBX dialled)."""
    by_number = {c.number: c for c in calls.values() if c.number}
    found = SippFindings()
    for line in results["citizens"].log_lines:
        f = _log_fields(line)
        if " citizen-answered " in line:
            found.citizen_numbers.add(f.get("num", ""))
        elif " citizen-end " in line:
            found.citizen_end[f.get("num", "")] = f.get("by", "")
    for num, by in found.citizen_end.items():
        if num in by_number:
            by_number[num].citizen_end = by
    by_handoff = {c.handoff_id: c for c in calls.values() if c.handoff_id}
    for desk in desks:
        for line in results[desk].log_lines:
            if " drill-partner-invite " not in line and " drill-desk-invite " not in line:
                continue
            found.partner_invites += 1
            f = _log_fields(line)
            hid = f.get("id", "")
            rec = by_handoff.get(hid)
            if rec is None and hid.startswith("refer-"):
                rec = by_number.get(hid[len("refer-") :])
                if rec is not None:
                    rec.handoff_id = hid
            if rec is None:
                found.partner_unmatched.append(hid)
                continue
            rec.desk_invites += 1
            if rec.target and rec.desk_invites > 1:
                continue  # a second ring for one handoff: judged from the count, first one kept
            rec.partner_invite_at = _gettimeofday(f)
            rec.partner_from, rec.partner_pai = f.get("from", ""), f.get("pai", "")
            rec.desk = f"{desk}/{f['ruri']}" if "ruri" in f else desk
    if mode == "refer":
        for line in results["agents"].log_lines:
            f = _log_fields(line)
            rec = by_number.get(f.get("num", ""))
            if rec is None:
                continue
            if " refer-sent " in line:
                rec.press_at = _gettimeofday(f)
            elif " refer-accepted " in line:
                rec.answer_at, rec.status = _gettimeofday(f), 202
            elif " refer-notify " in line and not f.get("status", "1").startswith("1"):
                rec.refer_final = f.get("status", "")  # "unseen": answered by SIPp's -aa
            elif " refer-failed " in line:
                rec.error = f"REFER NOTIFY sipfrag {f.get('status')}"
    return found


async def verify_records(
    calls: dict[str, DrillCall],
    topo: dict[str, Any],
    http: aiohttp.ClientSession,
    base: str,
) -> dict[str, Any]:
    """The bridge's own account of each call, read back as a supervisor."""
    sup = next((c for c in topo.get("api_clients", []) if c.get("role") == "supervisor"), None)
    if sup is None:
        return {"error": "no supervisor in the topology's [[api_clients]]"}
    headers = {"Authorization": f"Bearer {sup['token']}"}
    sem = asyncio.Semaphore(8)

    async def get(path: str) -> tuple[int, Any]:
        async with sem, http.get(base + path, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def one(rec: DrillCall) -> None:
        kind = "conferences" if rec.kind == "three_way" else "transfers"
        status, body = await get(f"/v1/{kind}/{rec.ref}")
        if status == 200:
            rec.record_state, rec.record_outcome = body["state"], str(body["outcome"])
            if rec.kind == "three_way":
                steps = [e["what"] for e in body.get("timeline", [])]
                if "agent_left_room" not in steps:
                    rec.record_state += " (agent never left)"
        status, body = await get(f"/v1/handoffs/{rec.handoff_id}")
        if status == 200:
            snap = body["snapshot"]
            rec.record_number = str(snap["citizen"].get("number") or "")
            rec.record_target = str(snap.get("target") or "")
            rec.record_jurisdiction = str((snap.get("matter") or {}).get("jurisdiction") or "")
            for event in body.get("events", []):
                data = event.get("data") or {}
                if "call_jurisdiction" in data:  # the "created" event: how the desk was chosen
                    rec.record_call_jurisdiction = str(data["call_jurisdiction"])
                    rec.record_override = str(data.get("jurisdiction_override", ""))
                    break

    todo = [c for c in calls.values() if c.way == "bridge" and c.ref and c.handoff_id]
    await asyncio.gather(*(one(c) for c in todo))
    return {"checked": len(todo)}


def judge(rec: DrillCall, citizen_numbers: set[str]) -> None:
    """Was this call's number carried (to the desk the directory names, for a mix call), and
    does every side agree? ``rec.verdict`` is the first kind of fault, for the mix's table:
    missing (no INVITE anywhere), misrouted (another desk or number, or rung twice),
    number_wrong (From or PAI not the citizen's), other (press, bridging, record)."""
    problems = []
    verdicts = []
    if rec.press_at is None or rec.error:
        problems.append(rec.error or "no hotkey press")
        verdicts.append("other")
    if rec.partner_invite_at is None:
        problems.append(f"no INVITE at {'any desk' if rec.target else '110'} for this handoff")
        verdicts.append("missing")
    else:
        if rec.target and rec.desk != rec.expected_desk:
            problems.append(f"misrouted: rang {rec.desk}, the directory says {rec.expected_desk}")
            verdicts.append("misrouted")
        if rec.target and rec.desk_invites > 1:
            problems.append(f"{rec.desk_invites} INVITEs carried this handoff")
            verdicts.append("misrouted")
        if not (rec.partner_from == rec.partner_pai == rec.number):
            problems.append(
                f"desk got From {rec.partner_from or '-'} / PAI {rec.partner_pai or '-'}, "
                f"citizen is {rec.number}"
            )
            verdicts.append("number_wrong")
        if rec.number not in citizen_numbers:
            problems.append(f"{rec.number} is not a number a drill citizen presented")
            verdicts.append("number_wrong")
    if rec.target and rec.way == "bridge" and rec.record_target:
        if (rec.record_target, rec.record_jurisdiction) != (rec.target, rec.jurisdiction):
            problems.append(
                f"record says {rec.record_target}/{rec.record_jurisdiction}, "
                f"pressed {rec.target}/{rec.jurisdiction}"
            )
            verdicts.append("other")
        want = (rec.expected_call_jurisdiction, "no" if rec.by_entry else "yes")
        if (rec.record_call_jurisdiction, rec.record_override) != want:
            # The entry hook's jurisdiction, and whether the desk came from it or the override.
            problems.append(
                f"record: call jurisdiction {rec.record_call_jurisdiction or '-'}, override "
                f"{rec.record_override or '-'}; expected {want[0]}, {want[1]}"
            )
            verdicts.append("other")
    if rec.partner_bridged_at is None:
        problems.append(f"{'the desk' if rec.target else '110'} never bridged with the citizen")
    if rec.way == "bridge":
        if rec.record_number != rec.number:
            problems.append(f"record says {rec.record_number or 'no number'}")
        if rec.record_outcome != "answered" or "never" in rec.record_state:
            problems.append(f"record: {rec.record_state} / {rec.record_outcome}")
        if rec.kind == "three_way" and rec.leave_status != 202:
            problems.append(f"leave answered {rec.leave_status}")
    if (
        rec.way == "refer"
        and rec.refer_final not in ("unseen",)
        and not (rec.refer_final.startswith("2"))
    ):
        problems.append(f"REFER final sipfrag {rec.refer_final or 'missing'}")
    rec.carried = not problems
    rec.problem = "; ".join(problems)
    # Routing and number faults first: they are what the mix drill exists to catch.
    order = ("missing", "misrouted", "number_wrong", "other")
    rec.verdict = next((v for v in order if v in verdicts), "other" if problems else "verified")
