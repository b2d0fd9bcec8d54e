"""Loading and validating the matter catalog file, with errors that name file, line and field.

A broken catalog must stop the service at start-up, never route calls by half a list. Every
problem is reported as ``path:line: field: problem``: syntax errors take the line from tomllib,
schema errors find the line of the offending key by scanning the text (see :func:`_key_lines`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_bridge.catalog.model import Catalog, Category, MatterClass, MatterClassInfo, Via
from hotline_bridge.core.vocabulary import CategoryCode

SUPPORTED_VERSION = 1
_Label = Annotated[str, Field(min_length=1, max_length=200)]
_Rule = Annotated[str, Field(min_length=1, max_length=2000)]


class CatalogError(Exception):
    """The catalog file cannot be used; ``problems`` are ``path:line: field: problem`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid matter catalog:\n  " + "\n  ".join(self.problems))


def default_catalog_path() -> Path:
    """The catalog shipped with the package."""
    return Path(str(resources.files("hotline_bridge.catalog").joinpath("matters.toml")))


# -- the file's schema (what operators write) --------------------------------------------------


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt key would otherwise be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Header(_Strict):
    version: int
    title: _Label


class _Class(_Strict):
    label_zh: _Label
    label_en: _Label
    rule_zh: _Rule
    rule_en: _Rule


class _Category(_Strict):
    code: CategoryCode
    label_zh: _Label
    label_en: _Label
    matter_class: MatterClass = Field(alias="class")
    examples_zh: list[_Label] = Field(default_factory=list, max_length=50)
    via: Via | None = None


class _File(_Strict):
    catalog: _Header
    classes: dict[str, _Class]
    categories: list[_Category] = Field(min_length=1)


# -- loading -----------------------------------------------------------------------------------


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog file (default: the shipped one). Raises :class:`CatalogError`."""
    path = path or default_catalog_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([f"{path}: cannot read: {exc}"]) from None
    return parse_catalog(text, path)


def parse_catalog(text: str, path: Path) -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError([_syntax_problem(text, path, exc)]) from None
    lines = _key_lines(text)
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(
            [_schema_problem(path, lines, tuple(e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    problems = _semantic_problems(raw, path, lines)
    if problems:
        raise CatalogError(problems)
    return Catalog(
        path=path,
        version=raw.catalog.version,
        title=raw.catalog.title,
        classes={
            MatterClass(name): MatterClassInfo(
                MatterClass(name), c.label_zh, c.label_en, c.rule_zh, c.rule_en
            )
            for name, c in raw.classes.items()
        },
        categories={
            c.code: Category(
                code=c.code,
                label_zh=c.label_zh,
                label_en=c.label_en,
                matter_class=c.matter_class,
                examples_zh=tuple(c.examples_zh),
                via=c.via,
            )
            for c in raw.categories
        },
    )


def _semantic_problems(raw: _File, path: Path, lines: Mapping[tuple[Any, ...], int]) -> list[str]:
    problems: list[str] = []
    if raw.catalog.version != SUPPORTED_VERSION:
        problems.append(
            _schema_problem(
                path,
                lines,
                ("catalog", "version"),
                f"unsupported version {raw.catalog.version}, this bridge reads {SUPPORTED_VERSION}",
            )
        )
    known = {m.value for m in MatterClass}
    for name in raw.classes:
        if name not in known:
            problems.append(
                _schema_problem(
                    path, lines, ("classes", name), f"unknown class; the five are {sorted(known)}"
                )
            )
    for missing in sorted(known - raw.classes.keys()):
        problems.append(
            _schema_problem(path, lines, ("classes", missing), "class missing from the catalog")
        )
    seen: dict[str, int] = {}
    for i, cat in enumerate(raw.categories):
        if cat.code in seen:
            problems.append(
                _schema_problem(
                    path,
                    lines,
                    ("categories", i, "code"),
                    f"duplicate code {cat.code!r} (first at categories[{seen[cat.code]}])",
                )
            )
        seen.setdefault(cat.code, i)
    return problems


# -- locating problems -------------------------------------------------------------------------

_AT_LINE = re.compile(r"at line (\d+), column (\d+)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _syntax_problem(text: str, path: Path, exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    m = _AT_LINE.search(msg)
    if not m:
        return f"{path}: TOML syntax error: {msg}"
    line_no = int(m.group(1))
    reason = _AT_LINE.sub("", msg).strip().rstrip("()").strip()
    source_lines = text.splitlines()
    field = ""
    if 0 < line_no <= len(source_lines):
        key = _KEY.match(source_lines[line_no - 1])
        if key:
            field = f" {_split_key(key.group(1))[-1]}:"
    return f"{path}:{line_no}:{field} TOML syntax error: {reason} (column {m.group(2)})"


def _schema_problem(
    path: Path, lines: Mapping[tuple[Any, ...], int], loc: tuple[Any, ...], msg: str
) -> str:
    # The key's own line if it is there, else the nearest enclosing table (a missing key is
    # reported at the header of the table that lacks it).
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return f"{path}:{lines[loc[:n]]}: {_dotted(loc)}: {msg}"
    return f"{path}:1: {_dotted(loc)}: {msg}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", key)
    return tuple(a or b or c for a, b, c in parts)


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path (as pydantic reports it: table names, array indexes, key) to its line.

    Handles what the catalog uses: ``[table.sub]``, ``[[array]]`` and ``key = value`` lines with
    (dotted) bare or quoted keys. Keys inside multi-line values are not indexed; the line of the
    value's key is close enough.
    """
    lines: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: tuple[Any, ...] = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            in_multiline = line.count('"""') % 2 == 0 and line.count("'''") % 2 == 0
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            name = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (*name, index)
            else:
                table = name
            for n in range(1, len(table) + 1):
                lines.setdefault(table[:n], number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, *_split_key(key.group(1))), number)
            rest = line[key.end() :]
            if rest.count('"""') == 1 or rest.count("'''") == 1:
                in_multiline = True
    return lines
