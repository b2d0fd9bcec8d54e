"""The plan's vocabulary as types: platforms, the five classes of matters, catalog categories.

The classes are fixed by the plan (附件 of the Lijiang plan, after 国办发〔2022〕12号) and so are
code; the categories under them are data that operators edit (``matters.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Platform(StrEnum):
    """The two linked platforms. The value is the number citizens dial."""

    HOTLINE_12345 = "12345"
    POLICE_110 = "110"

    @property
    def other(self) -> Platform:
        return Platform.POLICE_110 if self is Platform.HOTLINE_12345 else Platform.HOTLINE_12345


class MatterClass(StrEnum):
    """The five classes of matters of the annex (分流转办事项五类)."""

    POLICE_MATTER = "police_matter"  # 12345转110受理事项: 110's scope, reached 12345
    NON_POLICE_MATTER = "non_police_matter"  # 110转12345受理事项: 12345's scope, reached 110
    UNCLEAR_RESPONSIBILITY = "unclear_responsibility"  # 责任主体不明确事项
    NEITHER_PLATFORM = "neither_platform"  # 不属于12345、110平台事项
    POLICE_FIRST_RESPONSE = "police_first_response"  # 110平台第一时间处置事项


class Via(StrEnum):
    """How a matter travels to the other platform: with the live call or as a record only."""

    THREE_WAY = "three_way"
    CARRY_TRANSFER = "carry_transfer"
    WORK_ORDER = "work_order"


@dataclass(frozen=True, slots=True)
class MatterClassInfo:
    matter_class: MatterClass
    label_zh: str
    label_en: str
    rule_zh: str
    rule_en: str


@dataclass(frozen=True, slots=True)
class Category:
    """One line of the matter list: a code agents pick with a hotkey, and its class."""

    code: str
    label_zh: str
    label_en: str
    matter_class: MatterClass
    examples_zh: tuple[str, ...] = ()
    # Overrides the class's usual way of handing over, e.g. harassment calls are *reported* to 110
    # (通报) as a work order rather than conferenced in.
    via: Via | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    path: Path
    version: int
    title: str
    classes: Mapping[MatterClass, MatterClassInfo]
    categories: Mapping[str, Category]

    def category(self, code: str) -> Category | None:
        return self.categories.get(code)
