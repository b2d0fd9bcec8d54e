"""The handling units (承办单位), their time limits (办理时限) and the working-day calendar: three
operator-edited TOML files, validated at load with errors naming file, line and field, and the
pure rules over them: which unit a matter is suggested for, and when its limits fall.

Suggestion (属地管理, 分级负责): a city department that lists the matter's category takes it
city-wide; otherwise the government of the matter's county/district; otherwise none (an agent
must choose). Limits: signing (签收) in clock hours from assignment; completing (办结) at the end
of the Nth working day after the day of assignment, local time (Beijing time, no summer time).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_bridge.core.datafile import key_lines, schema_problem, syntax_problem
from hotline_bridge.core.vocabulary import CategoryCode, Jurisdiction

CST = timezone(timedelta(hours=8), "CST")
SUPPORTED_VERSION = 1
UnitId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
_Label = Annotated[str, Field(min_length=1, max_length=200)]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class UnitsError(Exception):
    """A units, limits or calendar file cannot be used; ``problems`` name file, line, field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid handling-unit data:\n  " + "\n  ".join(self.problems))


class UnitKind(StrEnum):
    COUNTY = "county"  # a county/district government (属地)
    DEPARTMENT = "department"  # a city department (by function)


@dataclass(frozen=True, slots=True)
class Unit:
    id: str
    name_zh: str
    name_en: str
    kind: UnitKind
    jurisdiction: Jurisdiction | None
    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class Limit:
    sign_within_hours: float
    complete_within_working_days: int
    due_soon_hours: float


@dataclass(frozen=True, slots=True)
class Calendar:
    weekend: frozenset[int]  # date.weekday() numbers
    holidays: frozenset[date]
    working_weekends: frozenset[date]

    def is_working_day(self, day: date) -> bool:
        if day in self.working_weekends:
            return True
        return day.weekday() not in self.weekend and day not in self.holidays

    def complete_by(self, start: datetime, working_days: int) -> datetime:
        """The end (24:00 local) of the ``working_days``-th working day after ``start``'s day."""
        day = start.astimezone(CST).date()
        counted = 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=CST)
        return end.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Directory:
    units: Mapping[str, Unit]
    limits: Mapping[str, Limit]  # by category; "" is the default
    calendar: Calendar

    def limit_for(self, category: str | None) -> Limit:
        return self.limits.get(category or "", self.limits[""])

    def suggest(self, category: str | None, jurisdiction: Jurisdiction) -> Suggestion | None:
        """The unit a matter should go to, and why (None: no rule applies; a person chooses)."""
        if category:
            for unit in self.units.values():
                if unit.kind is UnitKind.DEPARTMENT and category in unit.categories:
                    return Suggestion(unit, f"{category} is handled city-wide by {unit.name_zh}")
        for unit in self.units.values():
            if unit.kind is UnitKind.COUNTY and unit.jurisdiction is jurisdiction:
                return Suggestion(unit, f"属地: the matter is in {unit.name_zh}'s territory")
        return None

    def deadlines(self, category: str | None, assigned_at: datetime) -> tuple[datetime, datetime]:
        """(sign by, complete by) for a matter of ``category`` assigned at ``assigned_at``."""
        limit = self.limit_for(category)
        sign_by = assigned_at + timedelta(hours=limit.sign_within_hours)
        return sign_by, self.calendar.complete_by(assigned_at, limit.complete_within_working_days)


@dataclass(frozen=True, slots=True)
class Suggestion:
    unit: Unit
    rule: str


# -- the files' schemas ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Unit(_Strict):
    id: UnitId
    name_zh: _Label
    name_en: _Label
    kind: UnitKind
    jurisdiction: Jurisdiction | None = None
    categories: list[CategoryCode] = Field(default_factory=list, max_length=200)


class _UnitsFile(_Strict):
    version: int
    units: list[_Unit] = Field(min_length=1)


class _Limit(_Strict):
    sign_within_hours: float | None = Field(None, gt=0, le=24 * 30)
    complete_within_working_days: int | None = Field(None, ge=1, le=365)
    due_soon_hours: float | None = Field(None, ge=0, le=24 * 30)


class _LimitsFile(_Strict):
    version: int
    default: _Limit
    categories: dict[CategoryCode, _Limit] = Field(default_factory=dict)


class _CalendarFile(_Strict):
    version: int
    weekend: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["sat", "sun"]
    holidays: list[date] = Field(default_factory=list, max_length=2000)
    working_weekends: list[date] = Field(default_factory=list, max_length=2000)


