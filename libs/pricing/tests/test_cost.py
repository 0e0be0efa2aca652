"""Cost math: hand-computed figures, one half-even rounding, parts that sum to the total."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tokenrt_pricing as pricing
from tokenrt_pricing.cost import allocate, cost_of, round_half_even
from tokenrt_pricing.model import ModelPrice, TokenPrices

CATALOG = pricing.load()


def price(name: str) -> ModelPrice:
    return CATALOG.resolve(name).price


def test_gpt_4o_with_cached_input() -> None:
    # 800 uncached * $2.50/M + 200 cached * $1.25/M + 500 out * $10/M
    # = $0.002 + $0.00025 + $0.005 = $0.00725
    c = cost_of(price("gpt-4o"), pricing.Usage(input_tokens=1000, cached_input_tokens=200,
                                               output_tokens=500))
    assert (c.input_nusd, c.cached_input_nusd, c.output_nusd) == (2_000_000, 250_000, 5_000_000)
    assert c.total_nusd == 7_250_000


def test_claude_cache_write_and_reasoning() -> None:
    # claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write, $15 out.
    # 10_000 input of which 4_000 cached and 5_000 written: 1_000*3 + 4_000*0.3 + 5_000*3.75
    # = 3000 + 1200 + 18750 = $0.02295 ; 2_000 output of which 500 reasoning = $0.03
    u = pricing.Usage(10_000, 4_000, 5_000, 2_000, 500)
    c = cost_of(price("claude-sonnet-4-5"), u)
    assert c.parts == (3_000_000, 1_200_000, 18_750_000, 22_500_000, 7_500_000)
    assert c.total_nusd == 52_950_000


def test_gemini_long_context_tier_applies_above_200k() -> None:
    p = price("gemini-2.5-pro")
    at = cost_of(p, pricing.Usage(input_tokens=200_000, output_tokens=1_000))
    above = cost_of(p, pricing.Usage(input_tokens=200_001, output_tokens=1_000))
    # 200k * $1.25/M + 1k * $10/M = $0.25 + $0.01
    assert not at.long_context and at.total_nusd == 260_000_000
    # 200_001 * $2.50/M + 1k * $15/M = $0.5000025 + $0.015
    assert above.long_context and above.total_nusd == 515_002_500


def test_batch_prices_halve_gpt_4o() -> None:
    c = cost_of(price("gpt-4o"), pricing.Usage(input_tokens=1_000_000, output_tokens=100_000),
                batch=True)
    assert c.total_nusd == 1_250_000_000 + 500_000_000


def test_fine_tune_uses_fine_tune_price() -> None:
    # ft:gpt-4o-mini inference: $0.30 in, $1.20 out.
    c = cost_of(CATALOG.resolve("ft:gpt-4o-mini:acme::abc123").price,
                pricing.Usage(input_tokens=1_000, output_tokens=1_000))
    assert c.total_nusd == 300_000 + 1_200_000


def test_rounding_happens_once_half_even() -> None:
    # gpt-5-nano batch cached input is $0.0025/M = 2.5 nusd per token.
    p = price("gpt-5-nano")
    one = cost_of(p, pricing.Usage(input_tokens=1, cached_input_tokens=1), batch=True)
    three = cost_of(p, pricing.Usage(input_tokens=3, cached_input_tokens=3), batch=True)
    assert (one.total_nusd, three.total_nusd) == (2, 8)  # 2.5 -> 2, 7.5 -> 8 (ties to even)
    # 2 * 2.5 = 5.0 exactly: no rounding at all when the exact sum is whole.
    two = cost_of(p, pricing.Usage(input_tokens=2, cached_input_tokens=2), batch=True)
    assert two.total_nusd == 5 and sum(two.parts) == 5
    assert [round_half_even(n, 10) for n in (5, 15, 25, 35)] == [0, 2, 2, 4]


def test_inconsistent_usage_is_refused_with_the_field() -> None:
    with pytest.raises(pricing.InvalidUsage) as err:
        cost_of(price("gpt-4o"), pricing.Usage(input_tokens=10, cached_input_tokens=11))
    assert err.value.field == "usage.cached_input_tokens"
    with pytest.raises(pricing.InvalidUsage):
        cost_of(price("gpt-4o"), pricing.Usage(output_tokens=1, reasoning_tokens=2))
    with pytest.raises(pricing.InvalidUsage):
        cost_of(price("gpt-4o"), pricing.Usage(input_tokens=-1))


prices_st = st.builds(TokenPrices, *[st.integers(0, 200_000_000_000)] * 5)


@st.composite
def usages(draw: st.DrawFn) -> pricing.Usage:
    n = draw(st.integers(0, 10**9))
    cached = draw(st.integers(0, n))
    write = draw(st.integers(0, n - cached))
    out = draw(st.integers(0, 10**8))
    return pricing.Usage(n, cached, write, out, draw(st.integers(0, out)))


@given(prices_st, usages(), st.booleans())
def test_parts_sum_to_the_total_and_total_is_the_exact_sum_rounded(
        prices: TokenPrices, usage: pricing.Usage, batch: bool) -> None:
    p = ModelPrice(standard=prices, batch=prices)
    c = cost_of(p, usage, batch)
    assert sum(c.parts) == c.total_nusd
    assert all(type(x) is int for x in (*c.parts, c.total_nusd))  # never float
    exact = (Decimal(usage.input_tokens - usage.cached_input_tokens
                     - usage.cache_write_input_tokens) * prices.input
             + Decimal(usage.cached_input_tokens) * prices.cached_input
             + Decimal(usage.cache_write_input_tokens) * prices.cache_write
             + Decimal(usage.output_tokens - usage.reasoning_tokens) * prices.output
             + Decimal(usage.reasoning_tokens) * prices.reasoning) / 10**6
    assert c.total_nusd == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@given(st.lists(st.integers(0, 10**15), min_size=1, max_size=8))
def test_largest_remainder_parts_stay_within_one_of_exact(numerators: list[int]) -> None:
    total = round_half_even(sum(numerators), 10**6)
    parts = allocate(numerators, 10**6, total)
    assert sum(parts) == total
    for n, part in zip(numerators, parts, strict=True):
        assert abs(Decimal(part) - Decimal(n) / 10**6) < 1


def test_catalog_prices_are_integers() -> None:
    for entry in CATALOG.entries():
        for schedule in (entry.price.standard, entry.price.batch, entry.price.long_context):
            if schedule is not None:
                assert all(type(v) is int for v in vars(schedule).values()), entry.name
