"""The ``HandoffRecorder`` the transfer and three-way services write through, over the store.

``open`` turns a hotkey press's ``handoff`` payload into a record and stores it durably before
any AMI action; ``note`` appends the machines' timeline entries as events; ``url`` is what the
partner fetches (Call-Info). ``open_recorder(settings)`` builds it from configuration and is
where a broken catalog or store stops start-up with a ``ConfigError``.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from pydantic import ValidationError

from hotline_bridge.calls.model import LiveCall
from hotline_bridge.catalog import Catalog, CatalogError, Platform, load_catalog
from hotline_bridge.config.settings import ConfigError, Settings
from hotline_bridge.core.errors import Invalid, field_errors
from hotline_bridge.core.outcomes import outcome_of_dialstatus, outcome_of_originate_reason
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.directory.model import DialPlanEntry
from hotline_bridge.handoffs.ids import new_handoff_id
from hotline_bridge.handoffs.intake import (
    HandoffInput,
    HandoffInputError,
    new_handoff,
)
from hotline_bridge.handoffs.model import (
    Actor,
    CallRef,
    Direction,
    EventKind,
    HandoffEvent,
    HandoffKind,
)
from hotline_bridge.handoffs.service import HandoffService
from hotline_bridge.handoffs.store import (
    CallEntry,
    HandoffStore,
    MachineRow,
    StoreError,
    open_store,
    store_name,
)
from hotline_bridge.handoffs.store.aside import InlineReads, ReadAside, StoreReads
from hotline_bridge.handoffs.store.behind import TurnWrites, WriteBehind
from hotline_bridge.handoffs.store.sqlite import Checkpointer, SqliteHandoffStore

log = structlog.get_logger(__name__)

_KNOWN = frozenset(j.value for j in Jurisdiction) - {Jurisdiction.UNKNOWN.value}
# Calls whose jurisdiction is remembered in memory (older ones are read from the call log):
# hours of calls at 20 a second, a few MB.
_CALLS_REMEMBERED = 200_000
# Whole entries are kept for the consoles, which read them while the call waits in the queue
# and is answered (at most 300 s: 15,000 calls at 50/s); older ones are read from the store.
_ENTRIES_REMEMBERED = 20_000

# The machines' timeline names (transfers.machine, conferences.machine) → record event kinds.
# Anything not listed is kept as ``call_progress`` with the name in ``data.what``.
_EVENT_OF: Mapping[str, EventKind] = {
    "carry_transfer_requested": EventKind.TRANSFER_REQUESTED,
    "three_way_requested": EventKind.TRANSFER_REQUESTED,
    "partner_ringing": EventKind.PARTNER_RINGING,
    "partner_answered": EventKind.PARTNER_ANSWERED,
    "partner_joined": EventKind.PARTNER_ANSWERED,  # a three-way partner answers by joining
    "partner_failed": EventKind.PARTNER_FAILED,
    "citizen_returned": EventKind.CITIZEN_RETURNED,
    "three_way": EventKind.THREE_WAY_STARTED,
    "agent_left_room": EventKind.AGENT_LEFT,
    "ended": EventKind.THREE_WAY_ENDED,
}


def event_for(what: str, detail: str, at: datetime) -> HandoffEvent:
    """The record event for one machine timeline entry. Pure."""
    kind = _EVENT_OF.get(what, EventKind.CALL_PROGRESS)
    data: dict[str, str] = {}
    if kind is EventKind.CALL_PROGRESS:
        data["what"] = what
    if kind is EventKind.PARTNER_FAILED:
        # Carry transfers report a DIALSTATUS, three-way calls an OriginateResponse reason.
        code = detail.strip()
        outcome = (
            outcome_of_originate_reason(code) if code.isdigit() else outcome_of_dialstatus(code)
        )
        data["outcome"] = outcome.value
    if kind is EventKind.CITIZEN_RETURNED and detail:
        data["agent_id"] = detail
    elif detail:
        data["detail"] = detail[:2000]
    return HandoffEvent(at=at, actor=Actor.system(), kind=kind, data=data)


class StoreRecorder:
    """Implements ``recorder.HandoffRecorder`` over a :class:`HandoffStore`."""

    def __init__(
        self,
        store: HandoffStore,
        catalog: Catalog,
        *,
        site: Platform,
        public_url: str,
        behind: WriteBehind | TurnWrites | None = None,
        read: StoreReads | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.site = site
        self._public_url = public_url.rstrip("/")
        # Writes no command waits for, grouped: off the loop on PostgreSQL, at the end of the
        # loop turn on SQLite (see store.behind).
        self.behind = behind
        # Reads a hook awaits: off the loop on PostgreSQL, inline on SQLite (see store.aside).
        self.read: StoreReads = read or InlineReads(store)
        # The jurisdiction of each call this process logged (entry hook), newest last: the
        # hotkey routes by it without reading the call log back (a round trip on PostgreSQL).
        self._jurisdictions: OrderedDict[str, str] = OrderedDict()
        self._entries: OrderedDict[str, CallEntry] = OrderedDict()

    def later(self, work: Callable[[HandoffStore], None]) -> None:
        """A write nothing waits for: grouped with others (``behind``) if there is a group to
        join, else now. Either way a failure is logged, never raised into the machine driving a
        live call."""
        if self.behind is not None and self.behind.submit(work):
            return
        try:
            work(self.store)
        except (StoreError, ValidationError, OSError) as exc:
            log.error("deferred store write failed", error=str(exc))

    async def settled(self) -> None:
        """Wait until the writes queued so far are in the store (before a read that shows
        them, e.g. ``GET /v1/handoffs/{id}``)."""
        if self.behind is not None:
            await self.behind.settle()

    def service(self, target: str) -> HandoffService:
        """The record API's service over the same store (``target``: the partner's key)."""
        return HandoffService(self.store, self.catalog, site=self.site, target=target)

    def open(
        self,
        *,
        kind: str,
        call: LiveCall,
        target: str,
        handoff: HandoffInput,
        now: float,
        desk: DialPlanEntry | None = None,
        handoff_id: str | None = None,
        machine: MachineRow | None = None,
    ) -> str:
        created: dict[str, str] = {}
        if desk is not None:
            # The matter's jurisdiction is the one routed by: the agent's override, else the
            # entry hook's; the created event keeps which desk was dialled and why.
            if handoff.jurisdiction is Jurisdiction.UNKNOWN and desk.jurisdiction in _KNOWN:
                handoff = handoff.model_copy(
                    update={"jurisdiction": Jurisdiction(desk.jurisdiction)}
                )
            created = {
                "desk": desk.routed_as,
                "desk_number": desk.number,
                "call_jurisdiction": desk.jurisdiction,
                "jurisdiction_override": "yes" if desk.overridden else "no",
            }
        try:
            record = new_handoff(
                handoff,
                handoff_id=handoff_id or new_handoff_id(int(now * 1000)),
                kind=HandoffKind(kind),
                direction=Direction.from_site(self.site),
                target=target,
                citizen_number=_carried_number(call.citizen_number),
                created_by=Actor.agent(call.agent_id),
                catalog=self.catalog,
                now=_at(now),
                call=CallRef(
                    call_id=call.call_id,
                    linked_id=call.linkedid or None,
                    answered_at=_at(call.since) if call.since else None,
                ),
                created_data=created,
            )
        except ValidationError as exc:
            raise Invalid("invalid handoff: " + _describe(field_errors(exc))) from None
        except HandoffInputError as exc:
            raise Invalid("invalid handoff: " + _describe(exc.problems)) from None
        # Only a linked platform gets the record pushed; a plain line reads it by reference.
        self.store.create(record, outbox=desk is None or desk.pushes_record, machine=machine)
        return record.id

    def log_call(self, entry: CallEntry) -> None:
        """Log a call as the dialplan's hook saw it arrive: remembered here at once, written to
        the call log by :meth:`later` (off the loop on PostgreSQL). The first entry of a call
        wins, as in the store (``open_call`` ignores a second)."""
        known = self._jurisdictions
        if entry.call_id not in known:
            known[entry.call_id] = entry.jurisdiction.value
            while len(known) > _CALLS_REMEMBERED:
                known.popitem(last=False)
            entries = self._entries
            entries[entry.call_id] = entry
            while len(entries) > _ENTRIES_REMEMBERED:
                entries.popitem(last=False)

        def write(store: HandoffStore) -> None:
            try:
                store.open_call(entry)
            except (StoreError, sqlite3.Error, ValueError, OSError) as exc:
                log.error("call log not written", call_id=entry.call_id, error=str(exc))

        self.later(write)

    def call_entry(self, call_id: str) -> CallEntry | None:
        """The call as its entry hook logged it: from memory for the calls this process logged
        recently (no store round trip on the loop), else from the call log. Raises StoreError."""
        entry = self._entries.get(call_id)
        return entry if entry is not None else self.store.get_call(call_id)

    def jurisdiction(self, call_id: str) -> str:
        known = self._jurisdictions.get(call_id)
        if known is not None:
            return known
        try:
            entry = self.store.get_call(call_id)
        except StoreError as exc:
            # Routing goes on with the city-wide desk rather than refusing the citizen's transfer.
            log.error("call log unreadable: routing as unknown", call_id=call_id, error=str(exc))
            return Jurisdiction.UNKNOWN.value
        return entry.jurisdiction.value if entry is not None else Jurisdiction.UNKNOWN.value

    def note(self, handoff_id: str, what: str, detail: str, now: float) -> None:
        # The call goes on whatever happens here: a note that cannot be written is logged loudly,
        # never raised into the machine that is driving the live call.
        try:
            event = event_for(what, detail, _at(now))
        except ValidationError as exc:
            log.error(
                "handoff event not recorded", handoff_id=handoff_id, what=what, error=str(exc)
            )
            return

        def write(store: HandoffStore) -> None:
            try:
                store.append(handoff_id, event)
            except (StoreError, ValidationError, OSError) as exc:
                log.error(
                    "handoff event not recorded", handoff_id=handoff_id, what=what, error=str(exc)
                )

        self.later(write)

    def url(self, handoff_id: str) -> str:
        return f"{self._public_url}/v1/handoffs/{handoff_id}"


@contextmanager
def open_recorder(
    settings: Settings, wrap: Callable[[HandoffStore], HandoffStore] | None = None
) -> Iterator[StoreRecorder]:
    """The recorder for this site's configuration; ``ConfigError`` if catalog or store is bad.
    ``wrap``: a view of the store the recorder and its services use (one PBX's machines)."""
    try:
        catalog = load_catalog(settings.bridge.catalog_path)
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None
    try:
        store = open_store(settings)
    except (StoreError, OSError) as exc:
        raise ConfigError(f"handoff store {store_name(settings)}: {exc}") from None
    view = store if wrap is None else wrap(store)
    behind: WriteBehind | TurnWrites | None = None
    reads: ReadAside | None = None
    checkpoints: Checkpointer | None = None
    if isinstance(store, SqliteHandoffStore) and str(store.path) != ":memory:":
        # The WAL's checkpoints (each an fsync) leave the loop for their own thread.
        store.leave_checkpoints()
        checkpoints = Checkpointer(store.path).start()
    try:
        if settings.store.dsn is not None:
            # PostgreSQL: every commit is a round trip and a WAL flush: off the loop.
            try:
                behind = WriteBehind(view)
            except (StoreError, OSError) as exc:
                raise ConfigError(f"handoff store {store_name(settings)}: {exc}") from None
            reads = ReadAside(view)
        else:
            # SQLite: local and cheap (WAL, synchronous=NORMAL), but one commit per loop turn
            # rather than per write.
            behind = TurnWrites(view)
        yield StoreRecorder(
            view,
            catalog,
            site=Platform(settings.bridge.site),
            public_url=settings.http.public_url,
            behind=behind,
            read=reads,
        )
    finally:
        # The queued writes first: a reader's connection failing to close must not lose them.
        if behind is not None:
            behind.close()
        if reads is not None:
            reads.close()
        if checkpoints is not None:
            checkpoints.stop()
        store.close()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _carried_number(number: str) -> str | None:
    # Caller IDs such as "anonymous" or "" carry no number; the record keeps none then.
    n = number.strip()
    return n if n.lstrip("+").isdigit() and 3 <= len(n.lstrip("+")) <= 20 else None


def _describe(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
