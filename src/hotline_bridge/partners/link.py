"""Drains the handoff outbox to the partner site: signed pushes, retried until acknowledged.

One loop, one item at a time in outbox order, so a handoff's events never overtake the handoff
itself: when an item fails, later items of the same handoff wait for the next round. Nothing is
dropped: a refused push (4xx) is retried too, at the longest interval, and counted as
``rejected`` so an alert brings a person to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import aiohttp
import structlog

from hotline_bridge.config.settings import PartnerSettings
from hotline_bridge.handoffs.store import HandoffStore, OutboxItem
from hotline_bridge.partners.signing import sign

log = structlog.get_logger(__name__)

PUSH_PATH = "/v1/partner/handoffs"


def push_body(item: OutboxItem) -> bytes:
    """What travels: the outbox item's kind, its handoff id and its JSON payload."""
    return json.dumps(
        {"kind": item.kind, "handoff_id": item.handoff_id, "payload": json.loads(item.payload)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


MAX_HANDOFFS_PER_ROUND = 100
CLAIM_PUSHES = 4  # a claim's lease covers this many push timeouts ...
CLAIM_MARGIN_S = 5.0  # ... and this much more


class PushOutcome(StrEnum):
    """What became of one attempt to push a handoff outbox item to the partner platform."""

    DELIVERED = "delivered"  # the partner acknowledged it; the outbox marks it delivered
    FAILED = "failed"  # network error, timeout or 5xx; the outbox retries it later
    REJECTED = "rejected"  # the partner refused it (4xx); retrying will not help; a person looks


def classify(status: int) -> PushOutcome:
    if 200 <= status < 300:
        return PushOutcome.DELIVERED
    if status in (408, 409, 425, 429) or status >= 500:
        return PushOutcome.FAILED  # the partner may take it later (409: its record not there yet)
    return PushOutcome.REJECTED


def next_attempt(attempts: int, outcome: PushOutcome, s: PartnerSettings) -> float:
    """Seconds until the next try: exponential with jitter; refusals wait the longest."""
    if outcome is PushOutcome.REJECTED:
        return s.retry_max_s
    delay = min(s.retry_max_s, s.retry_initial_s * 2.0 ** min(attempts, 16))
    return delay * random.uniform(0.8, 1.2)


class PartnerLink:
    def __init__(
        self,
        settings: PartnerSettings,
        store: HandoffStore,
        on_push: Callable[[PushOutcome], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._store = store
        self.on_push = on_push  # one call per push attempt (metrics)
        # (handoff id, outbox kind) of each item the partner acknowledged (notices' receipts).
        self.on_delivered: Callable[[str, str], None] | None = None
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self.delivered = 0

    def kick(self) -> None:
        """Something was written to the outbox: push now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._s.push_timeout_s)
        # HTTPS to the partner is verified: against its CA when configured, else the system's.
        tls = ssl.create_default_context(cafile=str(self._s.ca_file) if self._s.ca_file else None)
        connector = aiohttp.TCPConnector(ssl=tls)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def drain_once(self) -> int:
        """Push every item that is due; return how many were delivered."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        delivered = 0
        # One handoff's rows per claim, for a short lease: a drainer killed between a push and
        # its mark leaves a claim that lapses in seconds, not minutes (the restarted bridge, or
        # another replica, pushes it again; the partner recognises the retry).
        lease_s = CLAIM_PUSHES * self._s.push_timeout_s + CLAIM_MARGIN_S
        for _ in range(MAX_HANDOFFS_PER_ROUND):
            items = self._store.outbox_claim(1, now=now, lease_s=lease_s)
            if not items:
                break
            for item in items:
                outcome = await self._push(item)
                if self.on_push is not None:
                    self.on_push(outcome)
                if outcome is PushOutcome.DELIVERED:
                    self._store.outbox_mark_delivered(item.id)
                    delivered += 1
                    if self.on_delivered is not None:
                        self.on_delivered(item.handoff_id, item.kind)
                    continue
                delay = next_attempt(item.attempts, outcome, self._s)
                self._store.outbox_mark_failed(item.id, now + timedelta(seconds=delay))
                break  # the rest of this handoff waits: its pushes keep their order
        self.delivered += delivered
        return delivered

    async def _run(self) -> None:
        while True:
            try:
                await self.drain_once()
            except Exception:
                log.exception("partner link round failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._s.poll_interval_s)

    async def _push(self, item: OutboxItem) -> PushOutcome:
        assert self._session is not None, "start() first"
        body = push_body(item)
        headers = sign(
            "POST",
            PUSH_PATH,
            body,
            key_id=self._s.key_id,
            secret=self._s.secret.get_secret_value(),
            now=self._clock(),
        )
        headers["Content-Type"] = "application/json"
        try:
            async with self._session.post(
                self._s.base_url + PUSH_PATH, data=body, headers=headers
            ) as resp:
                outcome = classify(resp.status)
                if outcome is not PushOutcome.DELIVERED:
                    reason = (await resp.text())[:300]
                    log.warning(
                        "handoff push not delivered",
                        handoff_id=item.handoff_id,
                        kind=item.kind,
                        status=resp.status,
                        outcome=outcome.value,
                        attempts=item.attempts + 1,
                        reason=reason,
                    )
                return outcome
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info(
                "partner unreachable; will retry",
                handoff_id=item.handoff_id,
                attempts=item.attempts + 1,
                error=type(exc).__name__,
            )
            return PushOutcome.FAILED
