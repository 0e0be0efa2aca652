"""The catalog's domain types: prices in integer nano-USD per million tokens, model entries.

$2.50 per 1M tokens is 2_500_000_000 nusd/Mtok, so every price published to the cent of
a thousandth of a dollar is an exact integer here (the finest LiteLLM price, 1e-15 USD
per token, is 1 nusd/Mtok).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

NUSD_PER_USD = 10**9
TOKENS_PER_MTOK = 10**6


class CatalogError(ValueError):
    """The catalog, an override file or a LiteLLM map is malformed; the message says where."""


class ModelNotFound(LookupError):
    """No catalog model answers to `name`; `suggestions` lists the closest known names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f"; closest known: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (see `tokenrt models`)")


class Match(enum.Enum):
    EXACT = "exact"
    ALIAS = "alias"
    SNAPSHOT = "snapshot"
    FINE_TUNE = "fine_tune"


def usd_per_mtok(text: str | int | Decimal, where: str) -> int:
    """Parse a price in USD per 1M tokens (a decimal string) into nusd per Mtok, exactly."""
    if isinstance(text, float) or isinstance(text, bool):
        raise CatalogError(f"{where}: write prices as quoted decimal strings, not {text!r}")
    try:
        value = Decimal(str(text)) * NUSD_PER_USD
    except ArithmeticError:
        raise CatalogError(f"{where}: {text!r} is not a decimal number") from None
    if value < 0 or value != value.to_integral_value():
        raise CatalogError(f"{where}: {text!r} USD/1M is negative or finer than 1e-9 USD/1M")
    return int(value)


def format_usd(nusd: int) -> str:
    """nusd as a plain decimal USD string without float noise: 2_500_000_000 -> '2.5'."""
    text = format(Decimal(nusd) / NUSD_PER_USD, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class TokenPrices:
    """One price schedule, nusd per million tokens of each token class."""

    input: int
    cached_input: int
    cache_write: int
    output: int
    reasoning: int

    @staticmethod
    def simple(input: int, output: int, cached_input: int | None = None,
               cache_write: int | None = None) -> TokenPrices:
        return TokenPrices(input, input if cached_input is None else cached_input,
                           input if cache_write is None else cache_write, output, output)


@dataclass(frozen=True)
class ModelPrice:
    standard: TokenPrices
    # Batch-API prices; None when the provider has no batch discount.
    batch: TokenPrices | None = None
    # Prompts with MORE input tokens than this are billed entirely at long_context prices.
    long_context_threshold: int = 0
    long_context: TokenPrices | None = None
    long_context_batch: TokenPrices | None = None
    version: str = ""
    # "catalog", "litellm" or "override".
    source: str = "catalog"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    # API protocol: openai, anthropic, gemini, openai_compatible, simulator.
    provider: str
    vendor: str
    # tiktoken encoding, `hf:<repo>` / `bpe:<name>` for a packaged tokenizer, or
    # `estimate:<family>` for the calibrated estimator.
    tokenizer: str
    context_window: int
    max_output: int
    price: ModelPrice
    default_output: int = 0
    capabilities: frozenset[str] = frozenset()
    tier: str = "standard"
    aliases: tuple[str, ...] = ()
    degrade_to: str = ""
    deprecated: bool = False
    sunset: date | None = None
    replacement: str = ""
    # Inference price of the provider's fine-tunes of this model, when it differs.
    fine_tune_price: ModelPrice | None = None
    # The id sent to the provider when it differs from `name` (e.g. a host's model path).
    provider_model_id: str = ""
    # Key of the LiteLLM price map entry the figures were checked against.
    reference: str = ""
    fine_tune_reference: str = ""


@dataclass(frozen=True)
class Resolved:
    """A model name resolved against the catalog."""

    entry: ModelEntry
    match: Match
    requested: str
    # The id to send to the provider (the dated snapshot or fine-tune name as given).
    provider_model_id: str
    fine_tuned: bool = False

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def price(self) -> ModelPrice:
        if self.fine_tuned and self.entry.fine_tune_price is not None:
            return self.entry.fine_tune_price
        return self.entry.price
