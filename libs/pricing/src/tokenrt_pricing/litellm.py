"""LiteLLM's price map format (`model_prices_and_context_window.json`) -> catalog types.

Prices there are USD per token; parse the file with `parse_float=decimal.Decimal` so no
binary float ever touches them. Conventions applied (the map's README documents them):

* a missing cache-read price means no discount: cached input costs the input price;
* a missing or zero cache-write price means writes are not billed separately: they
  cost the input price;
* reasoning tokens cost `output_cost_per_reasoning_token` when given, else the output price;
* `*_above_<N>k_tokens` fields form the long-context tier (threshold N * 1000 tokens);
* `*_batches` fields form the batch schedule.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from tokenrt_pricing.model import (
    NUSD_PER_USD,
    TOKENS_PER_MTOK,
    CatalogError,
    ModelEntry,
    ModelPrice,
    TokenPrices,
)

_LONG = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
_MODES = {"chat", "responses", "completion", "embedding"}
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}
_CAPABILITIES = {
    "supports_function_calling": "tools",
    "supports_parallel_function_calling": "parallel_tool_calls",
    "supports_vision": "vision",
    "supports_response_schema": "json_schema",
    "supports_reasoning": "reasoning",
    "supports_prompt_caching": "prompt_caching",
}


def read_map(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(), parse_float=Decimal)
    except OSError as exc:
        raise CatalogError(f"cannot read LiteLLM price map {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected an object of model names to entries")
    return data


def per_token_to_nusd_per_mtok(value: Any) -> int:
    """USD per token -> nusd per million tokens, rounded half-even to 1 nusd/Mtok."""
    exact = Decimal(value) * NUSD_PER_USD * TOKENS_PER_MTOK
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _get(entry: dict[str, Any], field: str) -> int | None:
    value = entry.get(field)
    if value is None or isinstance(value, (bool, str, dict, list)):
        return None
    return per_token_to_nusd_per_mtok(value)


def schedule(entry: dict[str, Any], tier: str = "", mode: str = "") -> TokenPrices | None:
    """One schedule: tier is "" or "_above_200k_tokens"; mode is "" or "_batches"."""
    input_ = _get(entry, f"input_cost_per_token{tier}{mode}")
    if input_ is None:
        return None
    output = _get(entry, f"output_cost_per_token{tier}{mode}")
    if output is None:
        output = _get(entry, f"output_cost_per_token{mode}") or 0
    cached = _get(entry, f"cache_read_input_token_cost{tier}{mode}")
    write = _get(entry, f"cache_creation_input_token_cost{tier}{mode}")
    reasoning = _get(entry, f"output_cost_per_reasoning_token{tier}{mode}")
    return TokenPrices(
        input=input_,
        cached_input=input_ if cached is None else cached,
        cache_write=input_ if not write else write,
        output=output,
        reasoning=output if reasoning is None else reasoning,
    )


def price_of(entry: dict[str, Any], version: str, source: str = "litellm") -> ModelPrice | None:
    standard = schedule(entry)
    if standard is None:
        return None
    threshold = 0
    for key in entry:
        m = _LONG.match(key)
        if m:
            threshold = int(m.group(1)) * 1000
            break
    tier = f"_above_{threshold // 1000}k_tokens" if threshold else ""
    return ModelPrice(
        standard=standard,
        batch=schedule(entry, mode="_batches"),
        long_context_threshold=threshold,
        long_context=schedule(entry, tier) if threshold else None,
        long_context_batch=schedule(entry, tier, "_batches") if threshold else None,
        version=version,
        source=source,
    )


def guess_tokenizer(name: str, provider: str) -> str:
    base = name.rsplit("/", 1)[-1].lower()
    if provider == "openai":
        if base.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-6", "o1", "o3", "o4",
                            "chatgpt", "gpt-oss")):
            return "o200k_base"
        if base.startswith(("gpt-4", "gpt-3.5", "text-embedding")):
            return "cl100k_base"
    for family in ("claude", "gemini", "llama", "mistral", "deepseek", "qwen"):
        if family in base:
            return f"estimate:{family}"
    return "estimate:generic"


def entries(data: dict[str, Any], version: str) -> list[ModelEntry]:
    """Every priced text model of a LiteLLM map as catalog entries (source "litellm")."""
    out: list[ModelEntry] = []
    for name, raw in data.items():
        if name == "sample_spec" or not isinstance(raw, dict) or raw.get("mode") not in _MODES:
            continue
        try:
            price = price_of(raw, version)
        except (ArithmeticError, TypeError, ValueError):
            continue  # a malformed price: skip the entry rather than guess it
        if price is None:
            continue
        provider = _PROVIDERS.get(str(raw.get("litellm_provider")), "openai_compatible")
        caps = {cap for flag, cap in _CAPABILITIES.items() if raw.get(flag)}
        if "json_schema" in caps:
            caps.add("json_mode")
        caps.add("streaming")
        window = raw.get("max_input_tokens") or raw.get("max_tokens") or 0
        out.append(ModelEntry(
            name=name, provider=provider, vendor=str(raw.get("litellm_provider", "")),
            tokenizer=guess_tokenizer(name, provider),
            context_window=int(window), max_output=int(raw.get("max_output_tokens") or 0),
            price=price, capabilities=frozenset(caps),
            replacement=str(raw.get("successor_model") or ""), reference=name,
        ))
    return out
