"""Catalog types -> tokenrt.v1 protobuf messages (common.proto's ModelInfo and friends)."""

from __future__ import annotations

from datetime import UTC, datetime

from tokenrt.v1 import common_pb2
from tokenrt_pricing.cost import Cost
from tokenrt_pricing.model import ModelPrice, Resolved, TokenPrices

PROVIDERS = {
    "openai": common_pb2.PROVIDER_OPENAI,
    "anthropic": common_pb2.PROVIDER_ANTHROPIC,
    "gemini": common_pb2.PROVIDER_GEMINI,
    "openai_compatible": common_pb2.PROVIDER_OPENAI_COMPATIBLE,
    "simulator": common_pb2.PROVIDER_SIMULATOR,
}
PROVIDER_NAMES = {v: k for k, v in PROVIDERS.items()}
TIERS = {
    "economy": common_pb2.MODEL_TIER_ECONOMY,
    "standard": common_pb2.MODEL_TIER_STANDARD,
    "premium": common_pb2.MODEL_TIER_PREMIUM,
}


def token_prices(p: TokenPrices) -> common_pb2.TokenPrices:
    return common_pb2.TokenPrices(
        input_nusd_per_mtok=p.input, cached_input_nusd_per_mtok=p.cached_input,
        cache_write_nusd_per_mtok=p.cache_write, output_nusd_per_mtok=p.output,
        reasoning_nusd_per_mtok=p.reasoning)


def model_price(p: ModelPrice) -> common_pb2.ModelPrice:
    msg = common_pb2.ModelPrice(standard=token_prices(p.standard),
                                long_context_threshold_tokens=p.long_context_threshold,
                                price_version=p.version, source=p.source)
    if p.batch is not None:
        msg.batch.CopyFrom(token_prices(p.batch))
    if p.long_context is not None:
        msg.long_context.CopyFrom(token_prices(p.long_context))
    return msg


def model_info(r: Resolved) -> common_pb2.ModelInfo:
    e = r.entry
    caps = e.capabilities
    info = common_pb2.ModelInfo(
        name=e.name,
        requested_name=r.requested if r.requested != e.name else "",
        provider_model_id=r.provider_model_id,
        provider=PROVIDERS[e.provider],
        vendor=e.vendor,
        tokenizer=e.tokenizer,
        count_exactness=(common_pb2.EXACTNESS_ESTIMATED if e.tokenizer.startswith("estimate:")
                         else common_pb2.EXACTNESS_EXACT),
        context_window_tokens=e.context_window,
        max_output_tokens=e.max_output,
        default_output_tokens=e.default_output or min(e.max_output, 4096),
        price=model_price(r.price),
        capabilities=common_pb2.ModelCapabilities(
            tools="tools" in caps, parallel_tool_calls="parallel_tool_calls" in caps,
            vision="vision" in caps, json_mode="json_mode" in caps,
            json_schema="json_schema" in caps, reasoning="reasoning" in caps,
            streaming="streaming" in caps, prompt_caching="prompt_caching" in caps),
        tier=TIERS.get(e.tier, common_pb2.MODEL_TIER_UNSPECIFIED),
        degrade_to=e.degrade_to,
        base_model=e.name if r.requested.lower() != e.name.lower() else "",
        fine_tuned=r.fine_tuned,
        deprecated=e.deprecated,
        replacement_model=e.replacement,
    )
    if e.sunset is not None:
        info.sunset_at.FromDatetime(datetime(e.sunset.year, e.sunset.month, e.sunset.day,
                                             tzinfo=UTC))
    return info


def cost_breakdown(c: Cost) -> common_pb2.CostBreakdown:
    return common_pb2.CostBreakdown(
        input_cost_nusd=c.input_nusd, cached_input_cost_nusd=c.cached_input_nusd,
        cache_write_cost_nusd=c.cache_write_nusd, output_cost_nusd=c.output_nusd,
        reasoning_cost_nusd=c.reasoning_nusd, total_cost_nusd=c.total_nusd)
