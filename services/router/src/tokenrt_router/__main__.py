"""Run the router service: `python -m tokenrt_router` or `tokenrt serve router`."""

from __future__ import annotations

import asyncio

from tokenrt.v1 import (
    budget_pb2_grpc,
    cache_pb2_grpc,
    compressor_pb2_grpc,
    counter_pb2_grpc,
    router_pb2_grpc,
)
from tokenrt_common.client import open_channel
from tokenrt_common.server import Runtime, ServiceSpec, StartupError, run, servicer
from tokenrt_pricing import catalog as pricing_catalog
from tokenrt_router import http_api
from tokenrt_router.api import RouterApi
from tokenrt_router.keys import KeyConfigError, KeyMap, keys_for
from tokenrt_router.metrics import RouterCollector
from tokenrt_router.pipeline import Deps, Router
from tokenrt_router.providers import registry
from tokenrt_router.providers.base import Provider
from tokenrt_usage.publisher import Publisher


def build(runtime: Runtime) -> list:  # type: ignore[type-arg]
    s = runtime.settings
    try:
        static = KeyMap.from_settings(s)
    except KeyConfigError as exc:
        raise StartupError(str(exc)) from None
    if not len(static):
        runtime.log.warning("router.no_bootstrap_keys",
                            hint="set TOKENRT_ROUTER_KEYS_FILE (an admin key makes the others)")
    keys = keys_for(s, static, lambda: runtime.infra.pg, runtime.log)
    assert keys.store is not None
    runtime.spawn(keys.store.migrate(lambda: runtime.infra.wait_for("postgres")),
                  "router-keys-migrate")
    publisher = Publisher.from_settings(s, runtime.log)
    deps = Deps(counter_pb2_grpc.CounterServiceStub(open_channel(s, "counter")),
                cache_pb2_grpc.CacheServiceStub(open_channel(s, "cache")),
                budget_pb2_grpc.BudgetServiceStub(open_channel(s, "budget")),
                compressor_pb2_grpc.CompressorServiceStub(open_channel(s, "compressor")),
                publisher)
    providers = registry.for_router(s, runtime.log)
    catalog = pricing_catalog.load(s.pricing_overrides_path or None,
                                   s.pricing_litellm_path or None)
    router = Router(s, runtime.log, deps, catalog, providers)
    runtime.metrics.registry.register(RouterCollector(router))
    runtime.spawn(_lifecycle(router, publisher, providers), "router-lifecycle")
    http_api.start(runtime, router, keys)
    return [servicer(RouterApi(router, keys), router_pb2_grpc)]


async def _lifecycle(router: Router, publisher: Publisher,
                     providers: dict[str, Provider]) -> None:
    await publisher.start()
    router.start()  # replays what a router before this one left in the journal
    try:
        await asyncio.Event().wait()
    finally:
        await router.drain()
        for p in providers.values():
            await p.close()
        await publisher.close()


SPEC = ServiceSpec(name="router", needs=frozenset({"nats", "postgres"}), build=build)


def main() -> None:
    run(SPEC)


if __name__ == "__main__":
    main()
