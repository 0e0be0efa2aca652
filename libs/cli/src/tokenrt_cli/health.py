"""Ask each service through the standard gRPC health service whether it is SERVING."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt_common.settings import SERVICES, Settings

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
UNREACHABLE = "UNREACHABLE"


async def check(address: str, timeout_seconds: float = 1.0) -> str:
    """SERVING, NOT_SERVING (it answers but is not ready) or UNREACHABLE."""
    # A fresh channel each time: a reused one would sit in reconnect back-off.
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""),
                                     timeout=timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return UNREACHABLE
            return NOT_SERVING
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return SERVING
    return NOT_SERVING


async def check_all(settings: Settings, timeout_seconds: float = 1.0) -> dict[str, str]:
    states = await asyncio.gather(
        *(check(settings.endpoint(name).address, timeout_seconds) for name in SERVICES))
    return dict(zip(SERVICES, states, strict=True))
