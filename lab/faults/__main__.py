"""``python -m lab.faults``: the fault drill from the command line (``make faults``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from lab.drill import DrillError
from lab.faults import DEFAULT_RESULTS, FaultPlan, markdown, run_faults, write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lab.faults", description=sys.modules["lab.faults"].__doc__
    )
    p.add_argument("--short", action="store_true", help="CI's version: every fault, shorter")
    p.add_argument(
        "--replicas",
        action="store_true",
        help="the replica-failure drill: a standby replica, the active one kill -9ed",
    )
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="where JSON + md go")
    p.add_argument("--label", default="")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.replicas:
        plan = FaultPlan.replicas(short=args.short)
    else:
        plan = FaultPlan.short() if args.short else FaultPlan()
    try:
        result = asyncio.run(run_faults(plan, label=args.label, progress=not args.quiet))
    except DrillError as exc:
        print(f"faults: ERROR: {exc}", file=sys.stderr)
        return 2
    j, m = write(result, args.results)
    print(markdown(result))
    print(f"faults: results in {j} and {m}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
