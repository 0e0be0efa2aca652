"""Run the cache service: `python -m tokenrt_cache` or `tokenrt serve cache`."""

from __future__ import annotations

from tokenrt.v1 import cache_pb2_grpc
from tokenrt_cache.api import CacheApi
from tokenrt_cache.service import CacheService
from tokenrt_cache.store import CacheStore
from tokenrt_common.server import (
    Runtime,
    Servicer,
    ServiceSpec,
    StartupError,
    run,
    servicer,
)


def build(runtime: Runtime) -> list[Servicer]:
    store = CacheStore(runtime.infra, runtime.settings.cache_redis_prefix)
    service = CacheService(runtime.settings, store, runtime.log, runtime.metrics.registry)
    if service.defaults.backend not in service.available:
        raise StartupError("TOKENRT_CACHE_EMBEDDING_BACKEND is 'local' but the model is not "
                           "installed: install tokenrt-cache[local-model]")
    runtime.spawn(service.run_background(), "cache-background")
    return [servicer(CacheApi(service), cache_pb2_grpc)]


SPEC = ServiceSpec(name="cache", needs=frozenset({"redis"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
