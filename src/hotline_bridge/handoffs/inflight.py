"""Machines in flight kept in the store, so a restart finishes what the last process started.

A transfer waiting for the partner, a three-way room, a duty-line reminder waiting for its next
attempt: each is a pure, frozen state. The keeper writes that state as JSON on every move (before
any command it asked for leaves), forgets it when the machine is terminal, and hands the living
ones back after a restart, where the owning service reconciles them with the PBX's own state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import pydantic_core
import structlog
from pydantic import TypeAdapter, ValidationError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class InflightStore(Protocol):
    def keep_inflight(self, kind: str, item_id: str, state: str) -> None: ...

    def drop_inflight(self, kind: str, item_id: str) -> None: ...

    def inflight(self, kind: str) -> list[tuple[str, str]]: ...


class Keeper(Generic[T]):
    """The stored states of one kind of machine (``kind`` names the rows: "carry_transfer")."""

    def __init__(
        self,
        store: InflightStore,
        kind: str,
        type_: type[T],
        *,
        done: Callable[[T], bool],
        ident: Callable[[T], str],
    ) -> None:
        self._store = store
        self.kind = kind
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)
        self._done = done
        self._ident = ident

    def encode(self, item: T) -> str:
        # "strings": a due_at of +inf (nothing pending) survives the round trip.
        return pydantic_core.to_json(item, inf_nan_mode="strings").decode()

    def decode(self, raw: str) -> T:
        return self._adapter.validate_json(raw)

    def keep(self, item: T) -> None:
        """Write the state (or forget it once terminal). Raises if the store cannot: a new
        machine whose state is not kept must not send its first command."""
        if self._done(item):
            self._store.drop_inflight(self.kind, self._ident(item))
        else:
            self._store.keep_inflight(self.kind, self._ident(item), self.encode(item))

    def moved(self, item: T) -> None:
        """Keep a later state. The machine goes on if the store fails (logged): the PBX is
        already acting, and the next move or the restart's reconcile writes it again."""
        try:
            self.keep(item)
        except Exception as exc:
            log.error("in-flight state not kept", kind=self.kind, error=str(exc))

    def load(self) -> list[T]:
        """The machines a previous process left in flight; a row that no longer decodes (a
        state written by another version) is logged and left in the store for a person."""
        items = []
        for item_id, raw in self._store.inflight(self.kind):
            try:
                items.append(self.decode(raw))
            except (ValidationError, ValueError) as exc:
                log.error("in-flight state unreadable", kind=self.kind, id=item_id, error=str(exc))
        return items
