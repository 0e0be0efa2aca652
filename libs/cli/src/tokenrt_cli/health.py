"""Ask each service through the standard gRPC health service whether it is SERVING."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt_common.client import channel_credentials, tls_options
from tokenrt_common.settings import SERVICES, Settings, load_settings

SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
UNREACHABLE = "UNREACHABLE"


def _channel(address: str, settings: Settings | None) -> grpc.aio.Channel:
    """Plaintext, or TLS when TOKENRT_TLS_MODE says so (None = this process's settings)."""
    settings = settings or load_settings()
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials, options=tls_options(settings))


async def check(address: str, timeout_seconds: float = 1.0,
                settings: Settings | None = None) -> str:
    """SERVING, NOT_SERVING (it answers but is not ready) or UNREACHABLE."""
    # A fresh channel each time: a reused one would sit in reconnect back-off.
    async with _channel(address, settings) as channel:
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
        *(check(settings.endpoint(name).address, timeout_seconds, settings)
          for name in SERVICES))
    return dict(zip(SERVICES, states, strict=True))
