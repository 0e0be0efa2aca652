"""`tokenrt models` and `tokenrt price`: the catalog and exact costs, from the library.

Wire with `tokenrt_pricing.cli.register(subparsers)` (tokenrt_counter.cli.register does
it too). Each command returns an exit code: 0 ok, 2 bad input (unknown model, bad numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tokenrt_pricing import catalog as catalog_mod
from tokenrt_pricing.catalog import Catalog
from tokenrt_pricing.cost import InvalidUsage, Usage, cost_of
from tokenrt_pricing.model import CatalogError, ModelEntry, ModelNotFound, TokenPrices, format_usd


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = subparsers.add_parser("models", help="list the model catalog with prices and windows")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("--all", action="store_true", help="include deprecated models")
    models.set_defaults(func=models_command)

    price = subparsers.add_parser("price", help="exact cost of a usage for a model")
    price.add_argument("--model", required=True)
    price.add_argument("--input", type=int, required=True, help="prompt tokens (all of them)")
    price.add_argument("--output", type=int, required=True,
                       help="generated tokens (reasoning included)")
    price.add_argument("--cached-input", type=int, default=0,
                       help="prompt tokens read from the provider's cache (part of --input)")
    price.add_argument("--cache-write", type=int, default=0,
                       help="prompt tokens written to the cache (part of --input)")
    price.add_argument("--reasoning", type=int, default=0,
                       help="reasoning tokens (part of --output)")
    price.add_argument("--batch", action="store_true", help="batch-API prices")
    price.add_argument("--json", action="store_true", help="machine-readable output")
    price.set_defaults(func=price_command)


def load_catalog() -> Catalog:
    """The catalog as the services see it: settings name the overrides and LiteLLM map."""
    from tokenrt_common.settings import load_settings

    settings = load_settings()
    return catalog_mod.load(settings.pricing_overrides_path or None,
                            settings.pricing_litellm_path or None)


def fail(message: str) -> int:
    print(f"tokenrt: {message}", file=sys.stderr)
    return 2


def prices_json(p: TokenPrices) -> dict[str, Any]:
    return {f"{k}_usd_per_mtok": format_usd(v) for k, v in vars(p).items()}


def entry_json(e: ModelEntry) -> dict[str, Any]:
    price = e.price
    out: dict[str, Any] = {
        "name": e.name, "provider": e.provider, "vendor": e.vendor, "tokenizer": e.tokenizer,
        "context_window_tokens": e.context_window, "max_output_tokens": e.max_output,
        "tier": e.tier, "deprecated": e.deprecated, "price_version": price.version,
        "price_source": price.source, "standard": prices_json(price.standard),
    }
    if price.batch is not None:
        out["batch"] = prices_json(price.batch)
    if price.long_context is not None:
        out["long_context"] = {"above_tokens": price.long_context_threshold,
                               **prices_json(price.long_context)}
    return out


def models_command(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog()
    except (CatalogError, ValueError) as exc:
        return fail(str(exc))
    entries = [e for e in catalog.entries() if args.all or not e.deprecated]
    if args.json:
        print(json.dumps({"catalog_version": catalog.version,
                          "models": [entry_json(e) for e in entries]}, indent=2))
        return 0
    header = f"{'model':28} {'vendor':10} {'context':>9} {'max out':>8} " \
             f"{'in $/1M':>8} {'cached':>8} {'out $/1M':>9}"
    print(header)
    for e in entries:
        s = e.price.standard
        print(f"{e.name:28} {e.vendor:10} {e.context_window:>9} {e.max_output:>8} "
              f"{format_usd(s.input):>8} {format_usd(s.cached_input):>8} "
              f"{format_usd(s.output):>9}")
    print(f"{len(entries)} models, catalog {catalog.version}")
    return 0


def price_command(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog()
        resolved = catalog.resolve(args.model)
        usage = Usage(args.input, args.cached_input, args.cache_write, args.output,
                      args.reasoning)
        cost = cost_of(resolved.price, usage, batch=args.batch)
    except ModelNotFound as exc:
        return fail(str(exc))
    except InvalidUsage as exc:
        message = str(exc).replace("cache_write_input_tokens", "cache_write")
        return fail(message.replace("usage.", "--").replace("_tokens", "").replace("_", "-"))
    except (CatalogError, ValueError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps({
            "model": resolved.name, "requested_model": args.model,
            "cost_usd": format_usd(cost.total_nusd), "cost_nusd": cost.total_nusd,
            "breakdown_nusd": {"input": cost.input_nusd, "cached_input": cost.cached_input_nusd,
                               "cache_write": cost.cache_write_nusd, "output": cost.output_nusd,
                               "reasoning": cost.reasoning_nusd},
            "long_context": cost.long_context, "batch": args.batch,
            "price_version": resolved.price.version,
        }, indent=2))
        return 0
    print(f"${format_usd(cost.total_nusd)} ({cost.total_nusd} nano-USD) for {resolved.name}"
          + (" at long-context prices" if cost.long_context else "")
          + (" at batch prices" if args.batch else ""))
    return 0
