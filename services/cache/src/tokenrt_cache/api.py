"""gRPC servicer of the cache service: protobuf in, service calls, protobuf and status out."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from tokenrt.v1 import cache_pb2, cache_pb2_grpc, common_pb2
from tokenrt_cache.core import RequestError
from tokenrt_cache.service import CacheService, DependencyDown
from tokenrt_common.errors import abort

T = TypeVar("T")


async def _answer(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    try:
        return await work
    except RequestError as exc:
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                    common_pb2.ERROR_REASON_INVALID_ARGUMENT, str(exc), field=exc.field)
    except DependencyDown as exc:
        await abort(context, grpc.StatusCode.UNAVAILABLE,
                    common_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE, str(exc))


class CacheApi(cache_pb2_grpc.CacheServiceServicer):
    def __init__(self, service: CacheService) -> None:
        self._service = service

    async def Lookup(self, request: cache_pb2.LookupRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> cache_pb2.LookupResponse:
        return await _answer(context, self._service.lookup(request))

    async def LookupBatch(self, request: cache_pb2.LookupBatchRequest,  # noqa: N802
                          context: grpc.aio.ServicerContext) -> cache_pb2.LookupBatchResponse:
        return await _answer(context, self._service.lookup_batch(request))

    async def Store(self, request: cache_pb2.StoreRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> cache_pb2.StoreResponse:
        return await _answer(context, self._service.store(request))

    async def StoreBatch(self, request: cache_pb2.StoreBatchRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext) -> cache_pb2.StoreBatchResponse:
        return await _answer(context, self._service.store_batch(request))

    async def Invalidate(self, request: cache_pb2.InvalidateRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext) -> cache_pb2.InvalidateResponse:
        return await _answer(context, self._service.invalidate(request))

    async def Stats(self, request: cache_pb2.StatsRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext) -> cache_pb2.StatsResponse:
        return await _answer(context, self._service.stats(request))

    async def GetTenantConfig(self, request: cache_pb2.GetTenantConfigRequest,  # noqa: N802
                              context: grpc.aio.ServicerContext
                              ) -> cache_pb2.GetTenantConfigResponse:
        config = await _answer(context, self._service.get_config(request))
        return cache_pb2.GetTenantConfigResponse(config=config)

    async def SetTenantConfig(self, request: cache_pb2.SetTenantConfigRequest,  # noqa: N802
                              context: grpc.aio.ServicerContext
                              ) -> cache_pb2.SetTenantConfigResponse:
        config = await _answer(context, self._service.set_config(request))
        return cache_pb2.SetTenantConfigResponse(config=config)
