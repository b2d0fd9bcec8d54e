"""The running bridge's /metrics after real calls: counted right, and valid for Prometheus."""

from __future__ import annotations

import re

import pytest
from lab.bridge import RunningBridge

from tests.test_ops_rules import PROMTOOL, check_metrics_text

from .conftest import Parties

pytestmark = pytest.mark.pbx


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


async def test_a_carry_transfer_shows_up_in_the_scrape(
    bridge: RunningBridge, parties: Parties
) -> None:
    if PROMTOOL is None:
        pytest.fail("promtool is not installed (make setup installs Debian's prometheus package)")
    _, before = await bridge.request("GET", "/metrics")
    number = "15000150000"
    await parties.agents()
    await parties.partner(citizen=number)
    await parties.citizen(number)
    agent_id, _call = await bridge.wait_for_call()
    token = bridge.token(agent_id)
    _, body = await bridge.request(
        "POST", f"/v1/agents/{agent_id}/carry-transfer", {"target": "110"}, token
    )
    await bridge.wait_state(f"/v1/transfers/{body['transfer_id']}", token, {"answered"})

    status, text = await bridge.request("GET", "/metrics")
    assert status == 200
    check_metrics_text(text)
    assert sample(text, "hotline_ami_connected") == 1.0
    labels = {"target": "110", "outcome": "answered", "state": "answered"}
    assert sample(text, "hotline_transfers_total", **labels) == (
        sample(before, "hotline_transfers_total", **labels) + 1
    )
    for result in ("offered", "answered"):
        grew = sample(text, "hotline_citizen_calls_total", result=result) - sample(
            before, "hotline_citizen_calls_total", result=result
        )
        assert grew >= 1, result
    assert sample(text, "hotline_handoff_answer_seconds_count", kind="carry_transfer") >= 1
    assert sample(text, "hotline_ami_action_seconds_count", action="BlindTransfer") >= 1
    recorded = sample(text, "hotline_handoff_record_write_seconds_count", kind="carry_transfer")
    assert (
        recorded
        - sample(before, "hotline_handoff_record_write_seconds_count", kind="carry_transfer")
        == 1
    )
    assert not re.search(r"(?<![\d.])1[3-9]\d{9}(?!\d)", text), (
        "a phone number leaked into the metrics"
    )
