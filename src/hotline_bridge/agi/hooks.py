"""The two hooks, thin I/O around :mod:`.decisions`: ask the store, set the variables, log the call.

Order matters for the citizen: the store is *read* (one indexed query, or a few polls of
``get``; off the loop on PostgreSQL, ``store.aside``) before answering. Once the answer is set,
the call's entry goes to the recorder, which remembers it at once (the queue's events for this
call, a moment later, find it in memory) and writes the call log row with the writes nothing
waits for, so the write never delays the dialplan. A store that fails is logged and read as
"unknown": the variables are still set and the call still goes to the queue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import ValidationError

from hotline_bridge.agi.decisions import (
    NuisanceRule,
    call_facts,
    entry_decision,
    handoff_id_of,
    jurisdiction_for,
    receive_decision,
)
from hotline_bridge.agi.server import AgiCall, Route
from hotline_bridge.catalog.model import Catalog
from hotline_bridge.config.settings import AgiSettings, ConfigError
from hotline_bridge.core.privacy import mask_number
from hotline_bridge.handoffs.model import (
    HandoffRecord,
)
from hotline_bridge.handoffs.store import CallEntry, HandoffStore, StoreError
from hotline_bridge.handoffs.store.aside import InlineReads, StoreReads

log = structlog.get_logger(__name__)

_STORE_ERRORS = (StoreError, sqlite3.Error, ValidationError, ValueError, OSError)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgiHooks:
    def __init__(
        self,
        settings: AgiSettings,
        store: HandoffStore,
        catalog: Catalog,
        *,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        log_call: Callable[[CallEntry], None] | None = None,
        read: StoreReads | None = None,
    ) -> None:
        """``log_call``: where a call's entry goes once the hook has answered (the recorder's
        ``log_call``, which also remembers its jurisdiction for the hotkey); None: written to
        ``store`` here. ``read``: how the hooks read the store (off the loop on PostgreSQL,
        ``store.aside``); None: on the loop."""
        self._log_call_to = log_call
        self._read: StoreReads = read or InlineReads(store)
        unknown = [c for c in settings.nuisance_categories if catalog.category(c) is None]
        if unknown:
            raise ConfigError(
                f"agi.nuisance_categories: not in the matter catalog: {', '.join(unknown)}"
            )
        self._settings = settings
        self._store = store
        self._rule = NuisanceRule(
            tuple(settings.nuisance_categories),
            settings.nuisance_threshold,
            timedelta(days=settings.nuisance_window_days),
        )
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    def routes(self) -> dict[str, Route]:
        s = self._settings
        return {
            "entry": Route(self.entry, s.request_timeout_s),
            "receive": Route(self.receive, s.request_timeout_s + s.receive_wait_s),
        }

    # -- entry: a citizen calls the hotline ------------------------------------------------

    async def entry(self, call: AgiCall) -> None:
        facts = call_facts(call.env)
        jurisdiction = jurisdiction_for(
            facts.dialled,
            facts.endpoint,
            by_number=self._settings.jurisdiction_by_number,
            by_endpoint=self._settings.jurisdiction_by_endpoint,
        )
        now = self._clock()
        nuisance = self._rule.verdict(await self._nuisance_count(facts.caller, now))
        decision = entry_decision(facts, jurisdiction, nuisance, now)
        await call.set_variables(decision.variables)
        if decision.call is not None:
            self._log_call(decision.call)
        if nuisance == "yes":
            log.info("nuisance caller", caller=mask_number(facts.caller), call_id=facts.call_id)

    async def _nuisance_count(self, number: str | None, now: datetime) -> int | None:
        if number is None:
            return None
        categories, since = self._rule.categories, self._rule.since(now)
        try:
            return await self._read(
                lambda store: store.count_citizen_records(
                    number, categories=categories, since=since
                )
            )
        except _STORE_ERRORS as exc:
            log.error("nuisance lookup failed", caller=mask_number(number), error=str(exc))
            return None

    # -- receive: the partner hands a call over with X-Handoff-Id --------------------------

    async def receive(self, call: AgiCall) -> None:
        facts = call_facts(call.env)
        handoff_id = handoff_id_of(call.args[0]) if call.args else None
        record = await self._find(handoff_id) if handoff_id is not None else None
        if record is None:
            log.warning(
                "handed-over call without a known record; routed as normal",
                handoff_id=handoff_id or "",
                given=bool(call.args and call.args[0]),
                call_id=facts.call_id,
            )
        decision = receive_decision(facts, handoff_id, record, self._clock())
        await call.set_variables(decision.variables)
        if decision.call is not None:
            self._log_call(decision.call)

    async def _find(self, handoff_id: str) -> HandoffRecord | None:
        """The record, polling until ``receive_wait_s`` has passed: its push may be in flight."""
        deadline = self._monotonic() + self._settings.receive_wait_s
        while True:
            try:
                record = await self._read(lambda store: store.get(handoff_id))
            except _STORE_ERRORS as exc:
                log.error("handoff lookup failed", handoff_id=handoff_id, error=str(exc))
                return None
            left = deadline - self._monotonic()
            if record is not None or left <= 0:
                return record
            await self._sleep(min(self._settings.receive_poll_s, left))

    # -- once answered -----------------------------------------------------------------------

    def _log_call(self, entry: CallEntry) -> None:
        if self._log_call_to is not None:
            self._log_call_to(entry)
            return
        try:
            self._store.open_call(entry)
        except _STORE_ERRORS as exc:
            log.error("call log not written", call_id=entry.call_id, error=str(exc))
