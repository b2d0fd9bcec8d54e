"""Work orders that arrived by WeChat, SMS, web, app or email, and ringing the 110 duty line.

``WorkOrderService.file`` stores the record (a handoff of kind ``work_order`` with its intake
``channel``, in the outbox like any handoff, so the partner link pushes it) and asks the routing
advisor what the matter needs. When the advice says to phone the jurisdiction's 110
(``alert_110_by_phone``: a police matter received online at 12345), ``ReminderService`` rings the
duty line of ``[duty_lines]`` through the PBX, retries it when unanswered, and writes every step
into the record as ``call_progress`` events (``what`` = ``duty_reminder_<step>``).

The reminder runs ``core.reminder``; its commands go through the interpreter and the PBX's
answers come back through the switchboard (ref prefix ``r-``). Reminders live in memory: a bridge
restart forgets a retry still waiting (the record keeps every attempt made so far).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from pydantic import ValidationError

from hotline_bridge.catalog.advisor import Advice, AdviceError, Channel, advise
from hotline_bridge.catalog.model import Catalog, Platform
from hotline_bridge.config.settings import DutyLineSettings
from hotline_bridge.core import reminder as machine
from hotline_bridge.core.commands import Command, CommandResult
from hotline_bridge.core.errors import NotFound
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.reminder import Reminder, ReminderPlan
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.handoffs.model import (
    Actor,
    EventKind,
    HandoffEvent,
    IntakeChannel,
)
from hotline_bridge.handoffs.service import HandoffService, WorkOrderInput
from hotline_bridge.handoffs.store import HandoffStore, StoreError

log = structlog.get_logger(__name__)

REF_PREFIX = "r-"


class NonVoiceChannel(StrEnum):
    """The channels a work order of ``POST /v1/work-orders`` may have arrived by."""

    WECHAT = "wechat"
    SMS = "sms"
    WEB = "web"
    APP = "app"
    EMAIL = "email"


class NonVoiceWorkOrderInput(WorkOrderInput):
    """A work order: the handoff fields plus the channel the matter came by.

    ``channel`` absent: an agent or supervisor files it themselves (e.g. after a call), and no
    duty line is rung; present: a matter received online, which the advisor may say needs 110.
    """

    channel: NonVoiceChannel | None = None


def reminder_id_for(handoff_id: str) -> str:
    """One reminder per work order: its id is derived from the record's (``h-x`` → ``r-x``)."""
    return REF_PREFIX + handoff_id.removeprefix("h-")


def reminder_view(r: Reminder) -> dict[str, Any]:
    return {
        "reminder_id": r.id,
        "handoff_id": r.plan.handoff_id,
        "state": r.state.value,
        "outcome": r.outcome.value if r.outcome else None,
        "attempt": r.attempt,
        "attempts": r.plan.attempts,
        "jurisdiction": r.plan.jurisdiction,
        "dial": r.plan.dial,
        "caller_id": r.plan.caller_id,
        "due_at": r.due_at,
        "timeline": [
            {"at": s.at, "what": s.what, "attempt": s.attempt, "outcome": s.outcome or None}
            for s in r.timeline
        ],
    }


def step_event(step: machine.Step, attempts: int) -> HandoffEvent:
    """The record event for one reminder timeline step. Pure."""
    data = {
        "what": f"duty_reminder_{step.what}",
        "attempt": str(step.attempt),
        "attempts": str(attempts),
    }
    if step.outcome:
        data["outcome"] = step.outcome
    if step.detail:
        data["detail"] = step.detail[:2000]
    return HandoffEvent(
        at=datetime.fromtimestamp(step.at, UTC),
        actor=Actor.system(),
        kind=EventKind.CALL_PROGRESS,
        data=data,
    )


KEEP_FINISHED_S = 3600.0  # a finished reminder stays readable (GET .../reminder) this long


