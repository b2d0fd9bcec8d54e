"""Follow-up (回访) after a matter is closed: the agents' task list, and the automated call.

What is owed is read from the records, not kept in memory: a closed record without a
``follow_up`` event needs one; each attempt of the automated call is a ``call_progress`` event
(``follow_up_call`` when it starts, ``follow_up_<outcome>`` when it ends), and the rating, or
``not_reached`` after the last attempt, is the ``follow_up`` event itself. So after a restart
the scan counts the attempts already made and waits ``retry_after_s`` from the last one, exactly
as before it. A confidential record is called back only if the citizen consented
(``citizen.follow_up_consent``); a record whose citizen refused is never called.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from hotline_bridge.config.settings import FollowUpSettings
from hotline_bridge.core.commands import CommandResult
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.feedback import Submit
from hotline_bridge.core.principal import Principal
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.followups import machine
from hotline_bridge.followups.machine import CallPlan, CallState, FollowUpCall
from hotline_bridge.handoffs.model import (
    Actor,
    EventKind,
    HandoffEvent,
    HandoffRecord,
    Status,
    event,
)
from hotline_bridge.handoffs.status import (
    HandoffState,
    fold,
)
from hotline_bridge.handoffs.store import (
    MAX_PAGE,
    HandoffFilter,
    HandoffStore,
    PageRequest,
    StoreError,
)

log = structlog.get_logger(__name__)

_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
STARTED = "follow_up_call"


def may_call_back(record: HandoffRecord) -> bool:
    """The citizen's consent rule: refused never; confidential only with consent."""
    citizen = record.snapshot.citizen
    if citizen.follow_up_consent is False:
        return False
    return not citizen.confidential or citizen.follow_up_consent is True


def callback_number(record: HandoffRecord) -> str | None:
    citizen = record.snapshot.citizen
    for number in (citizen.callback, citizen.number):
        if number and _NUMBER.fullmatch(number):
            return number
    return None


@dataclass(frozen=True, slots=True)
class Owed:
    """A closed record without its follow-up, and what the automated call has tried so far."""

    record: HandoffRecord
    state: HandoffState
    attempts: int
    last_attempt_at: datetime | None

    @property
    def closed_at(self) -> datetime | None:
        return self.state.timeline.closed


def owed(record: HandoffRecord) -> Owed | None:
    state = fold(record)
    if state.status is not Status.CLOSED or state.satisfaction is not None:
        return None
    starts = [
        e.at
        for e in record.events
        if e.kind is EventKind.CALL_PROGRESS and e.data.get("what") == STARTED
    ]
    return Owed(record, state, len(starts), max(starts) if starts else None)


def due_attempt(o: Owed, policy: FollowUpSettings, now: datetime) -> int | None:
    """The attempt to start now (1-based), or None: not yet, no more, or not to be called."""
    if policy.dial is None or not may_call_back(o.record) or callback_number(o.record) is None:
        return None
    if o.attempts >= policy.attempts or o.closed_at is None:
        return None
    if now < o.closed_at + timedelta(seconds=policy.delay_after_close_s):
        return None
    if o.last_attempt_at is not None and now < o.last_attempt_at + timedelta(
        seconds=policy.retry_after_s
    ):
        return None
    return o.attempts + 1


