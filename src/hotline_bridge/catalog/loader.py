"""Loading and validating the matter catalog file, with errors that name file, line and field.

A broken catalog must stop the service at start-up, never route calls by half a list. Every
problem is reported as ``path:line: field: problem``: syntax errors take the line from tomllib,
schema errors find the line of the offending key by scanning the text (``core.datafile``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotline_bridge.catalog.model import Catalog, Category, MatterClass, MatterClassInfo, Via
from hotline_bridge.core.datafile import key_lines, schema_problem, syntax_problem
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
        raise CatalogError([syntax_problem(text, path, exc)]) from None
    lines = key_lines(text)
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(
            [schema_problem(path, lines, tuple(e["loc"]), e["msg"]) for e in exc.errors()]
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
            schema_problem(
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
                schema_problem(
                    path, lines, ("classes", name), f"unknown class; the five are {sorted(known)}"
                )
            )
    for missing in sorted(known - raw.classes.keys()):
        problems.append(
            schema_problem(path, lines, ("classes", missing), "class missing from the catalog")
        )
    seen: dict[str, int] = {}
    for i, cat in enumerate(raw.categories):
        if cat.code in seen:
            problems.append(
                schema_problem(
                    path,
                    lines,
                    ("categories", i, "code"),
                    f"duplicate code {cat.code!r} (first at categories[{seen[cat.code]}])",
                )
            )
        seen.setdefault(cat.code, i)
    return problems
