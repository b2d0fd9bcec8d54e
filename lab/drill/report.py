"""The drill's report: figures over the calls (percentiles, CPU), JSON, the plot, a summary."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from . import mix as mixmod
from .options import DrillCall, DrillOptions, machine_description
from .verify import SippFindings, judge


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p90, p99, max (nearest-rank) of latencies in ms."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))]

    return {
        "n": len(vals),
        "mean": round(sum(vals) / len(vals), 3),
        "p50": round(rank(50), 3),
        "p90": round(rank(90), 3),
        "p99": round(rank(99), 3),
        "max": round(vals[-1], 3),
    }


def cpu_entry(start: float | None, end: float | None, window: float) -> dict[str, Any]:
    if start is None or end is None or window <= 0:
        return {"cpu_s": None, "pct_of_core": None}
    used = end - start
    return {"cpu_s": round(used, 3), "pct_of_core": round(100 * used / window, 1)}


def box_entry(start: tuple[int, int] | None, end: tuple[int, int] | None) -> dict[str, Any]:
    """How busy the whole machine was over the window: at ~100 % every process queues for a
    CPU, so a shortfall is the box's, not one process's."""
    if start is None or end is None or end[1] <= start[1]:
        return {"busy_pct": None}
    return {"busy_pct": round(100 * (end[0] - start[0]) / (end[1] - start[1]), 1)}


def loop_wait_entry(
    start: tuple[float, float] | None, end: tuple[float, float] | None, window: float
) -> dict[str, Any]:
    """The bridge's event loop over the window: time it ran, and time it was ready to run but
    waited for a CPU (the run queue). Waiting far longer than running means the loop was
    starved of CPU, not slow at its own work."""
    if start is None or end is None or window <= 0:
        return {}
    ran, waited = end[0] - start[0], end[1] - start[1]
    return {
        "loop_ran_s": round(ran, 3),
        "loop_waited_for_cpu_s": round(waited, 3),
        "loop_waiting_pct": round(100 * waited / window, 1),
    }


def record_writes(bridge_log: Path | None, calls: Iterable[DrillCall] = ()) -> dict[str, Any]:
    """The bridge's own time to write each press's record (``record_ms`` on its "... requested"
    log lines), as percentiles: the store's share of the hotkey's latency, measured inside the
    bridge under the drill's load. With the drill's ``calls``, each bridge press is also split
    at that line (written just after the press's AMI actions): from the hotkey to the actions
    leaving the bridge, and from there to the INVITE at the desk (the PBX's share), beside the
    raw presses' own actions-to-INVITE. Empty without a log (raw-only drills)."""
    if bridge_log is None or not bridge_log.exists():
        return {}
    record_ms: list[float] = []
    out_at: dict[str, float] = {}  # handoff id -> when its line was written (epoch s)
    with bridge_log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"record_ms"' not in line:
                continue
            with contextlib.suppress(ValueError, TypeError, KeyError):
                entry = json.loads(line)
                record_ms.append(float(entry["record_ms"]))
                stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
                out_at[entry["handoff_id"]] = stamp.timestamp()
    if not record_ms:
        return {}
    to_action, to_invite, raw_to_invite = [], [], []
    for c in calls:
        if c.press_at is None or c.partner_invite_at is None:
            continue
        if c.way == "raw":
            raw_to_invite.append(1000 * (c.partner_invite_at - c.press_at))
        elif c.way == "bridge" and (at := out_at.get(c.handoff_id)) is not None:
            to_action.append(1000 * (at - c.press_at))
            to_invite.append(1000 * (c.partner_invite_at - at))
    entry_out: dict[str, Any] = {"record_write_ms": percentiles(record_ms)}
    if to_action:
        entry_out["press_to_actions_ms"] = percentiles(to_action)
        entry_out["actions_to_invite_ms"] = percentiles(to_invite)
    if raw_to_invite:
        entry_out["raw_actions_to_invite_ms"] = percentiles(raw_to_invite)
    return entry_out


def build_report(
    opts: DrillOptions,
    calls_by_uid: dict[str, DrillCall],
    found: SippFindings,
    *,
    offered_seen: int,
    media: dict[str, Any],
    workdir: Path,
    started_at: float,
    cpu: dict[str, Any],
    samples: list[dict[str, Any]],
    sipp: dict[str, Any],
    leftovers: int,
    records: dict[str, Any],
    mix: mixmod.MixPlan | None = None,
    press_split: dict[str, Any] | None = None,
) -> dict[str, Any]:
    calls = list(calls_by_uid.values())
    for rec in calls:
        judge(rec, found.citizen_numbers)
    offered = opts.calls
    ended_self = sum(1 for by in found.citizen_end.values() if by == "self")
    dropped_pbx = sum(1 for by in found.citizen_end.values() if by == "pbx")
    dropped = offered - ended_self
    carry = [c for c in calls if c.kind == "carry"]
    three = [c for c in calls if c.kind == "three_way"]

    def lat(group: list[DrillCall]) -> dict[str, Any]:
        return {
            "hotkey_to_api_answer": percentiles([c.latency_ms(c.answer_at) for c in group]),  # type: ignore[misc]
            "hotkey_to_partner_invite": percentiles(
                [c.latency_ms(c.partner_invite_at) for c in group]  # type: ignore[misc]
            ),
            "hotkey_to_partner_bridged": percentiles(
                [c.latency_ms(c.partner_bridged_at) for c in group]  # type: ignore[misc]
            ),
        }

    def outcome(group: list[DrillCall]) -> dict[str, int]:
        attempted = [c for c in group if c.status in (202, "Success")]
        return {
            "attempted": len(attempted),
            "answered": sum(1 for c in attempted if c.partner_bridged_at is not None),
            "failed": sum(1 for c in group if c.partner_bridged_at is None),
            "press_refused": sum(1 for c in group if c.error),
            "retried_409": sum(1 for c in group if c.retries),
        }

    carried_ok = sum(1 for c in calls if c.carried)
    ways = sorted({c.way for c in calls})
    by_way = {
        way: {
            "transfers": outcome([c for c in carry if c.way == way]),
            "latency_ms": lat([c for c in carry if c.way == way]),
        }
        for way in ways
    }
    bridge_cpu = cpu.get("bridge", {}).get("cpu_s")
    if bridge_cpu is not None and calls:
        cpu["bridge"]["ms_per_transfer"] = round(1000 * bridge_cpu / len(calls), 3)
    problems = []
    if dropped:
        problems.append(
            f"{dropped} of {offered} citizens did not end their own call "
            f"({dropped_pbx} hung up by the PBX, the rest never answered or failed)"
        )
    if len(calls) < offered:
        problems.append(f"only {len(calls)} of {offered} calls reached an agent")
    unverified = [c for c in calls if not c.carried]
    if unverified:
        problems.append(f"{len(unverified)} calls without a verified carried number")
    if leftovers:
        problems.append(f"{leftovers} drill channels were still up after the run")
    if found.partner_unmatched:
        problems.append(f"{len(found.partner_unmatched)} INVITEs at a desk matched no hotkey")
    mix_section: dict[str, Any] | None = None
    if mix is not None:
        rows = mixmod.table(mix, calls)
        tot = mixmod.totals(rows)
        mix_section = {
            "targets": list(mix.targets),
            "jurisdictions": list(mix.jurisdictions),
            "assignment": "round-robin: call n gets target (n-1) mod T, jurisdiction "
            "((n-1) div T) mod J; the jurisdiction as the hotkey's handoff.jurisdiction override, "
            + (
                f"except {opts.entry_jurisdiction}: the drill trunk's own jurisdiction (entry "
                "hook), pressed without an override"
                if opts.entry_jurisdiction
                else "for every call (the drill trunk maps to no jurisdiction)"
            ),
            "entry_jurisdiction": opts.entry_jurisdiction,
            "desks": {ep: port for ep, port in mix.ports.items()},
            "totals": tot,
            "pairs": rows,
        }
        for key, what in (
            ("misrouted", "rang another desk or number than the directory's"),
            ("number_wrong", "reached the desk without the citizen's number in From and PAI"),
            ("missing", "never reached any desk"),
        ):
            if tot[key]:
                problems.append(f"mix: {tot[key]} handoffs {what}")
        # Enough calls to cover every pair once: a pair never verified is a hole in the proof.
        if len(calls) >= tot["pairs"] and tot["pairs_verified"] < tot["pairs"]:
            problems.append(
                f"mix: only {tot['pairs_verified']} of {tot['pairs']} target x jurisdiction "
                "pairs verified"
            )
    report: dict[str, Any] = {
        "drill": {
            "mode": opts.mode,
            "rate_cps": opts.rate,
            "duration_s": opts.duration,
            "hold_s": opts.hold,
            "mix_three_way": opts.mix,
            "mix_targets": list(opts.targets),
            "mix_jurisdictions": list(opts.jurisdictions),
            "calls": offered,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at)),
            "label": opts.label,
            "bridge_nice": opts.bridge_nice,
            "hotkey_driver": "admin AMI BridgeEnter (push), HTTP hotkey at once",
            "media": "citizens stream G.711 A-law (rtp_stream); agents and 110 echo",
        },
        "machine": machine_description(),
        "calls": {
            "offered": offered,
            "seen_by_pbx": offered_seen,
            "reached_agent": len(calls),
            "ended_by_citizen": ended_self,
            "hung_up_by_pbx": dropped_pbx,
            "dropped": dropped,
        },
        "transfers": outcome(carry),
        "three_way": {
            **outcome(three),
            "agent_left": sum(1 for c in three if c.leave_status == 202),
        },
        "carried": {
            "checked_at_partner": sum(1 for c in calls if c.partner_invite_at is not None),
            "verified": carried_ok,
            "unverified": len(calls) - carried_ok,
            "records_checked": records.get("checked", 0),
            "first_problems": [
                {"call_id": c.uid, "number": c.number, "problem": c.problem}
                for c in unverified[:20]
            ],
        },
        "latency_ms": {"carry": lat(carry), "three_way": lat(three)},
        **({"mix": mix_section} if mix_section is not None else {}),
        # carry transfers per way (in mixed mode: bridge and raw, call by call, same load)
        "by_way": by_way,
        "cpu": cpu,
        # The bridge's record writes and each bridge press split at its log line
        # (record_writes): latency figures, kept apart from the CPU ones.
        "press_split": press_split or {},
        "media": media or {"checked": False},
        "sipp": {
            name: {"exit": r.returncode, "errors": r.errors[-500:]} for name, r in sipp.items()
        },
        "progress": samples,
        "problems": problems,
        "ok": not problems,
        "results_dir": str(workdir),
    }
    return report


