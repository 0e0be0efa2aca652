"""Run the counter service: `python -m tokenrt_counter` or `tokenrt serve counter`."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import tokenrt_pricing
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common.server import Runtime, Servicer, ServiceSpec, StartupError, run, servicer
from tokenrt_counter.api import CounterApi
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter
from tokenrt_counter.metrics import CounterCollector
from tokenrt_counter.provider_api import ProviderCounts, endpoints
from tokenrt_counter.runner import Runner
from tokenrt_counter.store import CalibrationStore
from tokenrt_counter.tokenizers import Tokenizers


def load_catalog(runtime: Runtime) -> tokenrt_pricing.Catalog:
    s = runtime.settings
    try:
        return tokenrt_pricing.load(s.pricing_overrides_path or None,
                                    s.pricing_litellm_path or None)
    except tokenrt_pricing.CatalogError as exc:
        raise StartupError(f"price catalog: {exc}") from None


def build(runtime: Runtime) -> list[Servicer]:
    s = runtime.settings
    catalog = load_catalog(runtime)
    tokenizers = Tokenizers()
    exact = sorted({e.tokenizer for e in catalog.entries()
                    if not e.tokenizer.startswith("estimate:")})
    for name in exact:  # load now, not on the first request (in the event loop)
        try:
            tokenizers.exact(name)
        except Exception as exc:  # tiktoken tries to download a missing file, and fails
            raise StartupError(
                f"cannot load the tokenizer {name} ({type(exc).__name__}: {exc}); for tiktoken "
                "encodings set TIKTOKEN_CACHE_DIR to a folder holding their files (the repo's "
                "../shared/tiktoken)"
            ) from None
    counter = Counter(tokenizers, CountCache(s.counter_cache_bytes))
    pool = ThreadPoolExecutor(max_workers=s.counter_workers, thread_name_prefix="count")
    store = CalibrationStore(runtime.infra, s.counter_calibration_window,
                             s.dependency_timeout_seconds)
    provider = None
    enabled = endpoints(s, os.environ, runtime.log)
    if enabled:
        provider = ProviderCounts(enabled, counter.cache,
                                  s.counter_provider_count_timeout_ms / 1000, runtime.log)
        runtime.close_at_shutdown(provider.close, "provider-counts")
    runner = Runner(counter, store, pool, s.counter_workers, s.counter_offload_bytes, runtime.log,
                    provider)
    api = CounterApi(runtime, catalog, runner)
    runtime.spawn(runner.refresh_fits(), name="refresh-fits")
    runtime.metrics.registry.register(CounterCollector(counter, provider))
    runtime.log.info("counter.catalog_loaded", models=len(catalog), version=catalog.version)
    return [servicer(api, counter_pb2_grpc)]


SPEC = ServiceSpec(name="counter", needs=frozenset({"redis"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
