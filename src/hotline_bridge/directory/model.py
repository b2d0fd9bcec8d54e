"""Linkage targets and the one decision about them: what to dial for a target in a jurisdiction.

A target is either a **linked** platform (runs a hotline-bridge peer: records are pushed to it and
receipts come back) or a plain **line** (a phone number only: the record travels by reference in
the call's headers and is readable through the API by the target's API client, if it has one).
Everything here is pure: transfers, three-way and multi-party calls and notices all call
:func:`resolve` and turn a :class:`Refusal` into a 4xx with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hotline_bridge.core.vocabulary import Jurisdiction

CITY_WIDE = "city"  # the key of the fallback dial string in a target's dial plan


class TargetKind(StrEnum):
    LINKED = "linked"  # a hotline-bridge peer: records pushed, receipts back
    LINE = "line"  # a phone number only: the record by reference


class Purpose(StrEnum):
    TRANSFER = "transfer"
    THREE_WAY = "three_way"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening windows in minutes of the day, ``[start, end)``; none means round the clock."""

    windows: tuple[tuple[int, int], ...] = ()

    def open_at(self, minute_of_day: int) -> bool:
        return not self.windows or any(a <= minute_of_day < b for a, b in self.windows)

    @property
    def always(self) -> bool:
        return not self.windows


@dataclass(frozen=True, slots=True)
class Desk:
    """Where a target is reached in one jurisdiction: the dial string and the number it shows."""

    dial: str
    number: str


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    kind: TargetKind
    label_zh: str
    label_en: str
    forwarding_number: str
    three_way: bool
    hours: Hours
    # jurisdiction value (or CITY_WIDE) -> desk; CITY_WIDE may be absent only if every
    # jurisdiction has its own desk (the loader checks it).
    desks: Mapping[str, Desk]
    # The partner site a linked target's peer answers as (12345/110); None for a plain line.
    site: str | None = None
    # The API client id of a plain line that may read records addressed to it.
    api_client: str | None = None
    ring_timeout_s: int | None = None

    @property
    def linked(self) -> bool:
        return self.kind is TargetKind.LINKED

    def desk_for(self, jurisdiction: str) -> tuple[str, Desk] | None:
        """The jurisdiction's own desk, else the city-wide one: (key used, desk)."""
        if jurisdiction in self.desks:
            return jurisdiction, self.desks[jurisdiction]
        if CITY_WIDE in self.desks:
            return CITY_WIDE, self.desks[CITY_WIDE]
        return None


@dataclass(frozen=True, slots=True)
class Directory:
    targets: Mapping[str, Target] = field(default_factory=dict)

    def get(self, target_id: str) -> Target | None:
        return self.targets.get(target_id)

    def linked_sites(self) -> frozenset[str]:
        """The sites the outbox pushes to: linked targets only."""
        return frozenset(t.site for t in self.targets.values() if t.linked and t.site)


@dataclass(frozen=True, slots=True)
class DialPlanEntry:
    """What to dial for one hand-over, and what the record keeps about the choice."""

    target: str
    kind: TargetKind
    dial: str
    number: str
    forwarding_number: str
    jurisdiction: str  # the call's own jurisdiction (from the entry hook)
    routed_as: str  # the desk key used: a jurisdiction or CITY_WIDE
    overridden: bool  # the agent chose another jurisdiction's desk
    ring_timeout_s: int | None = None

    @property
    def pushes_record(self) -> bool:
        return self.kind is TargetKind.LINKED


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a hand-over to a target cannot be made (the API's 4xx reason)."""

    code: str
    reason: str


_KNOWN_JURISDICTIONS = frozenset(j.value for j in Jurisdiction) - {Jurisdiction.UNKNOWN.value}


def resolve(
    directory: Directory,
    target_id: str,
    jurisdiction: str,
    override: str | None = None,
    *,
    purpose: Purpose = Purpose.TRANSFER,
    minute_of_day: int | None = None,
) -> DialPlanEntry | Refusal:
    """The desk to dial for ``target_id`` for a call of ``jurisdiction``.

    ``override`` is a jurisdiction the agent picked instead of the call's own (e.g. the accident
    is across the county line); it must be a known jurisdiction and is recorded as such.
    ``minute_of_day`` (local time) checks the target's hours; None skips the check.
    """
    target = directory.get(target_id)
    if target is None:
        return Refusal(
            "unknown_target", f"unknown target {target_id!r}: not in the linkage directory"
        )
    if purpose is Purpose.THREE_WAY and not target.three_way:
        return Refusal("three_way_not_allowed", f"target {target_id!r} takes no three-way calls")
    if override is not None and override not in _KNOWN_JURISDICTIONS:
        return Refusal("unknown_jurisdiction", f"override {override!r} is not a jurisdiction")
    if minute_of_day is not None and not target.hours.open_at(minute_of_day):
        return Refusal("target_closed", f"target {target_id!r} is outside its hours")
    wanted = override if override is not None else jurisdiction
    found = target.desk_for(wanted)
    if found is None:
        return Refusal(
            "no_desk", f"target {target_id!r} has no desk for {wanted!r} and no city-wide one"
        )
    key, desk = found
    return DialPlanEntry(
        target=target.id,
        kind=target.kind,
        dial=desk.dial,
        number=desk.number,
        forwarding_number=target.forwarding_number,
        jurisdiction=jurisdiction,
        routed_as=key,
        overridden=override is not None and override != jurisdiction,
        ring_timeout_s=target.ring_timeout_s,
    )


def can_receive_record(
    target: Target, site: str | None, api_clients: frozenset[str]
) -> Refusal | None:
    """Whether a record may be addressed to ``target``: a linked target needs a partner link to
    its site (``site`` is the configured partner's), a plain line is always reachable by
    reference but its API reader must be a configured client if it names one."""
    if target.linked:
        if target.site is None or target.site != site:
            return Refusal(
                "target_unreachable",
                f"linked target {target.id!r} has no partner link configured for its site",
            )
        return None
    if target.api_client is not None and target.api_client not in api_clients:
        return Refusal(
            "target_unreachable",
            f"plain-line target {target.id!r} names an API client that is not configured",
        )
    return None