def write(
    report: dict[str, Any], calls: dict[str, DrillCall], opts: DrillOptions, workdir: Path
) -> None:
    """report.json, report.md, calls.jsonl and (unless opts.plot is off) latency.png under
    workdir."""
    (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (workdir / "report.md").write_text(markdown(report))
    with (workdir / "calls.jsonl").open("w") as f:
        for rec in calls.values():
            f.write(json.dumps(asdict(rec)) + "\n")
    if opts.plot:
        groups: dict[str, list[DrillCall]] = {}
        for rec in calls.values():
            groups.setdefault(rec.way, []).append(rec)
        png = plot_latencies(
            groups,
            workdir / "latency.png",
            f"drill {opts.mode}: {opts.rate:g} calls/s x {opts.duration:g} s",
        )
        report["plot"] = str(png) if png else None
        (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def plot_latencies(groups: dict[str, list[DrillCall]], out: Path, title: str) -> Path | None:
    """CDFs of the three latencies, one line per group (mode); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        print("drill: matplotlib missing (pip install -e '.[lab]'): no plot", file=sys.stderr)
        return None
    panels = [
        ("hotkey -> API answer", "answer_at"),
        ("hotkey -> INVITE at 110", "partner_invite_at"),
        ("hotkey -> 110 bridged", "partner_bridged_at"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (label, attr) in zip(axes, panels, strict=True):
        for name, calls in groups.items():
            for kind in ("carry", "three_way"):
                vals = sorted(
                    v
                    for c in calls
                    if c.kind == kind and (v := c.latency_ms(getattr(c, attr))) is not None
                )
                if not vals:
                    continue
                ys = [(i + 1) / len(vals) for i in range(len(vals))]
                tag = name if kind == "carry" else f"{name} three-way"
                p50 = vals[len(vals) // 2]
                ax.step(vals, ys, where="post", label=f"{tag} (p50 {p50:.1f} ms, n={len(vals)})")
        ax.set_title(label)
        ax.set_xlabel("ms (log scale)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("share of calls")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def summary(report: dict[str, Any]) -> str:
    c, t, w = report["calls"], report["transfers"], report["three_way"]
    car, cpu = report["carried"], report["cpu"]
    desk = "the desks" if report.get("mix") else "110"
    lines = [
        f"drill {report['drill']['mode']}: {report['drill']['rate_cps']:g} calls/s x "
        f"{report['drill']['duration_s']:g} s, hold {report['drill']['hold_s']:g} s, "
        f"three-way share {report['drill']['mix_three_way']:g}",
        f"  calls: offered {c['offered']}, reached an agent {c['reached_agent']}, ended by the "
        f"citizen {c['ended_by_citizen']}, DROPPED {c['dropped']}",
        f"  carry transfers: attempted {t['attempted']}, answered by {desk} {t['answered']}, "
        f"failed {t['failed']} (presses retried after 409: {t['retried_409']})",
    ]
    if w["attempted"] or w["failed"]:
        lines.append(
            f"  three-way: attempted {w['attempted']}, {desk} joined {w['answered']}, agent left "
            f"{w['agent_left']}, failed {w['failed']}"
        )
    lines.append(
        f"  number carried: checked at {desk} {car['checked_at_partner']}, verified "
        f"{car['verified']}, UNVERIFIED {car['unverified']}"
    )
    groups = list(report["latency_ms"].items())
    if len(report.get("by_way", {})) > 1:
        groups += [(f"{way} way", v["latency_ms"]) for way, v in report["by_way"].items()]
    for kind, lat in groups:
        for name, p in lat.items():
            if p["n"]:
                lines.append(
                    f"  {kind:10} {name:26} p50 {p['p50']:8.2f}  p90 {p['p90']:8.2f}  "
                    f"p99 {p['p99']:8.2f}  max {p['max']:8.2f} ms  (n={p['n']})"
                )
    for who in ("bridge", "asterisk"):
        e = cpu.get(who, {})
        if e.get("pct_of_core") is not None:
            extra = f", {e['ms_per_transfer']} ms CPU per call" if "ms_per_transfer" in e else ""
            if "loop_waiting_pct" in e:
                extra += (
                    f"; its event loop waited for a CPU {e['loop_waiting_pct']}% of the time "
                    f"({e['loop_waited_for_cpu_s']} s, ran {e['loop_ran_s']} s)"
                )
            lines.append(f"  cpu {who}: {e['pct_of_core']}% of one core{extra}")
    if cpu.get("box", {}).get("busy_pct") is not None:
        lines.append(f"  cpu machine: {cpu['box']['busy_pct']}% busy (all cores)")
    m = report["media"]
    if m.get("channels"):
        lines.append(
            f"  media: {m['rtp_both_ways']} of {m['channels']} drill channels had RTP both ways "
            f"(rx {m['rx_packets']} / tx {m['tx_packets']} packets, codecs {m['codecs']})"
        )
    mx = report.get("mix")
    if mx:
        t = mx["totals"]
        lines.append(
            f"  mix: {len(mx['targets'])} targets x {len(mx['jurisdictions'])} jurisdictions, "
            f"{t['pairs_hit']}/{t['pairs']} pairs hit, {t['pairs_verified']} verified; "
            f"calls {t['calls']}: verified {t['verified']}, MISROUTED {t['misrouted']}, "
            f"NUMBER WRONG {t['number_wrong']}, MISSING {t['missing']}, other {t['other']}"
        )
        for tgt in mx["targets"]:
            cells = [r for r in mx["pairs"] if r["target"] == tgt]
            lines.append(
                f"    {tgt:6} "
                + "  ".join(
                    f"{r['jurisdiction']} {r['verified']}/{r['calls']}"
                    + ("" if r["verified"] == r["calls"] else " !")
                    for r in cells
                )
            )
    lines.append(f"  results: {report['results_dir']}")
    lines += [f"  PROBLEM: {p}" for p in report["problems"]]
    lines.append("  OK" if report["ok"] else "  FAILED")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The summary and, for a mix drill, the per target x jurisdiction table (no numbers of
    citizens: the table counts, report.json and calls.jsonl name the calls)."""
    d = report["drill"]
    title = "mix drill" if report.get("mix") else "drill"
    out = [
        f"# {title} {d['started_at']}: {d['rate_cps']:g} calls/s x {d['duration_s']:g} s",
        "",
        "```",
        summary(report),
        "```",
        "",
    ]
    m = report.get("mix")
    if m:
        t = m["totals"]
        out += [
            f"Targets {', '.join(m['targets'])}; jurisdictions {', '.join(m['jurisdictions'])}; "
            f"{m['assignment']}.",
            "",
            f"**{t['calls']} calls over {t['pairs_hit']} of {t['pairs']} pairs: {t['carried']} "
            f"carried, {t['verified']} verified at the desk the directory names, "
            f"{t['misrouted']} misrouted, {t['number_wrong']} number wrong, {t['missing']} "
            f"missing, {t['other']} other; {t['pairs_verified']} of {t['pairs']} pairs verified.**",
            "",
            "Columns: *carried* = an INVITE carrying the handoff's X-Handoff-Id left the PBX to "
            "a desk; *verified* = it reached the directory's desk (SIPp port = target, request "
            "URI user = jurisdiction's number) with the citizen's number in From and "
            "P-Asserted-Identity, the desk bridged with the citizen and the bridge's record "
            "agrees (target, jurisdiction, the entry hook's call jurisdiction and whether the "
            "desk came from it or the override); *by entry* = pressed without an override, "
            "routed by the call's own jurisdiction; *3-way* = three-way calls.",
            "",
            mixmod.markdown_table(m["pairs"]),
        ]
    return "\n".join(out)


def publish(report: dict[str, Any], out: Path, stamp: str) -> list[Path]:
    """<out>/drill[-mix]-<stamp>.json (without the per-second progress) and .md: a committed
    result, the run's own directory (per-call files, SIPp logs) staying where it is."""
    out.mkdir(parents=True, exist_ok=True)
    prefix = "drill-mix" if report.get("mix") else "drill"
    j, m = out / f"{prefix}-{stamp}.json", out / f"{prefix}-{stamp}.md"
    slim = {k: v for k, v in report.items() if k != "progress"}
    j.write_text(json.dumps(slim, indent=2) + "\n")
    m.write_text(markdown(report))
    return [j, m]
