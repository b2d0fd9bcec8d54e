"""The book of handoffs in flight on live calls: one per call, recorded before the PBX acts.

Carry transfers and three-way calls differ in their machines, not in what happens around them:
a press claims the call (so a second press gets 409), opens the handoff record durably, starts
the machine and only then hands its commands to the interpreter; every later move of the machine
is recorded, logged, reported, and releases the call when the handoff is done. That shared
discipline lives here once.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Generic, Protocol, TypeVar

import structlog

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.calls.service import CallService
from hotline_bridge.core.commands import Command
from hotline_bridge.core.errors import Conflict, Invalid, NotFound
from hotline_bridge.core.outcomes import Outcome, TimelineEntry
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.directory.model import DialPlanEntry, Directory, Purpose, Refusal, resolve
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
)
from hotline_bridge.handoffs.machines import Keeper
from hotline_bridge.handoffs.ports import HandoffRecorder

log = structlog.get_logger(__name__)

_KEEP_FINISHED = 10_000  # finished handoffs kept in memory for GET; the record keeps the rest


class Tracked(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def handoff_id(self) -> str: ...
    @property
    def call_id(self) -> str: ...
    @property
    def timeline(self) -> tuple[TimelineEntry, ...]: ...
    @property
    def outcome(self) -> Outcome | None: ...
    @property
    def done(self) -> bool: ...
    @property
    def state(self) -> str: ...


T = TypeVar("T", bound=Tracked)


CST = timezone(timedelta(hours=8), "CST")  # the directory's opening hours are local time
# Refusals that are about the moment, not the request: 409 (try again later / another target).
_CONFLICTS = frozenset({"target_closed"})


def route(
    directory: Directory,
    target: str,
    call_jurisdiction: str,
    handoff: HandoffInput,
    purpose: Purpose,
    now: float,
) -> DialPlanEntry:
    """The desk a hand-over dials: the target's desk for the call's jurisdiction (the entry
    hook's), or for the one the agent put in the form when it differs (an override, recorded).
    A refusal is a 422 (or 409 for a closed target) naming the reason."""
    override = handoff.jurisdiction.value
    local = datetime.fromtimestamp(now, CST)
    found = resolve(
        directory,
        target,
        call_jurisdiction,
        None if override == Jurisdiction.UNKNOWN.value else override,
        purpose=purpose,
        minute_of_day=local.hour * 60 + local.minute,
    )
    if isinstance(found, Refusal):
        reason = found.reason
        if found.code == "unknown_target":
            reason += f"; known targets: {', '.join(sorted(directory.targets)) or 'none'}"
        raise (Conflict if found.code in _CONFLICTS else Invalid)(reason)
    return found


@dataclass(frozen=True, slots=True)
class BookSpec:
    """What tells one kind of handoff on a live call from another, for records and logs."""

    kind: str  # the record's kind: "carry_transfer" | "three_way"
    label: str  # how logs and errors name it: "carry transfer" | "three-way"
    id_key: str  # the id's name in log lines: "transfer_id" | "conference_id"
    id_prefix: str  # a readable prefix of its ids ("t", "c"); nothing routes on it


class HandoffBook(Generic[T]):
    def __init__(
        self,
        spec: BookSpec,
        calls: CallService,
        recorder: HandoffRecorder,
        submit: Callable[[list[Command]], None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[T, T], None] | None = None,
    ) -> None:
        self.kind = spec.kind
        self.label = spec.label
        self._id_key = spec.id_key
        self._prefix = spec.id_prefix
        self.calls = calls
        self.recorder = recorder
        self._submit = submit
        self.clock = clock
        self.on_change = on_change  # observers of every move (metrics)
        # Observer of each record's synchronous write, (kind, seconds): the one store wait
        # every press pays before the PBX is asked anything (metrics).
        self.on_recorded: Callable[[str, float], None] | None = None
        self.items: OrderedDict[str, T] = OrderedDict()
        # Where live machines are kept across restarts (None: memory only, as in unit tests).
        self.keeper: Keeper[T] | None = None

    def open(
        self,
        call: LiveCall,
        target: str,
        handoff: HandoffInput,
        start: Callable[[str, str, str, float], tuple[T, list[Command]]],
        desk: DialPlanEntry | None = None,
    ) -> T:
        """Claim the call, write the record, start the machine, send its commands, note it.

        ``start(ref, handoff_id, handoff_url, now)`` builds the machine's first state;
        ``desk`` is where it dials (:func:`route`), kept in the record.
        """
        ref = f"{self._prefix}-{uuid.uuid4().hex[:20]}"
        self.calls.claim(call.call_id, ref)
        now = self.clock()
        handoff_id = new_handoff_id(int(now * 1000))
        # The machine starts first (pure), so its first state goes into the record's own
        # transaction: one commit before the first command leaves, not two (on PostgreSQL each
        # is a round trip and a WAL flush), and never a record without its machine.
        item, commands = start(ref, handoff_id, self.recorder.url(handoff_id), now)
        began = time.perf_counter()
        try:
            self.recorder.open(
                kind=self.kind,
                call=call,
                target=target,
                handoff=handoff,
                now=now,
                desk=desk,
                handoff_id=handoff_id,
                machine=None if self.keeper is None else self.keeper.row(item),
            )
        except Exception:
            self.calls.release(call.call_id, ref)
            raise
        recorded_s = time.perf_counter() - began
        self._remember(item)
        # The record is durable and the machine started: the commands leave now (the
        # interpreter writes them at once), ahead of the note and the log line, which are not
        # needed by the PBX. Their replies are handled on later loop turns, so the record's
        # events keep this order: requested, then what the PBX said.
        self._submit(commands)
        self.recorder.note(handoff_id, f"{self.kind}_requested", f"target {target}", now)
        if self.on_recorded is not None:
            self.on_recorded(self.kind, recorded_s)
        log.info(
            f"{self.label} requested",
            **{self._id_key: ref},
            handoff_id=handoff_id,
            call_id=call.call_id,
            agent=call.agent_id,
            target=target,
            citizen=mask_number(call.citizen_number),
            # The record's own write (validation, the store's commit): what the press waited
            # for before the first command left, apart from reaching the bridge.
            record_ms=round(recorded_s * 1000, 3),
        )
        return item

    def get(self, ref: str) -> T:
        item = self.items.get(ref)
        if item is None:
            raise NotFound(f"no {self.label} {ref}")
        return item

    def advance(self, old: T, new: T, commands: list[Command]) -> T:
        """Record, log and report one move of a machine, then send what it asked for."""
        if new is old:
            return old
        self.items[new.id] = new
        if self.keeper is not None:
            self.keeper.moved(new)
        for entry in new.timeline[len(old.timeline) :]:
            self.recorder.note(new.handoff_id, entry.what, entry.detail, entry.at)
        if new.state != old.state:
            log.info(
                f"{self.label} state",
                **{self._id_key: new.id},
                handoff_id=new.handoff_id,
                call_id=new.call_id,
                state=str(new.state),
                outcome=new.outcome.value if new.outcome else None,
            )
        if new.done:
            self.calls.release(new.call_id, new.id)
        if self.on_change is not None:
            self.on_change(old, new)
        self._submit(commands)
        return new

    def restore(self) -> list[T]:
        """Take back what a previous process left (after a restart): the recently finished
        machines, so their ids still answer, and the live ones, which hold their calls again
        and wait for the PBX's state (``reconcile``) and its events. Returns the live ones."""
        if self.keeper is None:
            return []
        for item in self.keeper.finished(_KEEP_FINISHED):
            self.items.setdefault(item.id, item)
        restored = [item for item in self.keeper.live() if item.id not in self.items]
        for item in restored:
            self._remember(item)
            with contextlib.suppress(Conflict):
                self.calls.claim(item.call_id, item.id)
            log.info(
                f"{self.label} restored",
                **{self._id_key: item.id},
                handoff_id=item.handoff_id,
                call_id=item.call_id,
                state=str(item.state),
            )
        return restored

    def prune(self, now: float) -> None:
        """Finished machines leave the store after an hour (the record keeps their story)."""
        if self.keeper is not None:
            self.keeper.prune(now)

    def live(self) -> list[T]:
        return [item for item in self.items.values() if not item.done]

    def _remember(self, item: T) -> None:
        self.items[item.id] = item
        while len(self.items) > _KEEP_FINISHED:
            oldest_id, oldest = next(iter(self.items.items()))
            if not oldest.done:
                break
            del self.items[oldest_id]
