"""The stream hub (numbering, replay, reset, slow subscribers) and stream tickets."""

from __future__ import annotations

import pytest

from hotline_bridge.core.errors import Forbidden, Unauthenticated
from hotline_bridge.streams.hub import StreamHub, TooManySubscribers
from hotline_bridge.streams.tickets import Tickets


def test_events_are_numbered_across_topics_and_replayed_after_the_last_seen() -> None:
    hub = StreamHub(replay=10)
    a1 = hub.publish("agent:1001", "call_offered", {"n": 1})
    hub.publish("agent:1002", "call_offered", {"n": 2})
    a3 = hub.publish("agent:1001", "call_answered", {"n": 3})
    assert (a1.id, a3.id) == (1, 3)
    assert hub.missed("agent:1001", 1) == [a3]
    assert hub.missed("agent:1001", 3) == []
    assert hub.missed("agent:1001", None) == []  # a first connection replays nothing


def test_a_reconnect_older_than_the_replay_gets_a_reset_then_what_is_left() -> None:
    hub = StreamHub(replay=3)
    events = [hub.publish("wallboard", "agent_state", {"n": n}) for n in range(6)]
    missed = hub.missed("wallboard", 1)
    assert missed[0].kind == "reset"
    assert missed[1:] == events[-3:]
    # Exactly at the edge of the buffer nothing was lost: no reset.
    assert [e.kind for e in hub.missed("wallboard", events[2].id)] == ["agent_state"] * 3


def test_live_events_reach_subscribers_of_their_topic_only() -> None:
    hub = StreamHub()
    sub, replay = hub.subscribe("agent:1001")
    other, _ = hub.subscribe("agent:1002")
    e = hub.publish("agent:1001", "transfer", {"state": "ringing"})
    assert replay == [] and sub.queue.get_nowait() == e and other.queue.empty()
    hub.unsubscribe(sub)
    hub.publish("agent:1001", "transfer", {"state": "answered"})
    assert sub.queue.empty() and hub.subscribers("agent:1001") == 0


def test_a_subscriber_that_cannot_keep_up_is_dropped_not_buffered_without_bound() -> None:
    hub = StreamHub()
    sub, _ = hub.subscribe("agent:1001")
    for n in range(sub.queue.maxsize + 1):
        hub.publish("agent:1001", "call_offered", {"n": n})
    assert sub.dropped and hub.dropped_slow == 1
    assert sub.queue.get_nowait() is None  # its writer is told to close
    assert hub.subscribers("agent:1001") == 0


def test_closing_ends_every_open_stream_and_refuses_new_ones() -> None:
    hub = StreamHub()
    subs = [hub.subscribe(topic)[0] for topic in ("agent:1001", "agent:1001", "wallboard")]
    hub.publish("agent:1001", "call_offered", {})
    hub.close()
    assert all(sub.queue.get_nowait() is None for sub in subs)  # each writer is told to close
    assert hub.subscribers("agent:1001") == hub.subscribers("wallboard") == 0
    assert hub.dropped_slow == 0
    with pytest.raises(TooManySubscribers):
        hub.subscribe("agent:1001")


def test_open_streams_per_topic_are_capped() -> None:
    hub = StreamHub(max_subscribers=2)
    hub.subscribe("agent:1001")
    hub.subscribe("agent:1001")
    with pytest.raises(TooManySubscribers):
        hub.subscribe("agent:1001")
    hub.subscribe("agent:1002")


def test_a_ticket_names_its_principal_and_its_stream_and_expires() -> None:
    tickets = Tickets(key=b"k" * 32, ttl_s=30)
    t = tickets.issue("1001", "agent:1001", now=100.0)
    assert tickets.verify(t, "agent:1001", now=129.0) == "1001"
    with pytest.raises(Unauthenticated, match="expired"):
        tickets.verify(t, "agent:1001", now=131.0)
    with pytest.raises(Forbidden, match="another stream"):
        tickets.verify(t, "agent:1002", now=101.0)


