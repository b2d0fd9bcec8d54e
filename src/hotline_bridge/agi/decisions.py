"""What the hooks decide, pure: jurisdiction, nuisance, urgency, and the variables they set.

Every value set on a channel comes from a fixed vocabulary (the jurisdiction enum, ``yes``/``no``/
``unknown``, a matter class, a handoff id of its own alphabet), so the dialplan can compare it in
``$[...]`` and use it in application arguments without further filtering.

Rules:

- **Jurisdiction** (属地) of a citizen call: ``[agi.jurisdiction_by_number]`` for the number
  dialled, else ``[agi.jurisdiction_by_endpoint]`` for the trunk it arrived on, else ``unknown``.
- **Nuisance** (滋扰治理): at least ``nuisance_threshold`` handoff records of a nuisance category
  (``police.harassment`` by default: agents file one for each malicious or repeated nuisance
  call, and it is reported to 110) for the caller's number within ``nuisance_window_days``.
  ``unknown`` when the caller sent no number or the store could not be asked. The flag informs;
  the dialplan does not refuse or demote the call (a nuisance caller may still report a fire).
- **Urgency** of a handed-over record: ``urgent`` when the matter endangers life, may turn
  violent, needs police dispatched first, or is a police matter (class ``police_matter`` or
  ``police_first_response``); else ``normal``; ``unknown`` when no record was found in time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from hotline_bridge.agi.protocol import endpoint_of, number_of
from hotline_bridge.catalog.model import MatterClass
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.handoffs.model import (
    HandoffRecord,
)
from hotline_bridge.handoffs.store import CallEntry

# Channel variables (the dialplan's contract; dialplans/README.md).
CALL_JURISDICTION = "CALL_JURISDICTION"
CALL_NUISANCE = "CALL_NUISANCE"
HANDOFF_RECEIVED_ID = "HANDOFF_RECEIVED_ID"
HANDOFF_URGENCY = "HANDOFF_URGENCY"
HANDOFF_CLASS = "HANDOFF_CLASS"
HANDOFF_JURISDICTION = "HANDOFF_JURISDICTION"

_HANDOFF_ID = re.compile(r"h-[0-9a-z]{26}")
_POLICE_CLASSES = frozenset({MatterClass.POLICE_MATTER, MatterClass.POLICE_FIRST_RESPONSE})

Nuisance = Literal["yes", "no", "unknown"]


class Urgency(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
    UNKNOWN = "unknown"  # no record found (in time): route as normal


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the AGI environment says about a call."""

    call_id: str  # agi_uniqueid
    caller: str | None  # a phone number, or None
    dialled: str
    endpoint: str | None


def call_facts(env: Mapping[str, str]) -> CallFacts:
    return CallFacts(
        call_id=env.get("agi_uniqueid", ""),
        caller=number_of(env.get("agi_callerid", "")),
        dialled=env.get("agi_extension") or env.get("agi_dnid", ""),
        endpoint=endpoint_of(env.get("agi_channel", "")),
    )


def jurisdiction_for(
    dialled: str,
    endpoint: str | None,
    *,
    by_number: Mapping[str, Jurisdiction],
    by_endpoint: Mapping[str, Jurisdiction],
) -> Jurisdiction:
    if dialled in by_number:
        return by_number[dialled]
    if endpoint is not None and endpoint in by_endpoint:
        return by_endpoint[endpoint]
    return Jurisdiction.UNKNOWN


@dataclass(frozen=True, slots=True)
class NuisanceRule:
    categories: tuple[str, ...]
    threshold: int
    window: timedelta

    def since(self, now: datetime) -> datetime:
        """Records created at or after this count."""
        return now - self.window

    def verdict(self, count: int | None) -> Nuisance:
        """``count``: the caller's records in the window (None: no number, or not countable)."""
        if count is None:
            return "unknown"
        return "yes" if count >= self.threshold else "no"


def urgency_of(record: HandoffRecord | None) -> Urgency:
    if record is None:
        return Urgency.UNKNOWN
    matter = record.snapshot.matter
    if (
        matter.danger_to_life
        or matter.violent_risk
        or matter.police_dispatch_first
        or matter.matter_class in _POLICE_CLASSES
    ):
        return Urgency.URGENT
    return Urgency.NORMAL


def handoff_id_of(value: str) -> str | None:
    """The handoff id the dialplan passed (from X-Handoff-Id), if it is one."""
    value = value.strip()
    return value if _HANDOFF_ID.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class Decision:
    variables: dict[str, str]  # set on the channel, in this order
    call: CallEntry | None  # the call log row written after answering (None: none)


def entry_decision(
    facts: CallFacts, jurisdiction: Jurisdiction, nuisance: Nuisance, now: datetime
) -> Decision:
    return Decision(
        variables={CALL_JURISDICTION: jurisdiction.value, CALL_NUISANCE: nuisance},
        call=CallEntry(
            call_id=facts.call_id,
            arrived_at=now,
            kind="citizen",
            jurisdiction=jurisdiction,
            caller=facts.caller,
            dialled=facts.dialled or None,
            endpoint=facts.endpoint,
            nuisance=nuisance == "yes",
        )
        if facts.call_id
        else None,
    )


def receive_decision(
    facts: CallFacts, handoff_id: str | None, record: HandoffRecord | None, now: datetime
) -> Decision:
    urgency = urgency_of(record)
    matter = record.snapshot.matter if record is not None else None
    jurisdiction = matter.jurisdiction if matter is not None else Jurisdiction.UNKNOWN
    matter_class = matter.matter_class.value if matter and matter.matter_class else ""
    return Decision(
        variables={
            HANDOFF_RECEIVED_ID: handoff_id or "",
            HANDOFF_CLASS: matter_class,
            HANDOFF_JURISDICTION: jurisdiction.value,
            HANDOFF_URGENCY: urgency.value,
        },
        call=CallEntry(
            call_id=facts.call_id,
            arrived_at=now,
            kind="from_partner",
            jurisdiction=jurisdiction,
            caller=facts.caller,
            dialled=facts.dialled or None,
            endpoint=facts.endpoint,
            handoff_id=handoff_id,
            urgency=urgency.value,
        )
        if facts.call_id
        else None,
    )
