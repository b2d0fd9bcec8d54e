"""Operator-edited TOML data files (catalog, handling units, time limits, calendar): problems
reported as ``path:line: field: problem``, the line found for syntax errors (tomllib's) and for
schema errors (the offending key's line, found by scanning the text).

    problems = [schema_problem(path, key_lines(text), loc, msg) for loc, msg in errors]
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_AT_LINE = re.compile(r"at line (\d+), column (\d+)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def syntax_problem(text: str, path: Path, exc: tomllib.TOMLDecodeError) -> str:
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


def schema_problem(
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


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path (as pydantic reports it: table names, array indexes, key) to its line.

    Handles what the data files use: ``[table.sub]``, ``[[array]]`` and ``key = value`` lines with
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
