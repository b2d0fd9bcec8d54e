"""A hotkey pressed before the bridge has read the call's BridgeEnter waits for that event, not a
polling tick; and gives up after CATCH_UP_S with the model as it is."""

from __future__ import annotations

import asyncio

import pytest

from hotline_bridge.calls.model import CallModel
from hotline_bridge.calls.service import CallService
from hotline_bridge.handoffs import hotkey


def bridged_call(calls: CallService) -> None:
    for e in (
        {"Event": "Newchannel", "Uniqueid": "1.1", "Channel": "PJSIP/carrier-01",
         "CallerIDNum": "13800138000", "Linkedid": "1.1"},
        {"Event": "Newchannel", "Uniqueid": "1.2", "Channel": "PJSIP/agent1001-02",
         "Linkedid": "1.1"},
        {"Event": "BridgeEnter", "Uniqueid": "1.1", "Channel": "PJSIP/carrier-01",
         "BridgeUniqueid": "b1", "Linkedid": "1.1"},
        {"Event": "BridgeEnter", "Uniqueid": "1.2", "Channel": "PJSIP/agent1001-02",
         "BridgeUniqueid": "b1", "Linkedid": "1.1"},
    ):  # fmt: skip
        calls.on_event(e)


def service() -> CallService:
    return CallService(CallModel({"agent1001": "1001"}, ["partner-110"]))


async def test_the_wait_ends_when_the_model_reads_the_call() -> None:
    calls = service()
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, bridged_call, calls)
    started = loop.time()
    await hotkey.catch_up(lambda: calls.model.call_of_agent("1001") is not None, calls.changed)
    assert calls.model.call_of_agent("1001") is not None
    assert loop.time() - started < hotkey.CATCH_UP_S
    assert not calls._waiters  # every waiter resolved and forgotten


async def test_already_seen_returns_at_once_and_nothing_seen_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = service()
    bridged_call(calls)
    await hotkey.catch_up(lambda: True, calls.changed)
    monkeypatch.setattr(hotkey, "CATCH_UP_S", 0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await hotkey.catch_up(lambda: calls.model.call_of_agent("1002") is not None, calls.changed)
    assert loop.time() - started >= 0.05
    assert not calls._waiters  # the timed-out waiter was cancelled and dropped
