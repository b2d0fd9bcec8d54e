"""``python -m lab.drill``: the load drill from the command line (``make drill``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from lab.drill import (
    DEFAULT_RESULTS,
    DEFAULT_TOPOLOGY,
    DRILL_BRIDGE_PORT,
    MODES,
    DrillError,
    DrillOptions,
    run_drill,
    summary,
)
from lab.drill.mix import JURISDICTIONS, PRESETS, parse_list


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lab.drill", description=sys.modules["lab.drill"].__doc__
    )
    p.add_argument("--rate", type=float, default=20.0, help="citizen calls per second (20)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of new calls (60)")
    p.add_argument("--mix", type=float, default=0.0, help="share of three-way calls, 0..1 (0)")
    p.add_argument("--hold", type=float, default=8.0, help="seconds each citizen talks (8)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="bridge",
        help="who transfers: bridge (default), raw AMI, the phones' REFER, or mixed bridge/raw",
    )
    p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results parent dir")
    p.add_argument("--label", default="")
    p.add_argument("--bridge-port", type=int, default=DRILL_BRIDGE_PORT)
    p.add_argument("--trace-sip", action="store_true", help="SIPp message traces (debugging)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--profile", action="store_true", help="py-spy the bridge (bridge mode)")
    p.add_argument("--bridge-nice", type=int, default=0, help="nice value of the bridge process")
    p.add_argument(
        "--targets",
        default="",
        help="the mix: spread the transfers over these linkage targets, e.g. "
        "110,119,120,122,water,power,gas (each its own SIPp desk, [drill.desks])",
    )
    p.add_argument(
        "--jurisdictions",
        default="",
        help=f"with --targets: these jurisdictions (default all: {','.join(JURISDICTIONS)})",
    )
    p.add_argument(
        "--entry-jurisdiction",
        default="yulong",
        help="with --targets: the drill trunk's jurisdiction (entry hook); its calls are pressed "
        "without an override. '' = every call by override (yulong)",
    )
    p.add_argument(
        "--mix-preset",
        choices=sorted(PRESETS),
        help="a named mix: network = every target and jurisdiction of the seed directory",
    )
    p.add_argument(
        "--publish", type=Path, help="also write drill[-mix]-<stamp>.json/.md here (bench/results)"
    )
    args = p.parse_args(argv)
    targets, jurisdictions = parse_list(args.targets), parse_list(args.jurisdictions)
    if args.mix_preset:
        if targets or jurisdictions:
            p.error("--mix-preset or --targets/--jurisdictions, not both")
        targets, jurisdictions = PRESETS[args.mix_preset]
    opts = DrillOptions(
        mode=args.mode,
        rate=args.rate,
        duration=args.duration,
        mix=args.mix,
        hold=args.hold,
        topology=args.topology,
        results=args.results,
        label=args.label,
        bridge_port=args.bridge_port,
        trace_sip=args.trace_sip,
        progress=not args.quiet,
        profile=args.profile,
        bridge_nice=args.bridge_nice,
        targets=targets,
        jurisdictions=jurisdictions,
        entry_jurisdiction=args.entry_jurisdiction,
        publish=args.publish,
    )
    try:
        report = asyncio.run(run_drill(opts))
    except DrillError as exc:
        print(f"drill: ERROR: {exc}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
