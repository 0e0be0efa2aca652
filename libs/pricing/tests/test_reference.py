"""Every figure of the packaged catalog equals LiteLLM's reference price map."""

from __future__ import annotations

from pathlib import Path

import pytest

import tokenrt_pricing as pricing
from tokenrt_pricing import litellm

REFERENCE = Path(__file__).resolve().parents[4] / "shared" / "pricing" / "model_prices.json"
pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason=f"no reference at {REFERENCE}")
ENTRIES = pricing.load().entries()


@pytest.fixture(scope="module")
def reference() -> dict:
    return litellm.read_map(REFERENCE)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_figures_match_the_reference(entry: pricing.ModelEntry, reference: dict) -> None:
    assert entry.reference in reference, f"{entry.name}: reference {entry.reference!r} missing"
    raw = reference[entry.reference]
    want = litellm.price_of(raw, "", "catalog")
    assert want is not None
    got = entry.price
    assert got.standard == want.standard
    assert got.batch == want.batch
    assert got.long_context_threshold == want.long_context_threshold
    assert got.long_context == want.long_context
    assert got.long_context_batch == want.long_context_batch
    assert entry.context_window == raw["max_input_tokens"]
    assert entry.max_output == (raw.get("max_output_tokens") or 0)
    if entry.fine_tune_reference:
        ft = litellm.price_of(reference[entry.fine_tune_reference], "", "catalog")
        assert entry.fine_tune_price is not None and ft is not None
        assert entry.fine_tune_price.standard == ft.standard
        assert entry.fine_tune_price.batch == ft.batch
