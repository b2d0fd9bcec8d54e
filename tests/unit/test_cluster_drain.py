"""What a replica's hand-back of a PBX waits for and holds (runtime.cluster.NodeService)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from tests.plans import REMINDER_PLAN

from hotline_bridge.conferences.api import CONFERENCES
from hotline_bridge.config.settings import ClusterNode
from hotline_bridge.core.reminder import ReminderState, start
from hotline_bridge.keys.plugin import PHONE_KEYS
from hotline_bridge.notices.api import NOTICES
from hotline_bridge.runtime.cluster import NodeService
from hotline_bridge.transfers.api import TRANSFERS
from hotline_bridge.workorders.api import WORK_ORDERS


def reminder(rid: str, state: ReminderState) -> Any:
    r, _ = start(replace(REMINDER_PLAN, reminder_id=rid), 0.0)
    return replace(r, state=state)


def book(live: int) -> Any:
    return SimpleNamespace(book=SimpleNamespace(live=lambda: [object()] * live))


def node_service(app: dict[Any, Any] | None = None) -> NodeService:
    node = ClusterNode.model_validate(
        {"name": "pbx-1", "ami_port": 5038, "api_port": 8401, "agi_port": 4601}
    )
    svc = NodeService(node, asyncio.Event(), datetime(2026, 12, 4, tzinfo=UTC))
    base: dict[Any, Any] = {TRANSFERS: book(0), CONFERENCES: book(0)}
    svc.runtime = SimpleNamespace(app={**base, **(app or {})}, agi=None)  # type: ignore[assignment]
    return svc


def test_reminder_calls_on_the_line_count_as_in_flight_a_waiting_retry_does_not() -> None:
    from hotline_bridge.notices.service import NoticeService
    from hotline_bridge.workorders.service import ReminderService

    notices = NoticeService.__new__(NoticeService)
    notices.calls = {
        "r-1": reminder("r-1", ReminderState.DIALING),
        "r-2": reminder("r-2", ReminderState.RETRY_WAIT),
        "r-3": reminder("r-3", ReminderState.DELIVERED),
    }
    duty = ReminderService.__new__(ReminderService)
    duty.reminders = {"r-4": reminder("r-4", ReminderState.ANSWERED)}
    svc = node_service({NOTICES: notices, WORK_ORDERS: SimpleNamespace(reminders=duty)})
    assert svc.in_flight() == 2
    svc.runtime.app[TRANSFERS] = book(1)  # type: ignore[union-attr]
    assert svc.in_flight() == 3


def test_a_node_without_notices_or_work_orders_counts_its_handoffs() -> None:
    assert node_service().in_flight() == 0
    assert node_service({CONFERENCES: book(2)}).in_flight() == 2


def test_draining_holds_the_phone_keys_and_a_put_off_releases_them() -> None:
    keys = SimpleNamespace(held=None)
    svc = node_service({PHONE_KEYS: keys})
    svc.drain(True)
    assert svc.draining and keys.held is not None and "press again" in keys.held
    svc.drain(False)
    assert not svc.draining and keys.held is None


def test_draining_a_node_without_phone_keys_or_not_up_yet() -> None:
    svc = node_service()
    svc.drain(True)
    assert svc.draining
    down = node_service()
    down.runtime = None
    down.drain(True)
    assert down.draining and down.in_flight() is None