# -- loading --------------------------------------------------------------------------------------


def shipped(name: str) -> Path:
    return Path(str(resources.files("hotline_bridge.units").joinpath(name)))


def load_directory(
    units_path: Path | None = None,
    limits_path: Path | None = None,
    calendar_path: Path | None = None,
    *,
    known_categories: frozenset[str] | None = None,
) -> Directory:
    """Read and check the three files (default: those shipped). Raises :class:`UnitsError`."""
    problems: list[str] = []
    units_raw = _load(units_path or shipped("units.toml"), _UnitsFile, problems)
    limits_raw = _load(limits_path or shipped("limits.toml"), _LimitsFile, problems)
    cal_raw = _load(calendar_path or shipped("calendar.toml"), _CalendarFile, problems)
    if problems:
        raise UnitsError(problems)
    assert units_raw is not None and limits_raw is not None and cal_raw is not None
    units_file, units, unit_lines = units_raw
    limits_file, limits, limit_lines = limits_raw
    cal_file, cal, _ = cal_raw
    for f, raw in ((units_file, units), (limits_file, limits), (cal_file, cal)):
        if raw.version != SUPPORTED_VERSION:
            problems.append(f"{f}:1: version: unsupported version {raw.version}")
    seen: dict[str, int] = {}
    counties: dict[Jurisdiction, str] = {}
    taken: dict[str, str] = {}
    for i, u in enumerate(units.units):
        where = (unit_lines, ("units", i))
        if u.id in seen:
            problems.append(_at(units_file, *where, "id", f"duplicate id {u.id!r}"))
        seen.setdefault(u.id, i)
        if u.kind is UnitKind.COUNTY:
            if u.jurisdiction is None or u.jurisdiction is Jurisdiction.UNKNOWN:
                problems.append(_at(units_file, *where, "jurisdiction", "a county needs one"))
            elif u.jurisdiction in counties:
                problems.append(
                    _at(units_file, *where, "jurisdiction", f"{counties[u.jurisdiction]} has it")
                )
            else:
                counties[u.jurisdiction] = u.id
        for code in u.categories:
            if known_categories is not None and code not in known_categories:
                problems.append(_at(units_file, *where, "categories", f"unknown {code!r}"))
            if code in taken and u.kind is UnitKind.DEPARTMENT:
                problems.append(_at(units_file, *where, "categories", f"{code} is {taken[code]}'s"))
            taken.setdefault(code, u.id)
    default = limits.default
    if None in (
        default.sign_within_hours,
        default.complete_within_working_days,
        default.due_soon_hours,
    ):
        problems.append(_at(limits_file, limit_lines, ("default",), "", "give all three limits"))
    for code in limits.categories:
        if known_categories is not None and code not in known_categories:
            problems.append(
                _at(limits_file, limit_lines, ("categories", code), "", f"unknown {code!r}")
            )
    if problems:
        raise UnitsError(problems)

    def merged(over: _Limit) -> Limit:
        return Limit(
            sign_within_hours=float(over.sign_within_hours or default.sign_within_hours or 24),
            complete_within_working_days=int(
                over.complete_within_working_days or default.complete_within_working_days or 5
            ),
            due_soon_hours=float(
                over.due_soon_hours if over.due_soon_hours is not None else default.due_soon_hours
            ),
        )

    return Directory(
        units={
            u.id: Unit(u.id, u.name_zh, u.name_en, u.kind, u.jurisdiction, frozenset(u.categories))
            for u in units.units
        },
        limits={"": merged(default), **{c: merged(v) for c, v in limits.categories.items()}},
        calendar=Calendar(
            weekend=frozenset(_DAYS.index(d) for d in cal.weekend),
            holidays=frozenset(cal.holidays),
            working_weekends=frozenset(cal.working_weekends),
        ),
    )


def _load(
    path: Path, model: type[Any], problems: list[str]
) -> tuple[Path, Any, dict[tuple[Any, ...], int]] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(syntax_problem(text, path, exc))
        return None
    lines = key_lines(text)
    try:
        return path, model.model_validate(data), lines
    except ValidationError as exc:
        problems.extend(
            schema_problem(path, lines, tuple(e["loc"]), e["msg"]) for e in exc.errors()
        )
        return None


def _at(
    path: Path, lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...], key: str, msg: str
) -> str:
    return schema_problem(path, lines, (*loc, key) if key else loc, msg)
