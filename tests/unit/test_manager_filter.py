"""The sandbox's (and integrators') manager.conf asks Asterisk for exactly the bridge's events."""

from __future__ import annotations

import re
from pathlib import Path

from hotline_bridge.runtime.switchboard import EVENTS

MANAGER_CONF = Path(__file__).resolve().parents[2] / "asterisk" / "etc" / "manager.conf"


def _bridge_user_section() -> str:
    text = MANAGER_CONF.read_text()
    return text.split("[${ami_user}]", 1)[1].split("\n[", 1)[0]


def test_the_bridge_user_s_event_filter_is_the_bridge_s_event_list() -> None:
    names = re.findall(
        r"^eventfilter\(action\(include\),name\((\w+)\)\) =$", _bridge_user_section(), re.M
    )
    assert len(names) == len(set(names))
    # Shutdown is read by the AMI edge itself (the PBX going away), not dispatched.
    assert set(names) == set(EVENTS) | {"Shutdown"}


def test_the_admin_user_is_not_filtered() -> None:
    admin = MANAGER_CONF.read_text().split("[${admin_user}]", 1)[1]
    assert "eventfilter" not in admin