class ReminderService:
    def __init__(
        self,
        settings: DutyLineSettings,
        *,
        caller_id: str,
        store: HandoffStore,
        record_url: Callable[[str], str],
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        calls_per_hour: int = 6,
    ) -> None:
        self._settings = settings
        self._calls_per_hour = calls_per_hour
        self._caller_id = settings.caller_id or caller_id
        self._store = store
        self._record_url = record_url
        self._submit = submit
        self._clock = clock
        self.reminders: dict[str, Reminder] = {}
        self._by_channel: dict[str, str] = {}  # attempt channel Uniqueid -> reminder id
        # One call reminds of every police order of a jurisdiction still waiting for it: orders
        # arriving while its reminder is pending are covered by it, not rung again.
        self._pending: dict[str, str] = {}  # jurisdiction -> reminder id still pending
        self._covered_by: dict[str, str] = {}  # handoff id -> the reminder that covers it
        self._started: dict[str, list[float]] = {}  # jurisdiction -> call start times (cap)
        self.keeper: Keeper[Reminder] | None = None  # pending reminders kept across restarts

    def ringing(self) -> int:
        """Reminder calls on the line now (what a hand-back of this PBX must wait for)."""
        return sum(1 for r in self.reminders.values() if r.on_the_line)

    def restore(self) -> list[Reminder]:
        """After a restart: reminders the last process left pending (a retry waiting, an
        attempt ringing) are back; a retry is rung when its ``due_at`` comes, as before."""
        if self.keeper is None:
            return []
        for r in self.keeper.finished(1000):
            self.reminders.setdefault(r.id, r)
        restored = [r for r in self.keeper.live() if r.id not in self.reminders]
        for r in restored:
            self.reminders[r.id] = r
            self._by_channel[r.channel_id] = r.id
            self._pending[r.plan.jurisdiction] = r.id
            if r.timeline:
                self._started.setdefault(r.plan.jurisdiction, []).append(r.timeline[0].at)
            log.info("duty reminder restored", reminder_id=r.id, state=str(r.state))
        return restored

    def start(self, handoff_id: str, jurisdiction: str) -> Reminder | None:
        """Ring the jurisdiction's duty line for this record (None: no duty line configured)."""
        dial = self._settings.dial_for(jurisdiction)
        if dial is None:
            log.warning("no 110 duty line configured", jurisdiction=jurisdiction)
            self._record(
                handoff_id,
                HandoffEvent(
                    at=datetime.fromtimestamp(self._clock(), UTC),
                    actor=Actor.system(),
                    kind=EventKind.CALL_PROGRESS,
                    data={"what": "duty_reminder_skipped", "detail": "no duty line configured"},
                ),
            )
            return None
        rid = reminder_id_for(handoff_id)
        if rid in self.reminders:
            return self.reminders[rid]
        now = self._clock()
        pending = self.reminders.get(self._pending.get(jurisdiction, ""))
        if pending is not None and not pending.done:
            self._covered_by[handoff_id] = pending.id
            self._note(handoff_id, "duty_reminder_merged", f"covered by {pending.id}", now)
            return pending
        recent = [at for at in self._started.get(jurisdiction, []) if at > now - 3600]
        if len(recent) >= self._calls_per_hour:
            # A flood of orders must not ring the duty desk without end: the orders are filed
            # and pushed to 110 all the same; the desk has been rung this hour already.
            self._started[jurisdiction] = recent
            log.warning("duty line capped", jurisdiction=jurisdiction, calls=len(recent))
            self._note(
                handoff_id,
                "duty_reminder_capped",
                f"{len(recent)} reminder calls to this duty line in the last hour",
                now,
            )
            return None
        self._started[jurisdiction] = [*recent, now]
        self._pending[jurisdiction] = rid
        plan = ReminderPlan(
            reminder_id=rid,
            handoff_id=handoff_id,
            handoff_url=self._record_url(handoff_id),
            jurisdiction=jurisdiction,
            dial=dial,
            caller_id=self._caller_id,
            notice=self._settings.notice,
            ring_timeout_s=self._settings.ring_timeout_s,
            attempts=self._settings.attempts,
            retry_after_s=self._settings.retry_after_s,
        )
        reminder, commands = machine.start(plan, now)
        self._advance(None, reminder, commands)
        return reminder

    def covering(self, handoff_id: str) -> Reminder | None:
        """The reminder that rang (or rings) the duty line for this order."""
        rid = self._covered_by.get(handoff_id, reminder_id_for(handoff_id))
        return self.reminders.get(rid)

    def _note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        self._record(
            handoff_id,
            HandoffEvent(
                at=datetime.fromtimestamp(now, UTC),
                actor=Actor.system(),
                kind=EventKind.CALL_PROGRESS,
                data={"what": what, "detail": detail},
            ),
        )

    def get(self, reminder_id: str) -> Reminder | None:
        return self.reminders.get(reminder_id)

    # -- feedback from the PBX ---------------------------------------------------------------

    def on_result(self, result: CommandResult) -> None:
        r = self.reminders.get(result.command.ref)
        if r is not None:
            self._step(r, result)

    def on_event(self, event: PbxEvent) -> None:
        name = event.get("Event", "")
        if name not in ("OriginateResponse", "Hangup"):
            return
        uid = event.get("Uniqueid", "")
        rid = self._by_channel.get(uid)
        r = self.reminders.get(rid or "")
        if r is None:
            return
        domain_event: machine.Event
        if name == "Hangup":
            domain_event = machine.ChannelGone(uid)
        elif event.get("Response") == "Success":
            domain_event = machine.Answered(uid)
        else:
            domain_event = machine.AttemptFailed(uid, event.get("Reason", ""))
        self._step(r, domain_event)

    def reconcile(self, live_uniqueids: Iterable[str]) -> None:
        """After a reconnect: an attempt's channel that vanished meanwhile has hung up."""
        live = set(live_uniqueids)
        for r in list(self.reminders.values()):
            if not r.done and r.state is not machine.ReminderState.RETRY_WAIT:
                if r.channel_id not in live:
                    self._step(r, machine.ChannelGone(r.channel_id))

    # -- plumbing ----------------------------------------------------------------------------

    def _step(self, r: Reminder, event: machine.Event) -> Reminder:
        new, commands = machine.step(r, event, self._clock())
        self._advance(r, new, commands)
        return new

    def tick(self, now: float) -> None:
        """Time passed: every reminder whose ``due_at`` has come is stepped (retry, give up);
        reminders finished over an hour ago leave memory (their story is in the records)."""
        for r in list(self.reminders.values()):
            if not r.done and r.due_at is not None and now >= r.due_at:
                new, commands = machine.step(r, machine.Tick(), now)
                self._advance(r, new, commands)
            elif r.done and r.timeline and r.timeline[-1].at < now - KEEP_FINISHED_S:
                del self.reminders[r.id]
                self._covered_by = {h: c for h, c in self._covered_by.items() if c != r.id}
        if self.keeper is not None:
            self.keeper.prune(now)

    def _advance(self, old: Reminder | None, new: Reminder, commands: list[Command]) -> None:
        self.reminders[new.id] = new
        if self.keeper is not None:
            self.keeper.moved(new)  # before the commands: a restart resumes from here
        seen = len(old.timeline) if old is not None else 0
        for s in new.timeline[seen:]:
            self._record(new.plan.handoff_id, step_event(s, new.plan.attempts))
            log.info(
                "duty reminder",
                reminder_id=new.id,
                handoff_id=new.plan.handoff_id,
                step=s.what,
                attempt=s.attempt,
                outcome=s.outcome,
            )
        if old is None or old.attempt != new.attempt:
            self._by_channel[new.channel_id] = new.id
            if old is not None:
                self._by_channel.pop(old.channel_id, None)
        if new.done:
            self._by_channel.pop(new.channel_id, None)
        if commands:
            self._submit(commands)

    def _record(self, handoff_id: str, event: HandoffEvent) -> None:
        # The reminder goes on whatever happens here: a failed write is logged, never raised.
        try:
            self._store.append(handoff_id, event)
        except (StoreError, ValidationError, OSError) as exc:
            log.error("duty reminder event not recorded", handoff_id=handoff_id, error=str(exc))

    def close(self) -> None:
        """Nothing to cancel: time reaches reminders only through :meth:`tick`."""


