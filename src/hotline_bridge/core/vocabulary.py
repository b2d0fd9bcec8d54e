"""The domain's small closed vocabularies, shared by settings, the catalog and the record."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import Field

# A matter category's code in the catalog, e.g. ``police.harassment``.
CategoryCode = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", min_length=1, max_length=64)
]


class Jurisdiction(StrEnum):
    """Lijiang's counties and district (属地), for routing by territory."""

    GUCHENG = "gucheng"  # 古城区
    YULONG = "yulong"  # 玉龙县
    YONGSHENG = "yongsheng"  # 永胜县
    HUAPING = "huaping"  # 华坪县
    NINGLANG = "ninglang"  # 宁蒗县
    UNKNOWN = "unknown"


JURISDICTION_ZH: Mapping[Jurisdiction, str] = {
    Jurisdiction.GUCHENG: "古城区",
    Jurisdiction.YULONG: "玉龙县",
    Jurisdiction.YONGSHENG: "永胜县",
    Jurisdiction.HUAPING: "华坪县",
    Jurisdiction.NINGLANG: "宁蒗县",
    Jurisdiction.UNKNOWN: "未知",
}
