"""State machines kept in the store, so a restart finishes what the last process started.

A transfer waiting for the partner, a three-way room, a duty-line reminder waiting for its next
attempt: each is a pure, frozen state. The keeper writes that state as JSON on every move (before
any command it asked for leaves), marks it finished when the machine is terminal, and hands the
machines back after a restart: the live ones to be reconciled with the PBX's own state, the
recently finished ones so ``GET`` on their ids still answers. Finished rows leave after an hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import pydantic_core
import structlog
from pydantic import TypeAdapter, ValidationError

from hotline_bridge.handoffs.store.base import MachineRow

log = structlog.get_logger(__name__)


class Machine(Protocol):
    """What the keeper needs of a machine's state: transfers, conferences and reminders all say
    their id and whether they are done."""

    @property
    def id(self) -> str: ...

    @property
    def done(self) -> bool: ...


T = TypeVar("T", bound=Machine)

KEEP_FINISHED_S = 3600.0  # finished machines answer GET this long after a restart
PRUNE_EVERY_S = 60.0


class MachineStore(Protocol):
    def keep_machine(self, kind: str, item_id: str, state: str, *, done: bool) -> None: ...

    def machines(
        self, kind: str, *, done: bool, limit: int | None = None
    ) -> list[tuple[str, str]]: ...

    def prune_machines(self, kind: str, finished_before: datetime) -> int: ...


class Keeper(Generic[T]):
    """The stored states of one kind of machine (``kind`` names the rows: "carry_transfer")."""

    def __init__(
        self,
        store: MachineStore,
        kind: str,
        type_: type[T],
        later: Callable[[Callable[[Any], None]], None] | None = None,
    ) -> None:
        self._store = store
        # Where later states go when nothing waits for them (``StoreRecorder.later``: off the
        # loop on PostgreSQL); None: written at once. The first state is always written at once.
        self._later = later
        self.kind = kind
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)
        self._pruned_at = 0.0

    def encode(self, item: T) -> str:
        # "strings": a due_at of +inf (nothing pending) survives the round trip.
        return pydantic_core.to_json(item, inf_nan_mode="strings").decode()

    def decode(self, raw: str) -> T:
        return self._adapter.validate_json(raw)

    def row(self, item: T) -> MachineRow:
        """The state as the store keeps it (for a write that carries it, e.g. a record's)."""
        return MachineRow(self.kind, item.id, self.encode(item), item.done)

    def keep(self, item: T) -> None:
        """Write the state. Raises if the store cannot: a new machine whose state is not kept
        must not send its first command."""
        self._store.keep_machine(self.kind, item.id, self.encode(item), done=item.done)

    def moved(self, item: T) -> None:
        """Keep a later state. The machine goes on if the store fails (logged): the PBX is
        already acting, and the next move or the restart's reconcile writes it again."""
        if self._later is not None:
            state, kind, item_id, done = self.encode(item), self.kind, item.id, item.done

            def write(store: Any) -> None:
                # The write-behind's own connection: a view of the same store (same kinds).
                store.keep_machine(kind, item_id, state, done=done)

            self._later(write)
            return
        try:
            self.keep(item)
        except Exception as exc:
            log.error("machine state not kept", kind=self.kind, error=str(exc))

    def live(self) -> list[T]:
        """The machines a previous process left in flight."""
        return self._decoded(self._store.machines(self.kind, done=False))

    def finished(self, limit: int) -> list[T]:
        """The most recently finished machines (for ``GET`` after a restart)."""
        return self._decoded(self._store.machines(self.kind, done=True, limit=limit))

    def prune(self, now: float) -> None:
        """Forget finished machines older than an hour (at most once a minute; never raises)."""
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        before = datetime.fromtimestamp(now, UTC) - timedelta(seconds=KEEP_FINISHED_S)
        try:
            self._store.prune_machines(self.kind, before)
        except Exception as exc:
            log.error("finished machines not pruned", kind=self.kind, error=str(exc))

    def _decoded(self, rows: list[tuple[str, str]]) -> list[T]:
        # A row that no longer decodes (written by another version) is logged and left in the
        # store for a person; it never stops the bridge from starting.
        items = []
        for item_id, raw in rows:
            try:
                items.append(self.decode(raw))
            except (ValidationError, ValueError) as exc:
                log.error("machine state unreadable", kind=self.kind, id=item_id, error=str(exc))
        return items
