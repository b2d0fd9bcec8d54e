"""What goes on the streams: the PBX's queue events per agent, handoff progress, screen pops,
partner receipts, and every agent's state for the wallboard.

Everything here is an observer: it is told (AMI queue events, machine moves, partner pushes
stored) and publishes to the hub; nothing it does changes a call. A handed-over call's record pops
on the agent's stream when the queue offers the call (``AgentCalled``, while the phone rings),
joined through the call log the receiving hook wrote (``X-Handoff-Id`` → record).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from hotline_bridge.calls.model import endpoint_of
from hotline_bridge.conferences.machine import Conference
from hotline_bridge.config.settings import Settings
from hotline_bridge.core.events import PbxEvent
from hotline_bridge.core.principal import Principal
from hotline_bridge.handoffs.model import ActorKind
from hotline_bridge.handoffs.store import CallEntry, HandoffStore, StoreError
from hotline_bridge.handoffs.views import access_entry, read_is_audited, record_view
from hotline_bridge.streams.hub import StreamHub
from hotline_bridge.transfers.machine import Transfer

log = structlog.get_logger(__name__)

WALLBOARD = "wallboard"
_QUEUE_EVENTS = frozenset({"AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer"})


def agent_topic(agent_id: str) -> str:
    return f"agent:{agent_id}"


@dataclass(frozen=True, slots=True)
class AgentState:
    state: str  # idle | ringing | on_call
    since: float
    call_id: str = ""


class StreamService:
    def __init__(
        self,
        hub: StreamHub,
        settings: Settings,
        store: HandoffStore,
        clock: Callable[[], float] = time.time,
        call_entry: Callable[[str], CallEntry | None] | None = None,
    ) -> None:
        """``call_entry``: how a call's entry-hook facts are looked up (the recorder's, which
        remembers the calls it logged: no store read on the loop per queue event); default: the
        store's call log."""
        self.hub = hub
        self._store = store
        self._call_entry = call_entry or store.get_call
        self._clock = clock
        self._by_endpoint = {a.endpoint: a.id for a in settings.agents}
        now = clock()
        self.agents: dict[str, AgentState] = {
            a.id: AgentState("idle", now) for a in settings.agents
        }

    # -- PBX feedback (registered like any capability; it only observes) ----------------------

    def on_event(self, event: PbxEvent) -> None:
        name = event.get("Event", "")
        if name not in _QUEUE_EVENTS:
            return
        agent = self._by_endpoint.get(endpoint_of(event.get("DestChannel", "")))
        if agent is None:
            return
        call_id = event.get("Uniqueid", "")
        number = event.get("CallerIDNum", "")
        call: dict[str, Any] = {
            "call_id": call_id,
            "queue": event.get("Queue", ""),
            # The agent is about to hear this number: its own stream shows it whole.
            "citizen_number": number,
        }
        if name in ("AgentCalled", "AgentConnect"):
            call.update(self._entry_facts(call_id))
        if name == "AgentCalled":
            self._publish_agent(agent, "call_offered", call)
            self._set_state(agent, "ringing", call_id)
            self._screen_pop(agent, call_id)
        elif name == "AgentConnect":
            self._publish_agent(agent, "call_answered", {**call, "hold_s": _int(event, "HoldTime")})
            self._set_state(agent, "on_call", call_id)
        elif name == "AgentComplete":
            data = {**call, "talk_s": _int(event, "TalkTime"), "ended_by": event.get("Reason", "")}
            self._publish_agent(agent, "call_ended", data)
            self._set_state(agent, "idle", "")
        elif name == "AgentRingNoAnswer":
            self._publish_agent(agent, "call_missed", {**call, "ring_ms": _int(event, "RingTime")})
            self._set_state(agent, "idle", "")

    def reconcile(self, live_uniqueids: set[str]) -> None:
        """After a reconnect the consoles reload: tell them, and forget calls that are gone."""
        for agent, st in list(self.agents.items()):
            if st.call_id and st.call_id not in live_uniqueids:
                self._set_state(agent, "idle", "")
        self.hub.publish(WALLBOARD, "reset", {"reason": "PBX link re-established"})

    def tick(self, now: float) -> None:
        """Nothing is timed here."""

    # -- handoffs on live calls ---------------------------------------------------------------

    def transfer_changed(self, old: Transfer, new: Transfer) -> None:
        self._handoff_moved("transfer", "transfer_id", old, new)

    def conference_changed(self, old: Conference, new: Conference) -> None:
        self._handoff_moved("three_way", "conference_id", old, new)

    def _handoff_moved(
        self, kind: str, id_key: str, old: Transfer | Conference, new: Transfer | Conference
    ) -> None:
        if old.state == new.state:
            return
        data = {
            id_key: new.id,
            "handoff_id": new.handoff_id,
            "call_id": new.call_id,
            "target": new.target,
            "state": str(new.state),
            "outcome": new.outcome.value if new.outcome else None,
        }
        self._publish_agent(new.agent_id, kind, data)
        self.hub.publish(WALLBOARD, kind, {**data, "agent_id": new.agent_id})

    def partner_recorded(self, handoff_id: str, kind: str) -> None:
        """The partner's receipt (签收), return (退回) or progress was stored on one of our
        records: it goes to the agent who created the record."""
        try:
            record = self._store.get(handoff_id)
        except StoreError as exc:
            log.error("stream: record unreadable", handoff_id=handoff_id, error=str(exc))
            return
        if record is None:
            return
        creator = record.snapshot.created_by
        if creator.kind is not ActorKind.AGENT:
            return
        last = record.events[-1] if record.events else None
        data = {
            "handoff_id": handoff_id,
            "push": kind,
            "event": last.kind.value if last is not None else None,
        }
        self._publish_agent(creator.id, "partner_event", data)

    # -- plumbing -----------------------------------------------------------------------------

    def _screen_pop(self, agent: str, call_id: str) -> None:
        try:
            entry = self._call_entry(call_id)
            if entry is None or entry.kind != "from_partner" or not entry.handoff_id:
                return
            record = self._store.get(entry.handoff_id)
            if record is None:
                return  # its push has not arrived (yet): the console may ask current-handoff
            principal = Principal(agent, "agent", agent_id=agent)
            if read_is_audited(record):
                self._store.log_access(
                    access_entry(
                        principal, record, False, datetime.fromtimestamp(self._clock(), UTC)
                    )
                )
        except StoreError as exc:
            log.error("stream: screen pop failed", call_id=call_id, error=str(exc))
            return
        view = record_view(record, principal)
        self._publish_agent(
            agent, "screen_pop", {"call_id": call_id, "urgency": entry.urgency, "record": view}
        )

    def _entry_facts(self, call_id: str) -> dict[str, Any]:
        """What the entry hook found (jurisdiction, nuisance flag), for the console's call view."""
        try:
            entry = self._call_entry(call_id)
        except StoreError as exc:
            log.error("stream: call log unreadable", call_id=call_id, error=str(exc))
            entry = None
        if entry is None:
            return {"jurisdiction": "unknown", "nuisance": None}
        return {"jurisdiction": entry.jurisdiction.value, "nuisance": entry.nuisance}

    def _publish_agent(self, agent: str, kind: str, data: dict[str, Any]) -> None:
        self.hub.publish(agent_topic(agent), kind, data)

    def _set_state(self, agent: str, state: str, call_id: str) -> None:
        now = self._clock()
        self.agents[agent] = AgentState(state, now, call_id)
        self.hub.publish(WALLBOARD, "agent_state", self.wallboard_entry(agent))

    def wallboard_entry(self, agent: str) -> dict[str, Any]:
        st = self.agents[agent]
        return {"agent_id": agent, "state": st.state, "since": st.since, "call_id": st.call_id}

    def wallboard(self) -> list[dict[str, Any]]:
        return [self.wallboard_entry(a) for a in sorted(self.agents)]


def _int(event: PbxEvent, key: str) -> int | None:
    value = event.get(key, "")
    return int(value) if value.isdigit() else None


__all__ = ["WALLBOARD", "StreamService", "agent_topic"]
