"""Receives the partner site's pushes: new handoffs and their handling events, signed.

The same push twice is one record (``create`` of an identical snapshot is a no-op; an event is
recognised by the partner's sequence number), so the sender may retry freely. Refusals are
logged (who, why) and answered with a reason; nothing the partner sends is pushed back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from hotline_bridge.config.settings import PartnerSettings
from hotline_bridge.core.errors import field_errors
from hotline_bridge.handoffs.model import (
    Actor,
    ActorKind,
    EventKind,
    HandoffEvent,
    HandoffRecord,
)
from hotline_bridge.handoffs.store import DuplicateHandoff, HandoffStore, UnknownHandoff
from hotline_bridge.partners.link import PUSH_PATH
from hotline_bridge.partners.signing import Nonces, SignatureError, verify
from hotline_bridge.web.http import error_response, json_ok, read_body
from hotline_bridge.web.openapi import described

log = structlog.get_logger(__name__)


class PartnerPush(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["handoff.created", "handoff.event"]
    handoff_id: str
    payload: dict[str, Any]


class Receiver:
    def __init__(
        self,
        settings: PartnerSettings,
        store: HandoffStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._store = store
        self._clock = clock
        self._keys = {k: v.get_secret_value() for k, v in settings.accept_keys.items()}
        # Seen nonces live in the store: a restarted bridge still refuses a replay.
        self._nonces: Nonces = store
        self.accepted = 0
        # Told (handoff id, push kind) after a push is stored: the live streams' screen update.
        self.on_recorded: Callable[[str, str], None] | None = None

    def receive(self, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` for one push. Pure but for the store and the nonce cache."""
        try:
            verify(
                "POST",
                PUSH_PATH,
                raw,
                headers,
                keys=self._keys,
                now=self._clock(),
                window_s=self._s.replay_window_s,
                nonces=self._nonces,
            )
        except SignatureError as exc:
            log.warning(
                "partner push refused", reason=str(exc), key_id=headers.get("X-Hotline-Key-Id", "")
            )
            return 401, {"reason": f"refused: {exc}"}
        try:
            push = PartnerPush.model_validate_json(raw)
            if push.kind == "handoff.created":
                answer = self._created(push)
            else:
                answer = self._event(push)
        except ValidationError as exc:
            log.warning("partner push invalid", errors=len(exc.errors()))
            return 422, {"reason": "invalid push", "details": field_errors(exc)}
        if answer[0] == 201 and self.on_recorded is not None:
            try:
                self.on_recorded(push.handoff_id, push.kind)
            except Exception:  # an observer must never fail a push the store has accepted
                log.exception("partner push observer failed", handoff_id=push.handoff_id)
        return answer

    def _created(self, push: PartnerPush) -> tuple[int, dict[str, Any]]:
        record = self._theirs(HandoffRecord.model_validate(push.payload))
        if record.id != push.handoff_id:
            return 422, {"reason": "handoff_id does not match the record"}
        if record.snapshot.target != self._own_site():
            return 422, {"reason": f"record is addressed to {record.snapshot.target}"}
        try:
            created = self._store.create(record, outbox=False)  # never bounce it back
        except DuplicateHandoff:
            return 409, {"reason": "a different record with this id exists"}
        if created:
            self.accepted += 1
            log.info("partner handoff received", handoff_id=record.id)
        return (201 if created else 200), {"handoff_id": record.id, "duplicate": not created}

    def _event(self, push: PartnerPush) -> tuple[int, dict[str, Any]]:
        if push.payload.get("handoff_id") != push.handoff_id:
            return 422, {"reason": "handoff_id does not match the event's"}
        sent = HandoffEvent.model_validate(push.payload.get("event"))
        ref = str(sent.seq)
        record = self._store.get(push.handoff_id)
        if record is None:
            # Its handoff.created push has not landed yet: the sender retries.
            return 409, {"reason": f"unknown handoff {push.handoff_id}; retry later"}
        allowed = PARTNER_KINDS_ON_OURS if self._we_sent(record) else PARTNER_KINDS_ON_THEIRS
        if sent.kind not in allowed:
            # Permanent (422): the link marks it rejected rather than retrying it forever.
            return 422, {"reason": f"a partner may not record {sent.kind.value} on this handoff"}
        if any(e.data.get("partner_seq") == ref for e in record.events):
            return 200, {"handoff_id": record.id, "duplicate": True}
        event = sent.model_copy(
            update={
                "seq": 0,
                "actor": self._tagged(sent.actor),
                "data": {**sent.data, "partner_seq": ref},
            }
        )
        try:
            self._store.append(record.id, HandoffEvent.model_validate(event.model_dump()))
        except UnknownHandoff:
            return 409, {"reason": f"unknown handoff {push.handoff_id}; retry later"}
        log.info("partner event received", handoff_id=record.id, kind=sent.kind.value)
        return 201, {"handoff_id": record.id, "duplicate": False}

    def _own_site(self) -> str:
        return "110" if self._s.site == "12345" else "12345"

    def _we_sent(self, record: HandoffRecord) -> bool:
        return record.snapshot.direction.source.value == self._own_site()

    def _tagged(self, actor: Actor) -> Actor:
        """The partner's people are not ours: agent 1001 at 110 is ``110:agent:1001`` here, so
        our own agent 1001 never counts as its author."""
        if actor.kind is ActorKind.PARTNER:
            return actor
        return Actor(
            kind=ActorKind.PARTNER, id=f"{self._s.site}:{actor.kind.value}:{actor.id}"[:64]
        )

    def _theirs(self, record: HandoffRecord) -> HandoffRecord:
        """A received record with every actor tagged with the sending site (deterministic, so a
        re-pushed record still equals the one stored)."""
        snapshot = record.snapshot.model_copy(
            update={"created_by": self._tagged(record.snapshot.created_by)}
        )
        events = tuple(e.model_copy(update={"actor": self._tagged(e.actor)}) for e in record.events)
        return HandoffRecord(id=record.id, snapshot=snapshot, events=events)


# What a partner may append, by who sent the record. On a record WE sent, the partner handles
# the matter: 签收, 退回, progress, notes, 督办 by its supervisors, 回访 and 办结. On a record THEY
# sent, we handle it: they may only add notes and urge it (督办). Never an audit event, a
# unit's or a time limit's (this platform's own business), nor anything telephony.
PARTNER_KINDS_ON_OURS = frozenset(
    {
        EventKind.ACKNOWLEDGED,
        EventKind.RETURNED,
        EventKind.STATUS_CHANGED,
        EventKind.NOTE,
        EventKind.SUPERVISED,
        EventKind.FOLLOW_UP,
        EventKind.CLOSED,
    }
)
PARTNER_KINDS_ON_THEIRS = frozenset({EventKind.NOTE, EventKind.SUPERVISED})

RECEIVER = web.AppKey("partner_receiver", Receiver)


@described(
    "Push from the partner site (HMAC-signed): a new handoff or one of its events",
    body=PartnerPush,
    ok=201,
    errors=(400, 401, 409, 413, 422),
    public=True,
    other={200: "the same push again: nothing changed (duplicate: true)"},
)
async def receive_push(request: web.Request) -> web.Response:
    raw = await read_body(request)  # 413/408 through the middleware, like every route
    status, body = request.app[RECEIVER].receive(raw, dict(request.headers))
    if status >= 400:
        return error_response(status, body["reason"], body.get("details"))
    return json_ok(body, status=status)
