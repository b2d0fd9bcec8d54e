"""The store's interface (a Protocol any backend satisfies), its value types and errors."""

from __future__ import annotations

import builtins
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from hotline_bridge.catalog.model import MatterClass
from hotline_bridge.core.errors import Unavailable
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.model import (
    Direction,
    HandoffEvent,
    HandoffKind,
    HandoffRecord,
    Status,
)

MAX_PAGE = 200
# How long a drainer's claim on outbox rows lasts if it neither delivers nor fails them: longer
# than a push's timeout, so a live drainer never loses its rows to another.
OUTBOX_LEASE_S = 120.0


class StoreError(Exception):
    """The store cannot do what was asked (the message says why)."""


class StoreBusy(StoreError, Unavailable):
    """Another writer held the lock past the busy timeout: nothing was written; a person's
    request gets 503 with this reason (``core.errors.Unavailable``), a scan retries later."""


class GroupUndone(StoreError):
    """A write inside ``batch()`` failed where the group has no savepoints (PostgreSQL): the
    whole group was rolled back; its writes are to be made again one at a time."""


@dataclass(slots=True)
class Group:
    """What ``batch()`` yields. ``failed``: a write in it failed and the rest of the group will
    be undone (PostgreSQL); the writer stops adding to it (``behind.write_group``)."""

    failed: bool = False


class DuplicateHandoff(StoreError):
    """A record with this id exists and its snapshot differs from the one offered."""


class UnknownHandoff(StoreError):
    """No record has this id."""


@dataclass(frozen=True, slots=True)
class HandoffFilter:
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    matter_class: MatterClass | None = None
    direction: Direction | None = None
    status: Status | None = None
    jurisdiction: Jurisdiction | None = None
    kind: HandoffKind | None = None


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = 50
    cursor: str | None = None  # opaque; from the previous Page

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[HandoffRecord, ...]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class CallEntry:
    """One row of the call log: a call as the dialplan's AGI hooks saw it arrive."""

    call_id: str  # Asterisk Uniqueid of the citizen's channel
    arrived_at: datetime
    kind: Literal["citizen", "from_partner"]
    jurisdiction: Jurisdiction = Jurisdiction.UNKNOWN
    caller: str | None = None  # the number as carried (caller ID), if it is one
    dialled: str | None = None
    endpoint: str | None = None  # the PJSIP endpoint (trunk) it arrived on
    nuisance: bool = False
    handoff_id: str | None = None  # from_partner: the X-Handoff-Id it carried
    urgency: str | None = None  # from_partner: urgent / normal / unknown


@dataclass(frozen=True, slots=True)
class MachineRow:
    """A machine's state as ``keep_machine`` stores it, for ``create(..., machine=)``: the first
    state of a transfer or three-way call written in the record's own transaction."""

    kind: str
    id: str
    state: str  # JSON
    done: bool


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    handoff_id: str
    kind: str  # "handoff.created" | "handoff.event"
    payload: str  # JSON
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None


class HandoffStore(Protocol):
    """Where handoff records live. Every method is one short transaction."""

    def create(
        self, record: HandoffRecord, *, outbox: bool = True, machine: MachineRow | None = None
    ) -> bool:
        """Store a new record; durable on return. Returns False (and writes no record) if a
        record with this id and an identical snapshot exists; raises DuplicateHandoff if it
        differs. ``machine``: kept (as ``keep_machine``) in the same transaction, so a hotkey's
        record and its machine's first state cost one commit, and exist together or not at all
        (on a replay returning False it is kept on its own)."""
        ...

    def get(self, handoff_id: str) -> HandoffRecord | None: ...

    def append(self, handoff_id: str, event: HandoffEvent, *, outbox: bool = False) -> HandoffEvent:
        """Append an event, numbering it atomically; returns it with its ``seq``."""
        ...

    def list(self, filters: HandoffFilter, page: PageRequest) -> Page:
        """Records newest first, filtered, one page at a time."""
        ...

    def outbox_pending(
        self, limit: int = 100, *, now: datetime | None = None
    ) -> builtins.list[OutboxItem]: ...

    def outbox_claim(
        self, limit: int = 100, *, now: datetime | None = None, lease_s: float = OUTBOX_LEASE_S
    ) -> builtins.list[OutboxItem]:
        """Take due rows for pushing, oldest first, for up to ``limit`` handoffs: no other
        drainer gets them until they are marked delivered or failed, or ``lease_s`` passes (the
        drainer died). A handoff's undelivered rows are taken together and only when the oldest
        is due and free, so one handoff's pushes keep their order across drainers; a failed
        push releases the rest of its handoff."""
        ...

    def outbox_mark_delivered(self, item_id: int, *, now: datetime | None = None) -> None: ...

    def outbox_mark_failed(self, item_id: int, next_attempt_at: datetime) -> None: ...

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        """Undelivered outbox rows and when the oldest was written (for metrics and alerts)."""
        ...

    def count_citizen_records(
        self, number: str, *, categories: Collection[str], since: datetime
    ) -> int:
        """Records for this citizen number, of one of ``categories``, created at/after ``since``."""
        ...

    def open_call(self, entry: CallEntry) -> bool:
        """Log a call's arrival; False (nothing written) if its call id is logged already."""
        ...

    def remember_nonce(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record a signed request's nonce until ``expires_at`` (epoch s); False if it is
        already remembered (a replay). Forgets expired nonces as it goes."""
        ...

    def log_access(self, entry: AccessEntry) -> None:
        """Audit one read of a confidential record: reads by the same principal of the same
        record and view within a minute are one row with a count (a screen polling every second
        writes a row a minute, not sixty, and never touches the record's own events)."""
        ...

    def access_log(self, handoff_id: str) -> builtins.list[AccessRow]: ...

    def get_call(self, call_id: str) -> CallEntry | None: ...

    def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None:
        """Remember (or replace) the JSON state of a transfer, conference or reminder machine;
        durable on return."""
        ...

    def machines(
        self, kind: str, *, done: bool, limit: int | None = None
    ) -> builtins.list[tuple[str, str]]:
        """``(id, JSON state)`` of the live (or finished) machines of ``kind``, oldest first;
        with ``limit``, only the most recently moved ones."""
        ...

    def prune_machines(self, kind: str, finished_before: datetime) -> int:
        """Forget finished machines last moved before ``finished_before``; how many."""
        ...

    def batch(self) -> AbstractContextManager[Group]:
        """One transaction (one commit) around the writes made inside it. Raises StoreError if
        it cannot begin. SQLite: each write is a savepoint, and succeeds or fails on its own.
        PostgreSQL: no savepoints (each would cost two more round trips); the first write that
        fails marks the group failed, and at its end the group is rolled back with
        ``GroupUndone``, for the writer to make each write again on its own."""
        ...

    def reopen(self) -> HandoffStore:
        """Another connection to the same store, for work in a worker thread (a connection
        belongs to the thread that opened it); the caller closes it."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AccessEntry:
    handoff_id: str
    principal: str
    role: str
    view: str  # record | list
    full: bool  # saw the numbers and words in full
    at: datetime


@dataclass(frozen=True, slots=True)
class AccessRow:
    principal: str
    role: str
    view: str
    full: bool
    first_at: datetime
    last_at: datetime
    reads: int
