"""The exported JSON Schema is the partner's contract: it must match the model."""

from __future__ import annotations

import json
from pathlib import Path

from hotline_bridge.handoffs import schema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / schema.SCHEMA_FILE


def test_committed_schema_is_current() -> None:
    assert SCHEMA_PATH.is_file(), f"missing {SCHEMA_PATH}"
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == schema.render(), (
        "schemas/ is stale: run `python -m hotline_bridge.handoffs.schema` and commit the result"
    )


def test_schema_names_the_versioned_parts() -> None:
    doc = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert doc["title"] == "HandoffRecord"
    assert doc["properties"]["schema_version"]["const"] == 1
    assert set(doc["required"]) >= {"id", "snapshot", "events"}
    kinds = doc["$defs"]["EventKind"]["enum"]
    assert {"created", "acknowledged", "returned", "read_confidential"} <= set(kinds)


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert schema.main(["--check", "--out", str(out)]) == 1
    assert schema.main(["--out", str(out)]) == 0
    assert schema.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("HandoffRecord", "X"), encoding="utf-8")
    assert schema.main(["--check", "--out", str(out)]) == 1
