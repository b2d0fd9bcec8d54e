"""The bridge's logs after real calls: every line JSON, no citizen number, no secret."""

from __future__ import annotations

import json
import re

import pytest
from lab.bridge import RunningBridge

from .conftest import Parties

pytestmark = pytest.mark.pbx

# A number standing on its own. Digits glued to letters or digits are part of an id (a handoff
# ULID, a SIP Call-ID, an Asterisk Uniqueid): a ULID such as ``h-01kb14086756295x…`` once failed
# this test with a rule that only looked at digits.
PHONE = re.compile(r"(?<![0-9A-Za-z.])(?:1[3-9]\d{9}|0[1-9]\d{8,10})(?![0-9A-Za-z])")


async def test_logs_of_real_calls_mask_numbers_and_hide_secrets(
    bridge: RunningBridge, parties: Parties
) -> None:
    number = "13700137000"
    await parties.agents()
    await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    _, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
    )
    await bridge.wait_state(f"/v1/transfers/{body['transfer_id']}", token, {"answered"})

    text = bridge.log_path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # JSON, every line
    assert any(r.get("event") == "carry transfer requested" for r in records)
    # Each line of a call's story carries its ids, and the number only masked.
    requested = [r for r in records if r.get("event") == "carry transfer requested"]
    assert all(r["handoff_id"] and r["call_id"] and r["transfer_id"] for r in requested)
    # How long the record's write held the press before the PBX was asked (ops read it here
    # and in hotline_handoff_record_write_seconds).
    assert all(0 < r["record_ms"] < 5000 for r in requested)
    assert any(r["citizen"] == "137****7000" for r in requested)
    assert number not in text
    assert not PHONE.findall(text), sorted(set(PHONE.findall(text)))[:5]
    secrets = [bridge.topology["ami"]["secret"], *(a["token"] for a in bridge.topology["agents"])]
    for secret in secrets:
        assert secret not in text
