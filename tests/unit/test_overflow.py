"""Overflow to remote seats: the pure hysteresis (``overflow.machine``), the queue sample read
from AMI's QueueSummary, the service's poll (a fake reader; failures never raise), the settings'
checks, and the interpreter's AMI form of the global switch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hotline_bridge.config.settings import OverflowSettings
from hotline_bridge.core.commands import Command, CommandResult, SetGlobal
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.overflow import machine as m
from hotline_bridge.overflow.machine import Overflow, Policy, PollFailed, Sample
from hotline_bridge.overflow.service import BadSample, OverflowService, sample_of
from hotline_bridge.runtime.interpreter import to_action

POLICY = Policy(
    start_waiting=5,
    start_oldest_wait_s=60,
    stop_waiting=1,
    stop_oldest_wait_s=20,
    stop_hold_s=30,
    lease_s=15,
    dial="PJSIP/12345@remote-seats",
    ring_timeout_s=20,
)
T0 = 1_800_000_000.0


def sample(waiting: int, oldest: float = 0.0, available: int = 0, at: float = T0) -> Sample:
    return Sample(waiting=waiting, oldest_wait_s=oldest, available=available, at=at)


def flag(commands: Sequence[Command]) -> str | None:
    """The HOTLINE_OVERFLOW value the commands set, if any."""
    values = [c.value for c in commands if isinstance(c, SetGlobal) and c.name == m.FLAG]
    return values[-1] if values else None


def until(commands: Sequence[Command]) -> int | None:
    values = [int(c.value) for c in commands if isinstance(c, SetGlobal) and c.name == m.UNTIL]
    return values[-1] if values else None


def run(samples: Sequence[m.Event], state: Overflow | None = None) -> list[Overflow]:
    s = state or Overflow()
    out = []
    for ev in samples:
        s, _ = m.step(s, ev, POLICY)
        out.append(s)
    return out


# -- starting ------------------------------------------------------------------------------------


def test_the_first_calm_sample_clears_what_a_previous_run_left_then_stays_quiet() -> None:
    s, cmds = m.step(Overflow(), sample(0), POLICY)
    assert not s.active and s.published
    assert flag(cmds) == "off" and until(cmds) == 0
    s2, cmds2 = m.step(s, sample(0, at=T0 + 2), POLICY)
    assert not s2.active and cmds2 == []


def test_waiting_callers_with_no_agent_free_start_overflow_with_a_lease() -> None:
    s, cmds = m.step(Overflow(), sample(5, oldest=3, available=0), POLICY)
    assert s.active and "5 waiting" in s.reason
    assert flag(cmds) == "on"
    assert until(cmds) == int(T0 + POLICY.lease_s)
    dial = [c for c in cmds if isinstance(c, SetGlobal) and c.name == m.DIAL]
    assert dial and dial[0].value == POLICY.dial
    # The lease and the dial string go out before the switch itself.
    names = [c.name for c in cmds if isinstance(c, SetGlobal)]
    assert names.index(m.FLAG) == len(names) - 1


def test_waiting_callers_while_an_agent_is_free_are_not_short_of_seats() -> None:
    s, cmds = m.step(Overflow(), sample(7, oldest=5, available=1), POLICY)
    assert not s.active and flag(cmds) == "off"


def test_the_oldest_wait_alone_starts_overflow_even_with_agents_logged_in() -> None:
    s, _ = m.step(Overflow(), sample(1, oldest=60, available=2), POLICY)
    assert s.active and "60 s" in s.reason


def test_below_both_start_thresholds_nothing_starts() -> None:
    states = run([sample(4, oldest=59, at=T0 + i) for i in range(20)])
    assert not any(s.active for s in states)


# -- staying on, and stopping only after a calm hold ---------------------------------------------


def on() -> Overflow:
    s, _ = m.step(Overflow(), sample(6, at=T0), POLICY)
    assert s.active
    return s


def test_every_sample_while_on_renews_the_lease() -> None:
    s = on()
    for i in range(1, 5):
        s, cmds = m.step(s, sample(3, at=T0 + 2 * i), POLICY)
        assert s.active and flag(cmds) == "on"
        assert until(cmds) == int(T0 + 2 * i + POLICY.lease_s)


def test_between_the_thresholds_overflow_stays_on() -> None:
    """Waiting 2..4 is neither short (start 5) nor calm (stop 1): no change either way."""
    states = run([sample(3, oldest=30, at=T0 + i) for i in range(1, 200)], on())
    assert all(s.active for s in states)


def test_it_stops_only_after_the_queue_was_calm_for_the_whole_hold() -> None:
    s = on()
    s, cmds = m.step(s, sample(1, oldest=10, at=T0 + 10), POLICY)
    assert s.active and s.calm_since == T0 + 10 and flag(cmds) == "on"
    s, cmds = m.step(s, sample(0, at=T0 + 39), POLICY)
    assert s.active and flag(cmds) == "on"
    s, cmds = m.step(s, sample(0, at=T0 + 40), POLICY)
    assert not s.active and "calm" in s.reason
    assert flag(cmds) == "off" and until(cmds) == 0


def test_one_busy_sample_restarts_the_calm_hold() -> None:
    s = on()
    s, _ = m.step(s, sample(0, at=T0 + 10), POLICY)
    s, _ = m.step(s, sample(2, at=T0 + 35), POLICY)  # not calm: above stop_waiting
    assert s.active and s.calm_since is None
    s, _ = m.step(s, sample(0, at=T0 + 36), POLICY)
    s, _ = m.step(s, sample(0, at=T0 + 60), POLICY)
    assert s.active  # 24 s of calm since the break, hold is 30
    s, _ = m.step(s, sample(0, at=T0 + 66), POLICY)
    assert not s.active


def test_a_long_oldest_wait_is_not_calm_even_with_few_callers() -> None:
    s = on()
    states = run([sample(1, oldest=25, at=T0 + i) for i in range(1, 100)], s)
    assert all(x.active for x in states)


def test_a_queue_flapping_around_the_start_threshold_does_not_flap_the_switch() -> None:
    """Waiting alternates 5, 0, 5, 0... every second: on at the first 5, and never off (the calm
    stretches last 1 s, the hold is 30 s); exactly one transition."""
    events = [sample(5 if i % 2 == 0 else 0, at=T0 + i) for i in range(300)]
    states = run(events)
    transitions = sum(1 for a, b in zip([Overflow(), *states], states, strict=False)
                      if a.active != b.active)  # fmt: skip
    assert transitions == 1 and states[-1].active


def test_once_off_again_a_short_queue_switches_it_on_again() -> None:
    s = on()
    s, _ = m.step(s, sample(0, at=T0 + 1), POLICY)
    s, _ = m.step(s, sample(0, at=T0 + 31), POLICY)
    assert not s.active
    s, cmds = m.step(s, sample(5, at=T0 + 32), POLICY)
    assert s.active and flag(cmds) == "on"


# -- stale samples and failed polls ----------------------------------------------------------------


def test_a_sample_older_than_the_last_one_is_ignored() -> None:
    s = on()
    s, _ = m.step(s, sample(0, at=T0 + 10), POLICY)
    s2, cmds = m.step(s, sample(9, at=T0 + 5), POLICY)  # a late reply
    assert s2 == s and cmds == []
    s3, cmds = m.step(s, sample(0, at=T0 + 10), POLICY)  # the same one again
    assert s3 == s and cmds == []


def test_a_failed_poll_changes_nothing_and_renews_nothing() -> None:
    s = on()
    s2, cmds = m.step(s, PollFailed("AMI not ready"), POLICY)
    assert s2 == s and cmds == []
    off, _ = m.step(Overflow(), sample(0), POLICY)
    assert m.step(off, PollFailed("timeout"), POLICY) == (off, [])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(
                Sample,
                waiting=st.integers(0, 12),
                oldest_wait_s=st.floats(0, 200),
                available=st.integers(0, 3),
                at=st.floats(T0, T0 + 10_000),
            ),
            st.builds(PollFailed, reason=st.just("x")),
        ),
        max_size=60,
    )
)
def test_any_sequence_keeps_the_rules(events: list[m.Event]) -> None:
    """Whatever arrives, in any order: on only after a short sample; off only after a calm hold;
    every accepted sample while on renews the lease from its own time; nothing moves backwards."""
    s = Overflow()
    for ev in events:
        new, cmds = m.step(s, ev, POLICY)
        if isinstance(ev, PollFailed) or (
            s.last_sample_at is not None and isinstance(ev, Sample) and ev.at <= s.last_sample_at
        ):
            assert (new, cmds) == (s, [])
        else:
            assert isinstance(ev, Sample)
            if new.active and not s.active:
                assert m.short_of_seats(POLICY, ev) is not None
            if s.active and not new.active:
                assert s.calm_since is not None and ev.at - s.calm_since >= POLICY.stop_hold_s
                assert m.calm(POLICY, ev)
            if new.active:
                assert flag(cmds) == "on" and until(cmds) == int(ev.at + POLICY.lease_s)
            elif s.active or not s.published:
                assert flag(cmds) == "off"
            else:
                assert cmds == []
        s = new


# -- the sample from QueueSummary ----------------------------------------------------------------


def summary(**fields: str) -> dict[str, str]:
    base = {"Event": "QueueSummary", "Queue": "hotline-12345", "LoggedIn": "2", "Available": "0",
            "Callers": "3", "HoldTime": "4", "TalkTime": "9", "LongestHoldTime": "17"}  # fmt: skip
    return base | fields


def test_the_sample_is_read_from_the_queues_summary_item() -> None:
    items = [summary(Queue="other", Callers="99"), summary()]
    assert sample_of(items, "hotline-12345", T0) == Sample(3, 17.0, 0, T0)


@pytest.mark.parametrize(
    "items",
    [[], [summary(Queue="other")], [summary(Callers="")], [summary(LongestHoldTime="soon")]],
)
def test_an_answer_that_does_not_describe_the_queue_is_a_bad_sample(
    items: list[dict[str, str]],
) -> None:
    with pytest.raises(BadSample):
        sample_of(items, "hotline-12345", T0)


# -- the service's poll ----------------------------------------------------------------------------


def overflow_settings(**kw: object) -> OverflowSettings:
    base: dict[str, object] = {
        "enabled": True,
        "dial": "PJSIP/12345@remote-seats",
        "start_waiting": 2,
        "stop_waiting": 0,
        "start_oldest_wait_s": 60,
        "stop_oldest_wait_s": 5,
        "stop_hold_s": 0,
        "poll_interval_s": 0.5,
        "lease_s": 3,
    }
    return OverflowSettings.model_validate(base | kw)


class FakeQueue:
    def __init__(self) -> None:
        self.answers: list[object] = []  # a list of items, or an exception to raise

    async def read(self, queue: str) -> Sequence[PbxEvent]:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, list)
        return answer


def service(q: FakeQueue, clock: list[float]) -> tuple[OverflowService, list[Command]]:
    sent: list[Command] = []
    svc = OverflowService(
        overflow_settings(), "hotline-12345", q.read, sent.extend, clock=lambda: clock[0]
    )
    return svc, sent


def test_the_service_switches_on_renews_and_switches_off_and_reports_it() -> None:
    q, clock = FakeQueue(), [T0]
    svc, sent = service(q, clock)
    transitions: list[bool] = []
    svc.on_transition = transitions.append
    q.answers = [
        [summary(Callers="2", Available="0")],
        [summary(Callers="1", Available="0", LongestHoldTime="8")],
        [summary(Callers="0", LongestHoldTime="0")],
    ]
    asyncio.run(svc.poll())
    assert svc.state.active and flag(sent) == "on" and until(sent) == int(T0 + 3)
    sent.clear()
    clock[0] += 1
    asyncio.run(svc.poll())  # 1 waiting for 8 s: not calm (stop 0 / 5 s), stays on, renewed
    assert svc.state.active and until(sent) == int(T0 + 4)
    clock[0] += 1
    asyncio.run(svc.poll())
    assert not svc.state.active and flag(sent) == "off"
    assert transitions == [True, False]
    assert svc.status()["last_sample"]["waiting"] == 0


def test_a_failed_poll_is_counted_changes_nothing_and_never_raises() -> None:
    q, clock = FakeQueue(), [T0]
    svc, sent = service(q, clock)
    polls: list[bool] = []
    svc.on_poll = polls.append
    q.answers = [[summary(Callers="5")], TimeoutError(), ConnectionError("gone"), []]
    asyncio.run(svc.poll())
    sent.clear()
    for _ in range(3):
        clock[0] += 1
        asyncio.run(svc.poll())
    assert svc.state.active and sent == []  # no renewal: the PBX's lease runs out by itself
    assert polls == [True, False, False, False] and svc.polls_failed == 3


def test_the_dialplans_user_events_count_overflowed_and_fallen_back_calls() -> None:
    svc, _ = service(FakeQueue(), [T0])
    calls: list[str] = []
    svc.on_call = calls.append
    for ev in (
        {"Event": "UserEvent", "UserEvent": "OverflowDialing"},
        {"Event": "UserEvent", "UserEvent": "OverflowFallback", "DialStatus": "NOANSWER"},
        {"Event": "UserEvent", "UserEvent": "HandoffDialing"},
        {"Event": "Hangup"},
    ):
        svc.on_event(ev)
    assert calls == ["overflowed", "fell_back"]
    svc.on_result(CommandResult(SetGlobal("overflow", m.FLAG, "on"), False, "refused"))


# -- settings and the AMI form ---------------------------------------------------------------------


def test_overflow_is_off_by_default_and_needs_no_settings_then() -> None:
    assert OverflowSettings().enabled is False


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"stop_waiting": 2}, "stop_waiting must be below start_waiting"),
        ({"stop_oldest_wait_s": 60}, "stop_oldest_wait_s must be below"),
        ({"lease_s": 0.9 + 0.1, "poll_interval_s": 0.6}, "lease_s must be at least"),
        ({"dial": None}, "dial is required"),
        ({"dial": "PJSIP/12345@remote,tT"}, "dial"),
        ({"dial": "SIP/remote"}, "dial"),
        ({"queue": "a queue"}, "queue"),
    ],
)
def test_inconsistent_overflow_settings_are_refused_naming_the_field(
    fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        overflow_settings(**fields)


def test_the_switch_is_a_setvar_without_a_channel() -> None:
    assert to_action(SetGlobal("overflow", "HOTLINE_OVERFLOW", "on")) == (
        "Setvar",
        {"Variable": "HOTLINE_OVERFLOW", "Value": "on"},
    )
