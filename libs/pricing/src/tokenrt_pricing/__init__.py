"""The model catalog and price book: context windows, prices per million tokens, and exact
cost math in integer nano-USD (never float), rounded once per request, half-even."""

from tokenrt_pricing.catalog import Catalog, load
from tokenrt_pricing.cost import Cost, InvalidUsage, Usage, cost_of
from tokenrt_pricing.model import (
    CatalogError,
    Match,
    ModelEntry,
    ModelNotFound,
    ModelPrice,
    Resolved,
    TokenPrices,
    format_usd,
)

__all__ = [
    "Catalog", "CatalogError", "Cost", "InvalidUsage", "Match", "ModelEntry", "ModelNotFound",
    "ModelPrice", "Resolved", "TokenPrices", "Usage", "cost_of", "format_usd", "load",
]
