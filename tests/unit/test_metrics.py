"""The metrics hooks: what is counted when, what is observed, and that labels stay impersonal.

Everything is read back from the registry (or a real text scrape of it), so these tests see what
Prometheus would see, not the internals of ``Metrics``.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.plans import CARRY_PLAN, CITIZEN, THREE_WAY_PLAN

from hotline_bridge.conferences import machine as cm
from hotline_bridge.conferences.machine import Role
from hotline_bridge.core.commands import CommandResult, Redirect
from hotline_bridge.core.outcomes import Outcome
from hotline_bridge.runtime.metrics import OTHER, GaugeCollector, Metrics, OutboxStats, PushOutcome
from hotline_bridge.transfers import machine as tm

T0 = 1_700_000_000.0

CARRY = CARRY_PLAN
THREE_WAY = THREE_WAY_PLAN
REDIRECT_OK = CommandResult(
    Redirect(
        "c-1",
        THREE_WAY.call.citizen_channel,
        "hotline-conference",
        "citizen",
        THREE_WAY.call.agent_channel,
        "agent",
    ),
    True,
)


def transfer_steps(m: Metrics, plan: tm.CarryPlan, *events: tuple[float, tm.Event]) -> tm.Transfer:
    """Drive the real machine and report every step to the hook, as TransferService does."""
    t, _ = tm.start(plan, now=T0)
    for at, event in events:
        new, _ = tm.step(t, event, now=at)
        m.transfer_changed(t, new)
        t = new
    return t


def conference_steps(
    m: Metrics, plan: cm.ThreeWayPlan, *events: tuple[float, cm.Event]
) -> cm.Conference:
    c, _ = cm.start(plan, now=T0)
    for at, event in events:
        new, _ = cm.step(c, event, now=at)
        m.conference_changed(c, new)
        c = new
    return c


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def transfers(m: Metrics, outcome: str, state: str, target: str = "110") -> float:
    return value(m, "hotline_transfers_total", target=target, outcome=outcome, state=state)


def carry_answers(m: Metrics) -> float:
    return value(m, "hotline_handoff_answer_seconds_count", kind="carry_transfer", target="110")


def scrape(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def label_values(text: str) -> set[str]:
    return {
        v
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for v in sample.labels.values()
    }


# -- carry-number transfers --------------------------------------------------------------------


def test_a_transfer_is_counted_once_on_its_transition_to_done() -> None:
    m = Metrics()
    t = transfer_steps(
        m,
        CARRY,
        (T0 + 0.2, tm.PartnerDialing()),
        (T0 + 1.0, tm.PartnerRinging()),
    )
    assert not t.done
    assert transfers(m, "answered", "answered") == 0

    done, _ = tm.step(t, tm.PartnerResult("ANSWER"), now=T0 + 3.5)
    m.transfer_changed(t, done)
    # The service reports later (ignored) events too: old is already done, nothing more counts.
    m.transfer_changed(done, done)
    late, _ = tm.step(done, tm.CitizenHungUp(), now=T0 + 60)
    m.transfer_changed(done, late)

    assert transfers(m, "answered", "answered") == 1
    assert carry_answers(m) == 1


def test_hotkey_to_answer_latency_comes_from_the_timeline() -> None:
    m = Metrics()
    transfer_steps(
        m,
        CARRY,
        (T0 + 0.2, tm.PartnerDialing()),
        (T0 + 1.0, tm.PartnerRinging()),
        (T0 + 3.5, tm.PartnerResult("ANSWER")),
    )
    labels = {"kind": "carry_transfer", "target": "110"}
    assert value(m, "hotline_handoff_answer_seconds_sum", **labels) == pytest.approx(3.5)
    assert value(m, "hotline_handoff_answer_seconds_bucket", le="3.0", **labels) == 0
    assert value(m, "hotline_handoff_answer_seconds_bucket", le="5.0", **labels) == 1


def test_a_returned_transfer_counts_its_outcome_and_no_latency() -> None:
    m = Metrics()
    t = transfer_steps(
        m,
        CARRY,
        (T0 + 0.2, tm.PartnerDialing()),
        (T0 + 20, tm.PartnerResult("NOANSWER")),
        (T0 + 25, tm.CitizenReturned("1001")),
    )
    assert t.state is tm.TransferState.RETURNED
    assert transfers(m, "no_answer", "returned") == 1
    assert carry_answers(m) == 0


def test_a_refused_transfer_counts_as_failed() -> None:
    m = Metrics()
    t, cmds = tm.start(CARRY, now=T0)
    refused, _ = tm.step(t, CommandResult(cmds[-1], False, "No such channel"), now=T0 + 0.01)
    m.transfer_changed(t, refused)
    assert transfers(m, "failed", "failed") == 1


# -- three-way calls ---------------------------------------------------------------------------


def test_three_way_latency_is_observed_when_the_partner_answers_and_counted_when_it_ends() -> None:
    m = Metrics()
    c = conference_steps(
        m,
        THREE_WAY,
        (T0 + 0.1, REDIRECT_OK),
        (T0 + 0.3, cm.MemberJoined(Role.CITIZEN)),
        (T0 + 0.4, cm.MemberJoined(Role.AGENT)),
        (T0 + 6.0, cm.MemberJoined(Role.PARTNER, "PJSIP/partner-110-00000003")),
        (T0 + 6.5, cm.MemberJoined(Role.PARTNER, "PJSIP/partner-110-00000003")),  # duplicate
    )
    assert c.state is cm.ConferenceState.ACTIVE
    labels = {"kind": "three_way", "target": "110"}
    assert value(m, "hotline_handoff_answer_seconds_count", **labels) == 1
    assert value(m, "hotline_handoff_answer_seconds_sum", **labels) == pytest.approx(6.0)
    assert value(m, "hotline_three_way_calls_total", target="110", outcome="answered") == 0

    ended, _ = cm.step(c, cm.MemberLeft(Role.CITIZEN), now=T0 + 120)
    m.conference_changed(c, ended)
    m.conference_changed(ended, ended)
    assert ended.done
    assert value(m, "hotline_three_way_calls_total", target="110", outcome="answered") == 1
    assert value(m, "hotline_handoff_answer_seconds_count", **labels) == 1


def test_a_partner_joining_after_a_cancel_is_not_an_answer() -> None:
    m = Metrics()
    c = conference_steps(
        m,
        THREE_WAY,
        (T0 + 0.1, REDIRECT_OK),
        (T0 + 0.3, cm.MemberJoined(Role.CITIZEN)),
        (T0 + 0.4, cm.MemberJoined(Role.AGENT)),
        (T0 + 2.0, cm.CancelRequested()),
        (T0 + 2.1, cm.MemberJoined(Role.PARTNER, "PJSIP/partner-110-00000003")),
    )
    assert c.outcome is Outcome.CANCELLED
    assert value(m, "hotline_handoff_answer_seconds_count", kind="three_way", target="110") == 0


def test_a_three_way_call_whose_partner_is_busy_counts_busy() -> None:
    m = Metrics()
    c = conference_steps(
        m,
        THREE_WAY,
        (T0 + 0.1, REDIRECT_OK),
        (T0 + 0.3, cm.MemberJoined(Role.CITIZEN)),
        (T0 + 0.4, cm.MemberJoined(Role.AGENT)),
        (T0 + 3.0, cm.PartnerOriginateFailed("5")),
        (T0 + 50, cm.MemberLeft(Role.CITIZEN)),
    )
    assert c.done
    assert value(m, "hotline_three_way_calls_total", target="110", outcome="busy") == 1
    assert value(m, "hotline_handoff_answer_seconds_count", kind="three_way", target="110") == 0


# -- citizen calls from the PBX's queue events -------------------------------------------------


def queue_event(name: str, queue: str = "hotline-12345", **kw: str) -> dict[str, str]:
    # The channel snapshot fields Asterisk sends with every queue event, citizen number included.
    return {
        "Event": name,
        "Channel": "PJSIP/carrier-00000001",
        "CallerIDNum": CITIZEN,
        "ConnectedLineNum": CITIZEN,
        "Uniqueid": "1700000000.1",
        "Linkedid": "1700000000.1",
        "Queue": queue,
        **kw,
    }


def test_queue_events_count_offered_answered_and_abandoned() -> None:
    m = Metrics()
    for _ in range(3):
        m.on_pbx_event(queue_event("QueueCallerJoin", Position="1", Count="1"))
    m.on_pbx_event(
        queue_event(
            "AgentConnect",
            DestChannel="PJSIP/agent1001-00000002",
            DestCallerIDNum="1001",
            MemberName="agent1001",
            Interface="PJSIP/agent1001",
            HoldTime="4",
            RingTime="2",
        )
    )
    m.on_pbx_event(queue_event("AgentConnect"))
    m.on_pbx_event(queue_event("QueueCallerAbandon", Position="1", OriginalPosition="1"))
    # Neither the caller leaving the queue nor unrelated events count again.
    m.on_pbx_event(queue_event("QueueCallerLeave"))
    m.on_pbx_event(queue_event("Hangup"))

    def calls(result: str) -> float:
        return value(m, "hotline_citizen_calls_total", queue="hotline-12345", result=result)

    assert (calls("offered"), calls("answered"), calls("abandoned")) == (3, 2, 1)


def test_configured_queues_start_at_zero_and_a_missing_queue_field_is_unknown() -> None:
    m = Metrics(queues=["hotline-12345"])
    text = scrape(m)
    for result in ("offered", "answered", "abandoned"):
        assert f'hotline_citizen_calls_total{{queue="hotline-12345",result="{result}"}} 0.0' in text
    m.on_pbx_event({"Event": "QueueCallerJoin"})
    assert value(m, "hotline_citizen_calls_total", queue="unknown", result="offered") == 1


# -- label values stay bounded and impersonal ---------------------------------------------------


def test_no_citizen_number_or_call_id_ever_becomes_a_label_value() -> None:
    m = Metrics()
    # Real events, whose other fields hold citizen numbers...
    m.on_pbx_event(queue_event("QueueCallerJoin"))
    m.on_pbx_event(queue_event("AgentConnect"))
    # ...and misconfigured or hostile sources putting numbers and ids where names belong.
    for bad in (CITIZEN, "13912345678", "1700000000.1", "08881234567", "q13800138000", "a b"):
        m.on_pbx_event(queue_event("QueueCallerJoin", queue=bad))
        m.observe_ami_action(bad, 0.001)
    plan = replace(CARRY, target=CITIZEN, transfer_id="t-2")
    transfer_steps(m, plan, (T0 + 3, tm.PartnerResult("ANSWER")))
    transfer_steps(m, CARRY, (T0 + 3, tm.PartnerResult("BUSY")))
    conference_steps(
        m,
        THREE_WAY,
        (T0 + 0.1, REDIRECT_OK),
        (T0 + 0.3, cm.MemberJoined(Role.CITIZEN)),
        (T0 + 0.4, cm.MemberJoined(Role.AGENT)),
        (T0 + 6.0, cm.MemberJoined(Role.PARTNER, "PJSIP/partner-110-00000003")),
        (T0 + 60, cm.MemberLeft(Role.CITIZEN)),
    )
    text = scrape(m)
    values = label_values(text)
    assert values, "the scrape has labelled samples"
    for v in values:
        assert not (v.isdigit() and len(v) > 6), f"digits-only label value {v!r}"
        assert not re.search(r"[0-9]{7,}", v), f"label value {v!r} holds a number or an id"
    assert CITIZEN not in text and "1700000000.1" not in text
    assert value(m, "hotline_citizen_calls_total", queue=OTHER, result="offered") == 6
    assert transfers(m, "answered", "answered", target=OTHER) == 1
    # Short, configured names pass untouched.
    assert {"110", "hotline-12345", "three_way", "carry_transfer"} <= values


def test_a_flood_of_distinct_queue_names_costs_one_extra_series() -> None:
    m = Metrics()
    for i in range(200):
        m.on_pbx_event(queue_event("QueueCallerJoin", queue=f"queue-{i}"))
    queues = {
        s.labels["queue"]
        for f in text_string_to_metric_families(scrape(m))
        for s in f.samples
        if s.name == "hotline_citizen_calls_total"
    }
    assert len(queues) <= 17 and OTHER in queues


# -- handoff pushes and the outbox (fed by the partner link) ------------------------------------


def test_push_outcomes_start_at_zero_and_count_each_attempt() -> None:
    m = Metrics()
    for outcome in PushOutcome:
        assert (
            m.registry.get_sample_value("hotline_handoff_pushes_total", {"outcome": outcome.value})
            == 0.0
        )
    m.handoff_pushed(PushOutcome.FAILED)
    m.handoff_pushed(PushOutcome.FAILED)
    m.handoff_pushed(PushOutcome.DELIVERED)
    assert value(m, "hotline_handoff_pushes_total", outcome="failed") == 2
    assert value(m, "hotline_handoff_pushes_total", outcome="delivered") == 1
    assert value(m, "hotline_handoff_pushes_total", outcome="rejected") == 0


def test_record_writes_are_observed_by_kind_from_zero() -> None:
    m = Metrics()
    for kind in ("carry_transfer", "three_way"):
        assert value(m, "hotline_handoff_record_write_seconds_count", kind=kind) == 0
    m.handoff_recorded("carry_transfer", 0.0012)
    m.handoff_recorded("carry_transfer", 0.02)
    m.handoff_recorded("three_way", 0.003)
    m.handoff_recorded("nonsense", 1.0)  # not a kind of handoff on a live call: no series
    assert value(m, "hotline_handoff_record_write_seconds_count", kind="carry_transfer") == 2
    assert value(m, "hotline_handoff_record_write_seconds_sum", kind="carry_transfer") == (
        pytest.approx(0.0212)
    )
    assert (
        value(m, "hotline_handoff_record_write_seconds_bucket", kind="carry_transfer", le="0.0025")
        == 1
    )
    assert value(m, "hotline_handoff_record_write_seconds_count", kind="three_way") == 1
    assert (
        m.registry.get_sample_value(
            "hotline_handoff_record_write_seconds_count", {"kind": "nonsense"}
        )
        is None
    )


def test_outbox_gauges_are_read_at_scrape_time() -> None:
    m = Metrics()
    assert "hotline_handoff_outbox_depth" not in scrape(m)  # not watched: not exposed
    depth = [3]
    m.watch_outbox(lambda: OutboxStats(depth=depth[0], oldest_age_s=42.5))
    assert value(m, "hotline_handoff_outbox_depth") == 3
    depth[0] = 7
    assert value(m, "hotline_handoff_outbox_depth") == 7
    assert value(m, "hotline_handoff_outbox_oldest_age_seconds") == 42.5
    with pytest.raises(RuntimeError):
        m.watch_outbox(lambda: OutboxStats(0, 0.0))


def test_a_failing_outbox_read_drops_its_series_but_not_the_scrape() -> None:
    m = Metrics()

    def broken() -> OutboxStats:
        raise OSError("database is locked")

    m.watch_outbox(broken)
    m.handoff_pushed(PushOutcome.DELIVERED)
    text = scrape(m)
    assert "hotline_handoff_pushes_total" in text
    assert "hotline_handoff_outbox_depth" not in text


# -- robustness and naming ----------------------------------------------------------------------


def test_a_metrics_bug_never_reaches_call_handling() -> None:
    m = Metrics()
    m.transfer_changed(None, None)  # type: ignore[arg-type]
    m.conference_changed(object(), object())  # type: ignore[arg-type]
    m.handoff_pushed("bogus")  # type: ignore[arg-type]
    m.on_pbx_event(None)  # type: ignore[arg-type]


def test_exposed_names_follow_prometheus_conventions() -> None:
    m = Metrics()
    m.add_collector(
        GaugeCollector(
            lambda: {
                "ami_ready": 1.0,
                "ami_reconnects": 2,
                "ami_events": 1234,
                "ami_timeouts": 0,
                "live_calls": 3,
                "live_transfers": 1,
                "live_conferences": 0,
            }
        )
    )
    m.on_pbx_event(queue_event("QueueCallerJoin"))
    m.observe_ami_action("Setvar", 0.0004)
    transfer_steps(m, CARRY, (T0 + 3, tm.PartnerResult("ANSWER")))
    families = {f.name: f for f in text_string_to_metric_families(scrape(m))}
    for f in families.values():
        names = {s.name for s in f.samples}
        assert not any(n.endswith("_total_total") for n in names), names
        assert not any(n.endswith("_created") for n in names), names
        if f.type == "counter":
            assert names <= {f"{f.name}_total"}, names
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f.name
    assert value(m, "hotline_ami_connected") == 1
    assert value(m, "hotline_ami_reconnects_total") == 2
    assert value(m, "hotline_ami_events_total") == 1234
    assert value(m, "hotline_ami_action_timeouts_total") == 0
    assert value(m, "hotline_live_calls") == 3
    assert value(m, "hotline_ami_action_seconds_count", action="Setvar") == 1
    assert "process_start_time_seconds" in families
