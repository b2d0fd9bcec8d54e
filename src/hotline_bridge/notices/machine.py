"""A notice's plan and progress, pure.

:func:`plan` turns the agent's choice of targets into recipients: a linked target gets the
``notice`` record pushed to its site (done when its receipt comes back, or failed when the link
gives up), a plain line gets a reminder call to its desk for the notice's jurisdiction (the same
retried call as the duty-line reminder; done when delivered or unanswered). :func:`step` folds the
recipients' results into the notice; the notice is over when every recipient is settled. Events
for a recipient that is not in the notice, or that is already settled, change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from hotline_bridge.directory.model import (
    DialPlanEntry,
    Directory,
    Purpose,
    Refusal,
    TargetKind,
    resolve,
)

MAX_RECIPIENTS = 20


class Delivery(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"  # receipt back (linked) or the call answered and the prompt played
    FAILED = "failed"  # the link gave up (linked) or every attempt was unanswered (line)


class NoticeState(StrEnum):
    SENDING = "sending"
    DELIVERED = "delivered"  # every recipient has it
    PARTIAL = "partial"  # some recipients could not be reached
    FAILED = "failed"  # none could


@dataclass(frozen=True, slots=True)
class Recipient:
    target: str
    kind: TargetKind
    entry: DialPlanEntry
    delivery: Delivery = Delivery.PENDING
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: str
    jurisdiction: str
    recipients: tuple[Recipient, ...]
    state: NoticeState = NoticeState.SENDING

    @property
    def id(self) -> str:
        return self.notice_id

    @property
    def done(self) -> bool:
        return self.state is not NoticeState.SENDING

    def pushes(self) -> tuple[Recipient, ...]:
        """The linked recipients: the outbox pushes the notice record to their sites."""
        return tuple(r for r in self.recipients if r.kind is TargetKind.LINKED)

    def calls(self) -> tuple[Recipient, ...]:
        """The plain lines: each gets a reminder call to ``entry.dial``."""
        return tuple(r for r in self.recipients if r.kind is TargetKind.LINE)


@dataclass(frozen=True, slots=True)
class Settled:
    """A recipient's result: a receipt or a delivered call (ok), or a give-up (not ok)."""

    target: str
    ok: bool
    detail: str = ""


def plan(
    directory: Directory,
    notice_id: str,
    targets: Sequence[str],
    jurisdiction: str,
    override: str | None = None,
) -> Notice | Refusal:
    """The notice to send, or why it cannot be sent (a 4xx with the reason)."""
    if not targets:
        return Refusal("no_recipients", "a notice needs at least one target")
    if len(targets) > MAX_RECIPIENTS:
        return Refusal("too_many_recipients", f"at most {MAX_RECIPIENTS} targets per notice")
    if len(set(targets)) != len(targets):
        return Refusal("duplicate_target", "a target is named more than once")
    recipients: list[Recipient] = []
    for target in targets:
        entry = resolve(directory, target, jurisdiction, override, purpose=Purpose.NOTICE)
        if isinstance(entry, Refusal):
            return entry
        recipients.append(Recipient(target=target, kind=entry.kind, entry=entry))
    return Notice(notice_id=notice_id, jurisdiction=jurisdiction, recipients=tuple(recipients))


def step(notice: Notice, event: Settled) -> Notice:
    if notice.done:
        return notice
    changed = False
    out: list[Recipient] = []
    for r in notice.recipients:
        if r.target == event.target and r.delivery is Delivery.PENDING:
            delivery = Delivery.DELIVERED if event.ok else Delivery.FAILED
            r = replace(r, delivery=delivery, detail=event.detail)
            changed = True
        out.append(r)
    if not changed:
        return notice
    return replace(notice, recipients=tuple(out), state=_state_of(out))


def _state_of(recipients: Sequence[Recipient]) -> NoticeState:
    deliveries = [r.delivery for r in recipients]
    if Delivery.PENDING in deliveries:
        return NoticeState.SENDING
    if all(d is Delivery.DELIVERED for d in deliveries):
        return NoticeState.DELIVERED
    if any(d is Delivery.DELIVERED for d in deliveries):
        return NoticeState.PARTIAL
    return NoticeState.FAILED