def owed_records(store: HandoffStore, since: datetime) -> Iterator[Owed]:
    """Records created since ``since``, closed, without their follow-up yet."""
    cursor: str | None = None
    while True:
        page = store.list(
            HandoffFilter(status=Status.CLOSED, since=since),
            PageRequest(limit=MAX_PAGE, cursor=cursor),
        )
        for record in page.items:
            o = owed(record)
            if o is not None:
                yield o
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class FollowUpService:
    def __init__(
        self,
        store: HandoffStore,
        policy: FollowUpSettings,
        *,
        site: str,
        submit: Submit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self._caller_id = policy.caller_id or site
        self._submit = submit
        self._clock = clock
        self.calls: dict[str, FollowUpCall] = {}  # in flight, by call id
        self._by_channel: dict[str, str] = {}
        self._by_handoff: dict[str, str] = {}

    # -- the agents' task list ------------------------------------------------------------------

    def tasks(self, store: HandoffStore, principal: Principal) -> list[dict[str, Any]]:
        """Closed matters still owed a follow-up: the agents call them (or the bridge will).
        Reads ``store`` (a worker thread's own connection: it scans a month of records)."""
        out = []
        for o in owed_records(store, self._since()):
            record = o.record
            number = callback_number(record)
            # A list is no place to reveal a confidential citizen: open the record (audited).
            full = principal.role == "supervisor" and not record.snapshot.citizen.confidential
            out.append(
                {
                    "id": record.id,
                    "closed_at": o.closed_at.isoformat() if o.closed_at else None,
                    "category_label_zh": record.snapshot.matter.category_label_zh,
                    "callback": (number if full else mask_number(number)) if number else None,
                    "may_call_back": may_call_back(record),
                    "automated": self.policy.dial is not None and may_call_back(record),
                    "attempts": o.attempts,
                    "confidential": record.snapshot.citizen.confidential,
                }
            )
        return out

    # -- the automated call ----------------------------------------------------------------------

    def due(self, store: HandoffStore) -> list[tuple[HandoffRecord, int]]:
        """The attempts due now, read from ``store`` (in a worker thread, its own connection)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        out = []
        for o in owed_records(store, self._since()):
            attempt = due_attempt(o, self.policy, now)
            if attempt is not None:
                out.append((o.record, attempt))
        return out

    def start_due(self, due: list[tuple[HandoffRecord, int]]) -> list[str]:
        """Start what ``due`` found (on the event loop), at most ``max_calls_at_once`` in flight;
        then give up attempts that got no result in time."""
        started: list[str] = []
        for record, attempt in due:
            if len(self.calls) >= self.policy.max_calls_at_once:
                break
            if record.id in self._by_handoff:
                continue
            fresh = self.store.get(record.id)  # what the loop's own store says now
            o = owed(fresh) if fresh is not None else None
            if o is None or o.attempts + 1 != attempt:
                continue  # rated or tried meanwhile
            self._start(o.record, attempt)
            started.append(record.id)
        self._expire()
        return started

    def on_result(self, result: CommandResult) -> None:
        call = self.calls.get(result.command.ref)
        if call is not None:
            self._step(call, result)

    def on_event(self, event_: PbxEvent) -> None:
        name = event_.get("Event", "")
        if name == "UserEvent" and event_.get("UserEvent") == "FollowUpRating":
            call = self.calls.get(event_.get("FollowUpId", ""))
            if call is not None:
                rated = machine.Rated(event_.get("Digit", ""), event_.get("Status", ""))
                self._step(call, rated)
            return
        if name not in ("OriginateResponse", "Hangup"):
            return
        call_id = self._by_channel.get(event_.get("Uniqueid", ""))
        call = self.calls.get(call_id or "")
        if call is None:
            return
        if name == "Hangup":
            self._step(call, machine.ChannelGone())
        elif event_.get("Response") == "Success":
            self._step(call, machine.Answered())
        else:
            self._step(call, machine.OriginateFailed(f"reason {event_.get('Reason', '?')}"))

    def tick(self, now: float) -> None:
        """Time passed: attempts that got no result by their ``due_at`` are given up."""
        self._expire()

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect: an attempt whose channel is gone ended unseen."""
        for call in list(self.calls.values()):
            if call.state is CallState.ANSWERED and call.plan.channel_id not in live_uniqueids:
                self._step(call, machine.ChannelGone())

    # -- plumbing -------------------------------------------------------------------------------

    def _since(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC) - timedelta(days=self.policy.window_days)

    def _start(self, record: HandoffRecord, attempt: int) -> None:
        number = callback_number(record)
        assert number is not None and self.policy.dial is not None
        call_id = f"f-{uuid.uuid4().hex[:20]}"
        plan = CallPlan(
            call_id=call_id,
            handoff_id=record.id,
            attempt=attempt,
            dial=self.policy.dial.replace("{number}", number),
            caller_id=self._caller_id,
            prompt=self.policy.prompt,
            ring_timeout_s=self.policy.ring_timeout_s,
            channel_id=f"{call_id}-{attempt}",
        )
        now = self._clock()
        # The attempt is on the record before the call leaves: a crash now costs an attempt,
        # never a second call the bridge does not know it made.
        self._record(record.id, STARTED, f"attempt {attempt}", now)
        call, commands = machine.start(plan, now)
        self.calls[call_id] = call
        self._by_channel[plan.channel_id] = call_id
        self._by_handoff[record.id] = call_id
        log.info(
            "follow-up call",
            handoff_id=record.id,
            attempt=attempt,
            citizen=mask_number(number),
        )
        self._submit(commands)

    def _expire(self) -> None:
        for call in list(self.calls.values()):
            self._step(call, machine.Tick())

    def _step(self, call: FollowUpCall, ev: machine.Event) -> None:
        new, commands = machine.step(call, ev, self._clock())
        if new is call:
            return
        self.calls[new.plan.call_id] = new
        if new.done:
            self._finish(new)
        if commands:
            self._submit(commands)

    def _finish(self, call: FollowUpCall) -> None:
        plan = call.plan
        self.calls.pop(plan.call_id, None)
        self._by_channel.pop(plan.channel_id, None)
        self._by_handoff.pop(plan.handoff_id, None)
        now = self._clock()
        log.info("follow-up call ended", handoff_id=plan.handoff_id, state=call.state.value)
        if call.state is CallState.RATED and call.rating is not None:
            self._rating(plan.handoff_id, call.rating, f"自动回访:{call.detail}", now)
            return
        self._record(plan.handoff_id, f"follow_up_{call.state.value}", call.detail, now)
        if plan.attempt >= self.policy.attempts:
            text = f"自动回访 {plan.attempt} 次未获评价"
            self._rating(plan.handoff_id, "not_reached", text, now)

    def _record(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        self._append(
            handoff_id,
            event(
                EventKind.CALL_PROGRESS,
                actor=Actor.system(),
                at=datetime.fromtimestamp(now, UTC),
                what=what,
                detail=detail,
            ),
        )

    def _rating(self, handoff_id: str, satisfaction: str, text: str, now: float) -> None:
        at = datetime.fromtimestamp(now, UTC)
        self._append(
            handoff_id,
            event(
                EventKind.FOLLOW_UP,
                actor=Actor.system(),
                at=at,
                satisfaction=satisfaction,
                text=text,
            ),
        )

    def _append(self, handoff_id: str, ev: HandoffEvent) -> None:
        # The call goes on whatever happens here: a failed write is logged, never raised.
        try:
            self.store.append(handoff_id, ev, outbox=ev.kind is EventKind.FOLLOW_UP)
        except (StoreError, ValueError, OSError) as exc:
            log.error("follow-up event not recorded", handoff_id=handoff_id, error=str(exc))