@pytest.mark.parametrize(
    "forged",
    ["", "x", "a.b.c", "eyJwIjoiMTAwMSJ9.c2ln", "é" * 600, "{}.{}"],
)
def test_forged_or_malformed_tickets_are_refused(forged: str) -> None:
    tickets = Tickets(key=b"k" * 32)
    with pytest.raises(Unauthenticated):
        tickets.verify(forged, "agent:1001", now=0.0)


def test_a_ticket_from_another_process_key_is_refused() -> None:
    t = Tickets(key=b"a" * 32).issue("1001", "agent:1001", now=0.0)
    with pytest.raises(Unauthenticated, match="invalid"):
        Tickets(key=b"b" * 32).verify(t, "agent:1001", now=1.0)


def test_handoff_moves_reach_the_agent_and_the_wallboard_once_per_state() -> None:
    from pathlib import Path
    from unittest import mock

    from lab.sandbox import bridge_settings
    from tests.plans import CARRY_PLAN, THREE_WAY_PLAN

    from hotline_bridge.conferences import machine as cm
    from hotline_bridge.streams.service import WALLBOARD, StreamService, agent_topic
    from hotline_bridge.transfers import machine as tm

    topology = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
    hub = StreamHub()
    service = StreamService(hub, bridge_settings(topology), mock.MagicMock())
    agent, _ = hub.subscribe(agent_topic("1001"))
    board, _ = hub.subscribe(WALLBOARD)
    t, _ = tm.start(CARRY_PLAN, now=1.0)
    ringing, _ = tm.step(t, tm.PartnerRinging(), now=2.0)
    service.transfer_changed(t, ringing)
    service.transfer_changed(ringing, ringing)  # no move, no event
    c, _ = cm.start(THREE_WAY_PLAN, now=1.0)
    gone, _ = cm.step(c, cm.ChannelGone(cm.Role.CITIZEN), now=2.0)
    service.conference_changed(c, gone)
    got = [agent.queue.get_nowait() for _ in range(agent.queue.qsize())]
    assert [(e.kind, e.data["state"]) for e in got] == [
        ("transfer", "ringing"),
        ("three_way", str(gone.state)),
    ]
    assert got[0].data["transfer_id"] == "t-1" and got[1].data["conference_id"] == "c-1"
    on_board = [board.queue.get_nowait() for _ in range(board.queue.qsize())]
    assert [e.data["agent_id"] for e in on_board] == ["1001", "1001"]


def test_queue_events_take_the_entry_facts_from_the_recorder_s_memory_not_the_store() -> None:
    from datetime import UTC, datetime
    from pathlib import Path
    from unittest import mock

    from lab.sandbox import bridge_settings

    from hotline_bridge.core.vocabulary import Jurisdiction
    from hotline_bridge.handoffs.store import CallEntry
    from hotline_bridge.streams.service import StreamService, agent_topic

    topology = Path(__file__).resolve().parents[2] / "asterisk" / "sandbox.toml"
    settings = bridge_settings(topology)
    agent = settings.agents[0]
    entry = CallEntry("1.7", datetime(2026, 12, 4, tzinfo=UTC), "citizen", Jurisdiction.YULONG)
    entries = {"1.7": entry}
    store = mock.MagicMock()
    hub = StreamHub()
    service = StreamService(hub, settings, store, call_entry=entries.get)
    sub, _ = hub.subscribe(agent_topic(agent.id))
    for name in ("AgentCalled", "AgentConnect"):
        service.on_event(
            {
                "Event": name,
                "DestChannel": f"PJSIP/{agent.endpoint}-00000001",
                "Uniqueid": "1.7",
                "CallerIDNum": "13900000551",
                "Queue": "citizens",
            }
        )
    got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert [(e.kind, e.data["jurisdiction"]) for e in got] == [
        ("call_offered", "yulong"),
        ("call_answered", "yulong"),
    ]
    store.get_call.assert_not_called()
