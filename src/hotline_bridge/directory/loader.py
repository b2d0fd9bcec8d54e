"""Loading and validating the linkage directory file, with errors that name file, line and field.

A broken directory stops the service at start-up: a half-read list would route a fire to nobody.
Same reporting as the catalog (``core.datafile``): ``path:line: field: problem``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_bridge.core.datafile import key_lines, schema_problem, syntax_problem
from hotline_bridge.core.vocabulary import Jurisdiction
from hotline_bridge.directory.model import (
    CITY_WIDE,
    Desk,
    Directory,
    Hours,
    Target,
    TargetKind,
)

SUPPORTED_VERSION = 1
MAX_TARGETS = 200
_Label = Annotated[str, Field(min_length=1, max_length=80)]
_TargetId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
_Number = Annotated[str, Field(pattern=r"^[0-9*#+]{1,32}$")]
# The same rule as the settings' dial strings: one PJSIP or Local target, never Dial() options.
_Dial = Annotated[str, Field(pattern=r"^(PJSIP|Local)/[A-Za-z0-9_.@+*#-]{1,80}$")]
_Window = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
]
_DESK_KEYS = frozenset({CITY_WIDE} | {j.value for j in Jurisdiction} - {Jurisdiction.UNKNOWN.value})


class DirectoryError(Exception):
    """The directory file cannot be used; ``problems`` are ``path:line: field: problem`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid linkage directory:\n  " + "\n  ".join(self.problems))


def default_directory_path() -> Path:
    """The sandbox's seed directory, shipped with the package."""
    return Path(str(resources.files("hotline_bridge.directory").joinpath("targets.toml")))


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt key would otherwise be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Header(_Strict):
    version: int


class _Desk(_Strict):
    dial: _Dial
    number: _Number


class _Target(_Strict):
    kind: Literal["linked", "line"]
    label_zh: _Label
    label_en: _Label
    forwarding_number: _Number
    three_way: bool = False
    # Round the clock ("always") or opening windows "HH:MM-HH:MM" (local time).
    hours: Literal["always"] | list[_Window] = "always"
    site: Annotated[str, Field(pattern=r"^(12345|110)$")] | None = None
    api_client: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    ring_timeout_s: int | None = Field(None, ge=1, le=120)
    desks: dict[str, _Desk] = Field(min_length=1, max_length=len(_DESK_KEYS))


class _File(_Strict):
    directory: _Header
    targets: dict[_TargetId, _Target] = Field(min_length=1, max_length=MAX_TARGETS)


def load_directory(path: Path | None = None) -> Directory:
    """Read and validate a directory file (default: the seed). Raises :class:`DirectoryError`."""
    path = path or default_directory_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DirectoryError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError([f"{path}: cannot read: {exc}"]) from None
    return parse_directory(text, path)


def parse_directory(text: str, path: Path) -> Directory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DirectoryError([syntax_problem(text, path, exc)]) from None
    lines = key_lines(text)
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise DirectoryError(
            [schema_problem(path, lines, tuple(e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    problems = _semantic_problems(raw, path, lines)
    if problems:
        raise DirectoryError(problems)
    return Directory(
        targets={
            tid: Target(
                id=tid,
                kind=TargetKind(t.kind),
                label_zh=t.label_zh,
                label_en=t.label_en,
                forwarding_number=t.forwarding_number,
                three_way=t.three_way,
                hours=_hours(t.hours),
                desks={k: Desk(d.dial, d.number) for k, d in t.desks.items()},
                site=t.site,
                api_client=t.api_client,
                ring_timeout_s=t.ring_timeout_s,
            )
            for tid, t in raw.targets.items()
        }
    )


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _hours(value: str | list[str]) -> Hours:
    if value == "always":
        return Hours()
    return Hours(tuple((_minutes(w[:5]), _minutes(w[6:])) for w in value))


def _semantic_problems(raw: _File, path: Path, lines: Mapping[tuple[Any, ...], int]) -> list[str]:
    problems: list[str] = []

    def problem(loc: tuple[Any, ...], msg: str) -> None:
        problems.append(schema_problem(path, lines, loc, msg))

    if raw.directory.version != SUPPORTED_VERSION:
        problem(
            ("directory", "version"),
            f"unsupported version {raw.directory.version}, this bridge reads {SUPPORTED_VERSION}",
        )
    every = _DESK_KEYS - {CITY_WIDE}
    for tid, t in raw.targets.items():
        for key in t.desks:
            if key not in _DESK_KEYS:
                problem(
                    ("targets", tid, "desks", key),
                    f"unknown jurisdiction {key!r} (one of {', '.join(sorted(_DESK_KEYS))})",
                )
        if CITY_WIDE not in t.desks and not every <= set(t.desks):
            problem(
                ("targets", tid, "desks"),
                f"no {CITY_WIDE!r} desk and not every jurisdiction has its own",
            )
        if t.kind == "linked" and t.site is None:
            problem(("targets", tid, "site"), "a linked target needs the site its peer answers as")
        if t.kind == "line" and t.site is not None:
            problem(("targets", tid, "site"), "a plain line has no peer site (kind is 'line')")
        if isinstance(t.hours, list):
            for i, w in enumerate(t.hours):
                if _minutes(w[:5]) >= _minutes(w[6:]):
                    problem(("targets", tid, "hours", i), f"window {w!r} ends before it starts")
    sites = [t.site for t in raw.targets.values() if t.site]
    for site in {s for s in sites if sites.count(s) > 1}:
        problem(("targets",), f"site {site!r} is the peer of more than one linked target")
    return problems
