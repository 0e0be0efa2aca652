"""Run the compressor service: `python -m tokenrt_compressor` or `tokenrt serve compressor`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import tokenrt_pricing
from tokenrt.v1 import compressor_pb2_grpc
from tokenrt_common.server import Runtime, Servicer, ServiceSpec, StartupError, run, servicer
from tokenrt_compressor.api import CompressorApi
from tokenrt_compressor.store import SessionStore
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter
from tokenrt_counter.tokenizers import Tokenizers


def build(runtime: Runtime) -> list[Servicer]:
    s = runtime.settings
    try:
        catalog = tokenrt_pricing.load(s.pricing_overrides_path or None,
                                       s.pricing_litellm_path or None)
    except tokenrt_pricing.CatalogError as exc:
        raise StartupError(f"price catalog: {exc}") from None
    tokenizers = Tokenizers()
    for name in sorted({e.tokenizer for e in catalog.entries()
                        if not e.tokenizer.startswith("estimate:")}):
        try:  # load now, not on the first request
            tokenizers.exact(name)
        except Exception as exc:
            raise StartupError(f"cannot load the tokenizer {name} ({type(exc).__name__}: "
                               f"{exc}); set TIKTOKEN_CACHE_DIR to a folder holding the "
                               "tiktoken files (the repo's ../shared/tiktoken)") from None
    counter = Counter(tokenizers, CountCache(s.compressor_count_cache_bytes))
    pool = ThreadPoolExecutor(max_workers=s.compressor_workers, thread_name_prefix="compress")
    store = SessionStore(runtime.infra, s.compressor_session_ttl_seconds,
                         s.dependency_timeout_seconds)
    runtime.log.info("compressor.ready", models=len(catalog), version=catalog.version)
    return [servicer(CompressorApi(runtime, catalog, counter, store, pool), compressor_pb2_grpc)]


SPEC = ServiceSpec(name="compressor", needs=frozenset({"redis"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
