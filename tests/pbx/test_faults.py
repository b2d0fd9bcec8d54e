"""The fault drill's short version (CI): carry-transfer load while the partner is unreachable,
the AMI link is cut, the bridge is killed with SIGKILL and Asterisk restarts; every zero holds.

``python -m lab.faults --short`` in its own process, as ``make faults`` runs it; its JSON is the
verdict. Afterwards the session's bridge is healthy again (it lived through the PBX restart).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab.bridge import RunningBridge
from lab.sandbox import REPO

pytestmark = pytest.mark.pbx


def test_short_fault_drill_keeps_every_zero(bridge: RunningBridge, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.faults", "--short", "--quiet", "--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (result_file,) = tmp_path.glob("faults-*.json")
    result = json.loads(result_file.read_text())
    assert [f["name"] for f in result["faults"]] == [
        "partner_down",
        "ami_cut",
        "bridge_kill",
        "pbx_restart",
    ]
    assert all("error" not in f["detail"] for f in result["faults"]), result["faults"]
    assert result["zeros"] and not any(result["zeros"].values()), result["zeros"]
    # The drill really ran load through every window, and the faults really happened.
    for name in ("partner_down", "ami_cut", "bridge_kill", "pbx_restart"):
        assert result["per_fault"][name].get("calls", 0) > 0, name
    assert result["ami_proxy"]["cuts"] >= 1 and result["ami_proxy"]["connections"] >= 3
    assert result["partner"]["records_received"] > 0
    kill = next(f for f in result["faults"] if f["name"] == "bridge_kill")
    assert kill["detail"]["exit"] == -9
    # It died with a transfer in flight, which the restarted bridge took back from the store.
    assert kill["detail"]["transfers_in_flight_at_kill"] >= 1
    assert kill["detail"]["transfers_restored"] >= 1
    # The session's bridge reconnected after the PBX restart.
    for _ in range(100):
        if bridge.request_sync("GET", "/healthz")[0] == 200:
            break
        time.sleep(0.2)
    assert bridge.request_sync("GET", "/healthz")[0] == 200


def test_short_replica_failure_drill_keeps_every_zero(tmp_path: Path) -> None:
    """Issue 14 §3: a standby replica beside the active one, hotkeys spread over both, the active
    one kill -9ed under load; the standby takes over and nothing is dropped, lost or doubled."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.faults",
            "--replicas",
            "--short",
            "--quiet",
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (result_file,) = tmp_path.glob("replicas-*.json")
    result = json.loads(result_file.read_text())
    (kill,) = result["faults"]
    assert kill["name"] == "replica_kill" and "error" not in kill["detail"], kill
    assert result["zeros"] and not any(result["zeros"].values()), result["zeros"]
    assert kill["detail"]["exit"] == -9
    assert kill["detail"]["takeover_s"] is not None and kill["detail"]["takeover_s"] < 15
    assert kill["detail"]["transfers_in_flight_at_kill"] >= 1
    assert kill["detail"]["transfers_restored"] >= 1
    assert kill["detail"]["forwarded_by_standby"] > 0  # hotkeys did land on the standby
    assert kill["detail"]["old_active_rejoined_as"] == "standby"
    assert result["per_fault"]["replica_kill"]["accepted"] > 0
