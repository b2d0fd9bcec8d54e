"""Notices of a major emergency (互相通报): one record, pushed or rung to every recipient.

``notify`` plans the recipients from the directory (``notices.machine.plan``: a 4xx naming the
reason if any target cannot take a notice), writes ONE record of kind ``notice`` (queued for the
partner link when a linked platform is among the recipients) and rings each plain line with the
reminder call (``core.reminder``: a short prompt, retried if unanswered). What became of each
recipient is written into the record as it happens (``notice_delivered`` / ``notice_failed``
events naming the target), so a notice's state is always the record's: :meth:`view` folds those
events with ``notices.machine.step`` and needs nothing a restart could forget. The reminder calls
in flight are kept in the store (``Keeper``) and resume after a restart like the duty line's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from pydantic import ConfigDict, Field, ValidationError

from hotline_bridge.catalog import Catalog, Platform
from hotline_bridge.config.settings import NoticeSettings
from hotline_bridge.core import reminder
from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.core.errors import Conflict, Forbidden, Invalid, NotFound
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.reminder import Reminder, ReminderPlan
from hotline_bridge.directory.model import Directory, Refusal, TargetKind
from hotline_bridge.handoffs import views
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import HandoffInput, HandoffInputError, new_handoff
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.handoffs.model import (
    Actor,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
)
from hotline_bridge.handoffs.store import HandoffStore, StoreError
from hotline_bridge.notices import machine
from hotline_bridge.notices.machine import Notice, Settled

log = structlog.get_logger(__name__)

DELIVERED, FAILED = "notice_delivered", "notice_failed"
_TargetId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
KEEP_FINISHED_S = 3600.0


class NoticeInput(HandoffInput):
    """A notice: who is told (directory target ids), and the matter (the handoff's fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[_TargetId] = Field(min_length=1, max_length=machine.MAX_RECIPIENTS)


def call_id_for(handoff_id: str, target: str) -> str:
    """One reminder call per plain-line recipient: ``n-<record>-<target>``."""
    return f"n-{handoff_id.removeprefix('h-')}-{target}"


def target_of(call_id: str) -> str:
    """The recipient a reminder call rings (record ids have no ``-`` after ``h-``)."""
    return call_id.split("-", 2)[2]


class NoticeService:
    def __init__(
        self,
        settings: NoticeSettings,
        directory: Directory,
        store: HandoffStore,
        catalog: Catalog,
        *,
        site: Platform,
        record_url: Callable[[str], str],
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._store = store
        self._catalog = catalog
        self._site = site
        self._caller_id = settings.caller_id or site.value
        self._record_url = record_url
        self._submit = submit
        self._clock = clock
        self.calls: dict[str, Reminder] = {}  # reminder id -> the call ringing a plain line
        self._by_channel: dict[str, str] = {}
        self._sent: list[float] = []  # when this site's recent notices went out (the cap)
        self.keeper: Keeper[Reminder] | None = None

    # -- the action --------------------------------------------------------------------------

    def notify(self, principal: Principal, body: NoticeInput) -> dict[str, Any]:
        if principal.role not in ("agent", "supervisor"):
            raise Forbidden("notices are sent by agents and supervisors")
        now = self._clock()
        handoff_id = new_handoff_id(int(now * 1000))
        planned = machine.plan(self._directory, handoff_id, body.targets, body.jurisdiction.value)
        if isinstance(planned, Refusal):
            raise Invalid(planned.reason)
        recent = [t for t in self._sent if t > now - 3600]
        if len(recent) >= self._settings.per_hour:
            # Each notice rings several desks: a stuck button must not ring them all night.
            raise Conflict(
                f"{len(recent)} notices sent in the last hour (at most {self._settings.per_hour})"
            )
        linked = planned.pushes()
        # The record is addressed to the linked platform's site (its receiver checks that).
        target_site = (
            next((self._directory.targets[r.target].site for r in linked), None)
            or planned.recipients[0].target
        )
        data = HandoffInput.model_validate(body.model_dump(exclude={"targets"}))
        try:
            record = new_handoff(
                data,
                handoff_id=handoff_id,
                kind=HandoffKind.NOTICE,
                direction=Direction.from_site(self._site),
                target=target_site,
                citizen_number=None,
                created_by=views.actor_of(principal),
                catalog=self._catalog,
                now=datetime.fromtimestamp(now, UTC),
                created_data={
                    "recipients": ",".join(r.target for r in planned.recipients),
                    "desks": ",".join(
                        f"{r.target}:{r.entry.routed_as}" for r in planned.recipients
                    ),
                },
            )
        except HandoffInputError as exc:
            raise Invalid("invalid notice", exc.problems) from None
        except ValidationError as exc:
            raise Invalid(f"invalid notice: {exc.errors()[0]['msg']}") from None
        self._store.create(record, outbox=bool(linked))
        self._sent = [*recent, now]
        for r in planned.calls():
            plan = ReminderPlan(
                reminder_id=call_id_for(handoff_id, r.target),
                handoff_id=handoff_id,
                handoff_url=self._record_url(handoff_id),
                jurisdiction=planned.jurisdiction,
                dial=r.entry.dial,
                caller_id=self._caller_id,
                notice=self._settings.prompt,
                ring_timeout_s=r.entry.ring_timeout_s or self._settings.ring_timeout_s,
                attempts=self._settings.attempts,
                retry_after_s=self._settings.retry_after_s,
            )
            call, commands = reminder.start(plan, now)
            self._advance(None, call, commands)
        log.info(
            "notice sent",
            handoff_id=handoff_id,
            recipients=[r.target for r in planned.recipients],
            jurisdiction=planned.jurisdiction,
        )
        return self.view(handoff_id)

    def pushed(self, handoff_id: str, kind: str) -> None:
        """The partner link delivered an outbox item: a notice's record reached its platform."""
        if kind != "handoff.created":
            return
        record = self._record(handoff_id)
        if record is None or record.snapshot.kind is not HandoffKind.NOTICE:
            return
        for target in _recipients(record):
            t = self._directory.get(target)
            if t is not None and t.kind is TargetKind.LINKED:
                self._note(handoff_id, DELIVERED, target, "pushed to its platform")

    # -- reads -------------------------------------------------------------------------------

    def view(self, handoff_id: str) -> dict[str, Any]:
        record = self._record(handoff_id)
        if record is None or record.snapshot.kind is not HandoffKind.NOTICE:
            raise NotFound(f"no notice {handoff_id}")
        notice = fold(record, self._directory)
        by_target = {r.target: r for r in notice.recipients} if notice else {}
        return {
            "id": handoff_id,
            "state": notice.state.value if notice else "sending",
            "jurisdiction": record.snapshot.matter.jurisdiction.value,
            "recipients": [
                {
                    "target": target,
                    "kind": by_target[target].kind.value if target in by_target else None,
                    "delivery": by_target[target].delivery.value if target in by_target else None,
                    "detail": by_target[target].detail if target in by_target else "",
                    "call": _call_view(self.calls.get(call_id_for(handoff_id, target))),
                }
                for target in _recipients(record)
            ],
            "record": f"/v1/handoffs/{handoff_id}",
        }

    # -- the reminder calls: feedback from the PBX and time ------------------------------------

    def ringing(self) -> int:
        """Reminder calls on the line now (what a hand-back of this PBX must wait for)."""
        return sum(1 for r in self.calls.values() if r.on_the_line)

    def restore(self) -> list[Reminder]:
        if self.keeper is None:
            return []
        restored = [r for r in self.keeper.live() if r.id not in self.calls]
        for r in restored:
            self.calls[r.id] = r
            self._by_channel[r.channel_id] = r.id
        return restored

    def on_result(self, result: CommandResult) -> None:
        r = self.calls.get(result.command.ref)
        if r is not None:
            self._step(r, result)

    def on_event(self, event: PbxEvent) -> None:
        name = event.get("Event", "")
        if name not in ("OriginateResponse", "Hangup"):
            return
        uid = event.get("Uniqueid", "")
        r = self.calls.get(self._by_channel.get(uid, ""))
        if r is None:
            return
        e: reminder.Event
        if name == "Hangup":
            e = reminder.ChannelGone(uid)
        elif event.get("Response") == "Success":
            e = reminder.Answered(uid)
        else:
            e = reminder.AttemptFailed(uid, event.get("Reason", ""))
        self._step(r, e)

    def reconcile(self, live_uniqueids: Iterable[str]) -> None:
        live = set(live_uniqueids)
        for r in list(self.calls.values()):
            if not r.done and r.state is not reminder.ReminderState.RETRY_WAIT:
                if r.channel_id not in live:
                    self._step(r, reminder.ChannelGone(r.channel_id))

    def tick(self, now: float) -> None:
        for r in list(self.calls.values()):
            if not r.done and r.due_at is not None and now >= r.due_at:
                new, commands = reminder.step(r, reminder.Tick(), now)
                self._advance(r, new, commands)
            elif r.done and r.timeline and r.timeline[-1].at < now - KEEP_FINISHED_S:
                del self.calls[r.id]
        if self.keeper is not None:
            self.keeper.prune(now)

    def _step(self, r: Reminder, event: reminder.Event) -> None:
        new, commands = reminder.step(r, event, self._clock())
        self._advance(r, new, commands)

    def _advance(self, old: Reminder | None, new: Reminder, commands: list[Command]) -> None:
        self.calls[new.id] = new
        if self.keeper is not None:
            self.keeper.moved(new)  # before the commands: a restart resumes from here
        target = target_of(new.id)
        seen = len(old.timeline) if old is not None else 0
        for s in new.timeline[seen:]:
            self._note(new.plan.handoff_id, f"notice_call_{s.what}", target, s.outcome or s.detail)
        if new.done and (old is None or not old.done):
            delivered = new.state is reminder.ReminderState.DELIVERED
            what = DELIVERED if delivered else FAILED
            self._note(
                new.plan.handoff_id,
                what,
                target,
                "the desk heard the notice" if delivered else "unanswered",
            )
        if old is None or old.attempt != new.attempt:
            self._by_channel[new.channel_id] = new.id
            if old is not None:
                self._by_channel.pop(old.channel_id, None)
        if new.done:
            self._by_channel.pop(new.channel_id, None)
        if commands:
            self._submit(commands)

    # -- the record --------------------------------------------------------------------------

    def _record(self, handoff_id: str) -> HandoffRecord | None:
        try:
            return self._store.get(handoff_id)
        except StoreError as exc:
            log.error("notice: record unreadable", handoff_id=handoff_id, error=str(exc))
            return None

    def _note(self, handoff_id: str, what: str, target: str, detail: str) -> None:
        # The calls go on whatever happens here: a failed write is logged, never raised.
        data = {"what": what, "target": target}
        if detail:
            data["detail"] = detail[:2000]
        event = HandoffEvent(
            at=datetime.fromtimestamp(self._clock(), UTC),
            actor=Actor.system(),
            kind=EventKind.CALL_PROGRESS,
            data=data,
        )
        try:
            self._store.append(handoff_id, event)
        except (StoreError, ValidationError, OSError) as exc:
            log.error("notice event not recorded", handoff_id=handoff_id, error=str(exc))


def _recipients(record: HandoffRecord) -> list[str]:
    return [t for t in record.events[0].data.get("recipients", "").split(",") if t]


def fold(record: HandoffRecord, directory: Directory) -> Notice | None:
    """The notice as its record tells it: the recipients planned again from the directory,
    then every ``notice_delivered``/``notice_failed`` event in order. Pure."""
    planned = machine.plan(
        directory, record.id, _recipients(record), record.snapshot.matter.jurisdiction.value
    )
    if isinstance(planned, Refusal):
        return None  # the directory changed since: the events still tell each target's story
    notice = planned
    for e in record.events:
        what = e.data.get("what")
        if e.kind is EventKind.CALL_PROGRESS and what in (DELIVERED, FAILED):
            notice = machine.step(
                notice,
                Settled(e.data.get("target", ""), what == DELIVERED, e.data.get("detail", "")),
            )
    return notice


def _call_view(r: Reminder | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "state": r.state.value,
        "attempt": r.attempt,
        "attempts": r.plan.attempts,
        "dial": r.plan.dial,
        "outcome": r.outcome.value if r.outcome else None,
    }
