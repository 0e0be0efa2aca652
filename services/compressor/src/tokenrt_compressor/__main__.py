"""Run the compressor service: `python -m tokenrt_compressor` or `tokenrt serve compressor`."""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ThreadPoolExecutor

import tokenrt_pricing
from tokenrt.v1 import compressor_pb2_grpc, router_pb2_grpc
from tokenrt_common.client import open_channel, open_channel_to
from tokenrt_common.secrets import SecretError, env_names, read_key
from tokenrt_common.server import Runtime, Servicer, ServiceSpec, StartupError, run, servicer
from tokenrt_common.settings import Settings
from tokenrt_compressor import warmup
from tokenrt_compressor.api import CompressorApi
from tokenrt_compressor.routed import RouterSummarizer, Summaries
from tokenrt_compressor.store import SessionStore
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter
from tokenrt_counter.tokenizers import Tokenizers


def summary_key(s: Settings) -> str:
    """The router API key of the compressor's summary calls, from the key file or else the
    named environment variable (tokenrt_common.secrets); "" when neither is set. Never
    logged."""
    try:
        key = read_key(s.compressor_summary_key_file, env_names(s.compressor_summary_key_env),
                       os.environ, setting="TOKENRT_COMPRESSOR_SUMMARY_KEY_FILE")
    except SecretError as exc:
        raise StartupError(str(exc)) from None
    return key.reveal() if key is not None else ""


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
    key = summary_key(s)
    router = RouterSummarizer(
        router_pb2_grpc.RouterServiceStub(open_channel(s, "router")), key,
        s.compressor_summary_timeout_seconds, s.compressor_summary_input_max_tokens
    ) if key else None
    summaries = Summaries(store, router, s.compressor_summary_model, runtime.log)
    api = CompressorApi(runtime, catalog, counter, store, pool, summaries)
    start = time.perf_counter()
    try:  # on a worker thread, as requests run; before the service reports SERVING
        done = pool.submit(api.warm_up).result()
    except Exception as exc:
        raise StartupError(f"the start-up self-test compression failed ({type(exc).__name__}: "
                           f"{exc})") from None
    runtime.log.info("compressor.ready", models=len(catalog), version=catalog.version,
                     summaries=f"router:{s.compressor_summary_model}" if key else "extractive",
                     warm_up_ms=round((time.perf_counter() - start) * 1000),
                     warm_up_strategy_ms={k: round(v, 1) for k, v in done.spent_ms.items()})
    model, target = next(((m, t) for m, t in done.targets.items()
                          if not catalog.resolve(m).entry.tokenizer.startswith("estimate:")),
                         next(iter(done.targets.items())))

    async def call_self() -> None:  # once the server listens, before SERVING
        async with open_channel_to(own_address(s), s) as channel:
            await warmup.call_self(channel, model, target, runtime.log)
        # What start-up built (catalog, tokenizers, modules: ~80k objects) lives as long as
        # the process: out of the cyclic collector's scans (one full pass over it cost
        # ~35 ms of CPU, inside whichever request would trigger it).
        gc.collect()
        gc.freeze()

    runtime.warm_up = call_self
    return [servicer(api, compressor_pb2_grpc)]


def own_address(s: Settings) -> str:
    """This process's gRPC address as seen from itself."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(s.bind_host,
                                                                         s.bind_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{s.endpoint('compressor').port}"


SPEC = ServiceSpec(name="compressor", needs=frozenset({"redis"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
