"""The matter catalog (事项清单): the plan's five classes of matters and their categories, loaded
from an operator-edited TOML file, and the pure routing advisor that applies the annex's rules."""

from hotline_bridge.catalog.advisor import Action, Advice, AdviceError, Channel, advise
from hotline_bridge.catalog.loader import CatalogError, default_catalog_path, load_catalog
from hotline_bridge.catalog.model import (
    Catalog,
    Category,
    MatterClass,
    MatterClassInfo,
    Platform,
    Via,
)

__all__ = [
    "Action",
    "Advice",
    "AdviceError",
    "Catalog",
    "CatalogError",
    "Category",
    "Channel",
    "MatterClass",
    "MatterClassInfo",
    "Platform",
    "Via",
    "advise",
    "default_catalog_path",
    "load_catalog",
]