class WorkOrderService:
    def __init__(
        self,
        handoffs: HandoffService,
        reminders: ReminderService,
        catalog: Catalog,
        *,
        site: Platform,
    ) -> None:
        self._handoffs = handoffs
        self.reminders = reminders
        self._catalog = catalog
        self._site = site

    def file(self, principal: Principal, body: NonVoiceWorkOrderInput) -> dict[str, Any]:
        """Store the work order (outbox: pushed to the partner), then ring 110 if it needs it."""
        order = WorkOrderInput.model_validate(body.model_dump(exclude={"channel"}))
        channel = IntakeChannel(body.channel.value) if body.channel is not None else None
        view = self._handoffs.create_work_order(principal, order, channel=channel)
        advice = self.advice(body) if channel is not None else None
        reminder = None
        if advice is not None and advice.alert_110_by_phone:
            reminder = self.reminders.start(view["id"], body.jurisdiction.value)
        return {
            "id": view["id"],
            "handoff": view,
            "advice": None
            if advice is None
            else {
                "action": advice.action.value,
                "rule": advice.rule.value,
                "alert_110_by_phone": advice.alert_110_by_phone,
                "police_dispatch_first": advice.police_dispatch_first,
            },
            "reminder": reminder_view(reminder) if reminder is not None else None,
        }

    def advice(self, body: WorkOrderInput) -> Advice | None:
        """The advisor's word on a matter received online here (None: not enough to advise)."""
        try:
            return advise(
                body.category,
                catalog=self._catalog,
                matter_class=body.matter_class,
                danger_to_life=body.danger_to_life,
                violent_risk=body.violent_risk,
                received_by=self._site,
                channel=Channel.ONLINE,
            )
        except AdviceError:
            return None

    def reminder(self, handoff_id: str) -> dict[str, Any]:
        r = self.reminders.covering(handoff_id)
        if r is None:
            raise NotFound(f"no duty-line reminder for {handoff_id}")
        return reminder_view(r)
