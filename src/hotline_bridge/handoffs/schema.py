"""Export the handoff record's JSON Schema: ``python -m hotline_bridge.handoffs.schema [--check]``.

The exported file (``schemas/handoff-record.v1.json``) is the interface the partner platform
codes against; a test fails when it is stale, so a model change always shows up in review.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hotline_bridge.handoffs.model import (
    SCHEMA_VERSION,
    HandoffRecord,
)

SCHEMA_FILE = f"handoff-record.v{SCHEMA_VERSION}.json"


def record_schema() -> dict[str, Any]:
    schema = HandoffRecord.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render() -> str:
    return json.dumps(record_schema(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("schemas") / SCHEMA_FILE)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    out: Path = args.out
    text = render()
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is stale: run python -m hotline_bridge.handoffs.schema", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
