"""The notice (互相通报) plan and progress: who is notified how, and when the notice is over."""

from __future__ import annotations

from hotline_bridge.directory.loader import load_directory
from hotline_bridge.directory.model import Refusal, TargetKind
from hotline_bridge.notices.machine import (
    MAX_RECIPIENTS,
    Delivery,
    Notice,
    NoticeState,
    Settled,
    plan,
    step,
)

D = load_directory()


def _plan(*targets: str, jurisdiction: str = "yulong") -> Notice:
    n = plan(D, "n-1", list(targets), jurisdiction)
    assert isinstance(n, Notice), n
    return n


def test_linked_targets_are_pushed_plain_lines_are_called_at_the_jurisdictions_desk() -> None:
    n = _plan("110", "119", "water")
    assert [r.target for r in n.pushes()] == ["110"]
    assert [r.target for r in n.calls()] == ["119", "water"]
    assert all(r.kind is TargetKind.LINE for r in n.calls())
    assert [r.entry.dial for r in n.calls()] == ["PJSIP/1192@desk-119", "PJSIP/966062@desk-water"]
    assert n.state is NoticeState.SENDING and not n.done


def test_plan_refusals() -> None:
    cases = {
        (): "no_recipients",
        ("119", "119"): "duplicate_target",
        ("119", "fire-brigade"): "unknown_target",
        tuple(f"t{i}" for i in range(MAX_RECIPIENTS + 1)): "too_many_recipients",
    }
    for targets, code in cases.items():
        r = plan(D, "n-1", list(targets), "gucheng")
        assert isinstance(r, Refusal) and r.code == code, (targets, r)
    bad_override = plan(D, "n-1", ["119"], "gucheng", override="lhasa")
    assert isinstance(bad_override, Refusal) and bad_override.code == "unknown_jurisdiction"


def test_delivered_when_every_recipient_has_it() -> None:
    n = _plan("110", "119")
    n = step(n, Settled("110", ok=True, detail="receipt"))
    assert n.state is NoticeState.SENDING
    n = step(n, Settled("119", ok=True))
    assert n.state is NoticeState.DELIVERED and n.done
    assert [r.delivery for r in n.recipients] == [Delivery.DELIVERED, Delivery.DELIVERED]


def test_partial_and_failed() -> None:
    n = step(step(_plan("110", "119"), Settled("110", ok=True)), Settled("119", ok=False))
    assert n.state is NoticeState.PARTIAL
    n = step(step(_plan("120", "gas"), Settled("gas", ok=False)), Settled("120", ok=False))
    assert n.state is NoticeState.FAILED


def test_stray_duplicate_and_late_events_change_nothing() -> None:
    n = _plan("110", "119")
    assert step(n, Settled("122", ok=True)) is n  # not a recipient
    once = step(n, Settled("110", ok=False, detail="gave up"))
    assert step(once, Settled("110", ok=True)) is once  # already settled: no rewriting the past
    over = step(once, Settled("119", ok=True))
    assert over.done and step(over, Settled("119", ok=False)) is over
