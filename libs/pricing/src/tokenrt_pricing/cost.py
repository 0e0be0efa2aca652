"""Exact cost math: integer nano-USD, one half-even rounding per request.

cost = sum(tokens_i * price_i) / 1e6 over the token classes, where price_i is in nusd
per million tokens. The exact sum is an integer numerator over 1e6; it is rounded once,
half-even, to whole nusd. The per-class parts are then allocated by largest remainder,
so they always sum exactly to the total and each is within 1 nusd of its exact value.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenrt_pricing.model import TOKENS_PER_MTOK, ModelPrice, TokenPrices


class InvalidUsage(ValueError):
    """The usage is inconsistent (negative counts, cached > input, reasoning > output)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Usage:
    """Token usage, OpenAI's convention: input includes cached and cache-write tokens,
    output includes reasoning tokens."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def check(self) -> None:
        for name in ("input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                     "output_tokens", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise InvalidUsage(f"usage.{name}", f"usage.{name} must be 0 or more")
        if self.cached_input_tokens + self.cache_write_input_tokens > self.input_tokens:
            raise InvalidUsage("usage.cached_input_tokens",
                               "usage.cached_input_tokens + usage.cache_write_input_tokens "
                               "must not exceed usage.input_tokens (input includes them)")
        if self.reasoning_tokens > self.output_tokens:
            raise InvalidUsage("usage.reasoning_tokens",
                               "usage.reasoning_tokens must not exceed usage.output_tokens "
                               "(output includes them)")


@dataclass(frozen=True)
class Cost:
    input_nusd: int
    cached_input_nusd: int
    cache_write_nusd: int
    output_nusd: int
    reasoning_nusd: int
    total_nusd: int
    prices: TokenPrices
    long_context: bool

    @property
    def parts(self) -> tuple[int, int, int, int, int]:
        return (self.input_nusd, self.cached_input_nusd, self.cache_write_nusd,
                self.output_nusd, self.reasoning_nusd)


def round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, ties to even."""
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def allocate(numerators: list[int], denominator: int, total: int) -> list[int]:
    """Split `total` into integer parts close to numerators/denominator (largest remainder)."""
    floors = [n // denominator for n in numerators]
    short = total - sum(floors)
    order = sorted(range(len(numerators)), key=lambda i: (-(numerators[i] % denominator), i))
    parts = floors[:]
    for i in order[:short]:
        parts[i] += 1
    return parts


def schedule_for(price: ModelPrice, input_tokens: int, batch: bool) -> tuple[TokenPrices, bool]:
    """The price schedule a request pays and whether the long-context tier applies."""
    long = bool(price.long_context_threshold and price.long_context is not None
                and input_tokens > price.long_context_threshold)
    if long:
        assert price.long_context is not None
        if batch and price.long_context_batch is not None:
            return price.long_context_batch, True
        return price.long_context, True
    if batch and price.batch is not None:
        return price.batch, False
    return price.standard, False


def cost_of(price: ModelPrice, usage: Usage, batch: bool = False) -> Cost:
    """The cost of one request, rounded once (half-even) to whole nano-USD."""
    usage.check()
    prices, long = schedule_for(price, usage.input_tokens, batch)
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_input_tokens
    numerators = [
        uncached * prices.input,
        usage.cached_input_tokens * prices.cached_input,
        usage.cache_write_input_tokens * prices.cache_write,
        (usage.output_tokens - usage.reasoning_tokens) * prices.output,
        usage.reasoning_tokens * prices.reasoning,
    ]
    total = round_half_even(sum(numerators), TOKENS_PER_MTOK)
    parts = allocate(numerators, TOKENS_PER_MTOK, total)
    input_, cached, write, output, reasoning = parts
    return Cost(input_, cached, write, output, reasoning, total, prices, long)
