"""Name resolution, unknown models, user overrides and LiteLLM maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tokenrt_pricing as pricing
from tokenrt_pricing import Match

CATALOG = pricing.load()
REFERENCE = Path(__file__).resolve().parents[4] / "shared" / "pricing" / "model_prices.json"


@pytest.mark.parametrize(("name", "canonical", "match"), [
    ("gpt-4o", "gpt-4o", Match.EXACT),
    ("GPT-4o", "gpt-4o", Match.EXACT),
    ("gpt-4o-2024-08-06", "gpt-4o", Match.SNAPSHOT),
    ("gpt-4-0613", "gpt-4", Match.SNAPSHOT),
    ("claude-opus-4-5-20251101", "claude-opus-4-5", Match.SNAPSHOT),
    ("mistral-large", "mistral-large-latest", Match.ALIAS),
    ("openai/gpt-4.1-mini", "gpt-4.1-mini", Match.ALIAS),
    ("models/gemini-2.5-pro", "gemini-2.5-pro", Match.ALIAS),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b", Match.ALIAS),
    ("ft:gpt-4o-mini:acme::abc123", "gpt-4o-mini", Match.FINE_TUNE),
    ("ft:gpt-4o-mini-2024-07-18:acme:custom:abc123", "gpt-4o-mini", Match.FINE_TUNE),
])
def test_resolution(name: str, canonical: str, match: Match) -> None:
    r = CATALOG.resolve(name)
    assert (r.name, r.match) == (canonical, match)


def test_snapshot_keeps_the_provider_id_and_a_priced_snapshot_wins() -> None:
    assert CATALOG.resolve("gpt-4o-2024-08-06").provider_model_id == "gpt-4o-2024-08-06"
    # gpt-4o-2024-05-13 has its own (higher) price: exact entry beats snapshot stripping.
    old = CATALOG.resolve("gpt-4o-2024-05-13")
    assert old.match is Match.EXACT and old.price.standard.input == 5_000_000_000


def test_other_hosts_and_repriced_snapshots_never_get_the_makers_price() -> None:
    # Azure's EU gpt-4o costs 10% more: without its own entry it is unknown, not $2.50.
    with pytest.raises(pricing.ModelNotFound):
        CATALOG.resolve("azure/eu/gpt-4o")
    with pytest.raises(pricing.ModelNotFound):
        CATALOG.resolve("kyma/claude-haiku-4-5")
    # gpt-3.5-turbo-1106 is priced $1/$2, not like gpt-3.5-turbo ($0.50/$1.50).
    old = CATALOG.resolve("gpt-3.5-turbo-1106")
    assert old.match is Match.EXACT and old.price.standard.input == 1_000_000_000


def test_fine_tune_is_priced_as_a_fine_tune() -> None:
    ft = CATALOG.resolve("ft:gpt-4o-mini:acme::abc123")
    assert ft.fine_tuned and ft.provider_model_id == "ft:gpt-4o-mini:acme::abc123"
    assert ft.price.standard.input == 300_000_000  # $0.30/M, vs $0.15/M for the base


def test_simulator_names_keep_the_real_price() -> None:
    r = CATALOG.resolve("sim/gpt-4o-mini")
    assert r.entry.name == "sim/gpt-4o-mini" and r.entry.provider == "simulator"
    assert r.price == CATALOG.resolve("gpt-4o-mini").price


def test_unknown_model_names_the_closest() -> None:
    with pytest.raises(pricing.ModelNotFound) as err:
        CATALOG.resolve("gpt-4o-mnii")
    assert err.value.suggestions[0] == "gpt-4o-mini"
    assert "gpt-4o-mini" in str(err.value)
    with pytest.raises(pricing.ModelNotFound):
        CATALOG.resolve("ft:no-such-base:org::x")
    with pytest.raises(pricing.ModelNotFound):
        CATALOG.resolve("")


def test_every_vendor_is_covered() -> None:
    vendors = {e.vendor for e in CATALOG.entries()}
    assert {"openai", "anthropic", "google", "deepseek", "mistral", "meta"} <= vendors
    for e in CATALOG.entries():
        assert e.context_window > 0, e.name
        if e.degrade_to:
            assert e.degrade_to in CATALOG, e.name


def test_overrides_change_add_and_alias(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("""
models:
  - name: gpt-4o
    prices: {input: "2.00"}
    context_window: 100000
  - name: acme-local-coder
    provider: openai_compatible
    vendor: acme
    tokenizer: estimate:llama
    context_window: 32768
    max_output: 4096
    prices: {input: "0.01", output: "0.02"}
aliases:
  fast: gpt-4o-mini
""")
    catalog = pricing.load(overrides_path=path)
    gpt = catalog.resolve("gpt-4o")
    assert gpt.price.standard.input == 2_000_000_000
    assert gpt.price.standard.output == 10_000_000_000  # untouched fields stay
    assert gpt.price.source == "override" and gpt.entry.context_window == 100000
    assert catalog.resolve("acme-local-coder").price.standard.output == 20_000_000
    assert catalog.resolve("fast").name == "gpt-4o-mini"
    assert "+override:" in catalog.version
    assert CATALOG.resolve("gpt-4o").price.standard.input == 2_500_000_000


@pytest.mark.parametrize(("text", "needle"), [
    ("models:\n  - name: gpt-4o\n    prices: {input: 2.5}\n", "quoted decimal strings"),
    ("models:\n  - name: x\n    provider: openai\n    context_window: 1\n", "`prices` is required"),
    ("models:\n  - name: x\n    provider: nope\n", "provider 'nope'"),
    ("models:\n  - name: gpt-4o\n    prices: {inptu: \"1\"}\n", "unknown price field"),
    ("aliases: {fast: no-such-model}\n", "unknown model 'no-such-model'"),
    ("models: [\n", "not valid YAML"),
])
def test_bad_override_files_say_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(pricing.CatalogError, match=needle.replace("(", r"\(")):
        pricing.load(overrides_path=path)


def test_litellm_map_below_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({
        "sample_spec": {"mode": "chat"},
        "acme/tiny": {"litellm_provider": "acme", "mode": "chat", "max_input_tokens": 8000,
                      "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07},
        "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 1,
                   "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
        "image-only": {"mode": "image_generation", "input_cost_per_image": 0.04},
    }))
    catalog = pricing.load(litellm_path=path)
    tiny = catalog.resolve("acme/tiny")
    assert tiny.price.source == "litellm" and tiny.price.standard.input == 150_000_000
    assert catalog.resolve("gpt-4o").price.standard.input == 2_500_000_000  # curated wins
    assert "image-only" not in catalog


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference map not at {REFERENCE}")
def test_full_litellm_map_covers_thousands_of_models() -> None:
    catalog = pricing.load(litellm_path=REFERENCE)
    assert len(catalog) > 3000
    assert catalog.resolve("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"
                           ).price.standard.input == 1_040_000_000
