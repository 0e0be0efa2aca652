"""The call wrapper and client channel, on a real in-process gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import structlog

from tokenrt_common.client import open_channel_to
from tokenrt_common.context import request_id
from tokenrt_common.interceptors import CallWrapper
from tokenrt_common.metrics import Metrics
from tokenrt_common.settings import load_settings


async def echo_request_id(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return (request_id.get() or "").encode()


async def deadline(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return str(context.time_remaining()).encode()


async def explode(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise ValueError("a bug in a handler")


async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model: must not be empty")


async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"one"
    raise RuntimeError("broke mid-stream")


async def endless(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    while True:  # large items: flow control holds the generator at its yield
        yield b"x" * 65536


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Metrics]]:
    metrics = Metrics("test")
    srv = grpc.aio.server()
    CallWrapper(structlog.get_logger(), metrics).server(srv).add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo_request_id),
        "Deadline": grpc.unary_unary_rpc_method_handler(deadline),
        "Explode": grpc.unary_unary_rpc_method_handler(explode),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Endless": grpc.unary_stream_rpc_method_handler(endless),
    })])
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield f"127.0.0.1:{port}", metrics
    await srv.stop(None)


def count(metrics: Metrics, method: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "tokenrt_grpc_requests_total", {"service": "test", "method": method, "code": code})
    return value or 0.0


async def counted(metrics: Metrics, method: str, code: str) -> float:
    """The count once the server has finished the call: an aborted call's status reaches
    the client before the server's bookkeeping after it has run."""
    for _ in range(100):
        if count(metrics, method, code):
            break
        await asyncio.sleep(0.05)
    return count(metrics, method, code)


async def test_unhandled_exception_becomes_internal_with_request_id(server) -> None:
    address, metrics = server
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary("/t.T/Explode")(b"", timeout=5,
                                                     metadata=(("x-request-id", "rid-42"),))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "request id rid-42" in err.value.details()
        assert "a bug in a handler" not in err.value.details()  # internals stay inside
        # The server is still there.
        assert await channel.unary_unary("/t.T/Echo")(b"", timeout=5)
    assert await counted(metrics, "/t.T/Explode", "INTERNAL") == 1


async def test_abort_keeps_its_code_and_is_counted(server) -> None:
    address, metrics = server
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary("/t.T/Refuse")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "model: must not be empty"
    assert await counted(metrics, "/t.T/Refuse", "INVALID_ARGUMENT") == 1


async def test_streaming_failure_is_internal(server) -> None:
    address, metrics = server
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_stream("/t.T/Stream")(b"", timeout=5)
        got = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for item in call:
                got.append(item)
    assert got == [b"one"]
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert await counted(metrics, "/t.T/Stream", "INTERNAL") == 1


async def test_a_stream_the_caller_cancels_is_cancelled_not_internal(server) -> None:
    address, metrics = server
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_stream("/t.T/Endless")(b"", timeout=5)
        async for _ in call:
            call.cancel()
            break
    # The server notices the cancellation on its own time.
    assert await counted(metrics, "/t.T/Endless", "CANCELLED") == 1
    assert count(metrics, "/t.T/Endless", "INTERNAL") == 0


async def test_client_channel_carries_request_id_and_default_deadline(server) -> None:
    address, metrics = server
    settings = load_settings({})
    channel = open_channel_to(address, settings)
    try:
        token = request_id.set("from-the-caller")
        try:
            assert await channel.unary_unary("/t.T/Echo")(b"") == b"from-the-caller"
        finally:
            request_id.reset(token)
        fresh = await channel.unary_unary("/t.T/Echo")(b"")
        assert len(fresh) == 32 and fresh != b"from-the-caller"  # a new id, not an empty one
        remaining = float(await channel.unary_unary("/t.T/Deadline")(b""))
        assert 0 < remaining <= settings.rpc_timeout_seconds + 0.1  # clocks differ a little
        remaining = float(await channel.unary_unary("/t.T/Deadline")(b"", timeout=60))
        assert settings.rpc_timeout_seconds + 1 < remaining <= 60.1
    finally:
        await channel.close()
    assert count(metrics, "/t.T/Echo", "OK") == 2


async def test_registered_methods_are_wrapped_too_and_an_explicit_request_id_is_kept() -> None:
    # Generated code registers each service twice: as a generic handler and as registered
    # methods (which gRPC prefers); both must go through the wrapper.
    metrics = Metrics("test")
    srv = grpc.aio.server()
    CallWrapper(structlog.get_logger(), metrics).server(srv).add_registered_method_handlers(
        "t.R", {"Echo": grpc.unary_unary_rpc_method_handler(echo_request_id)})
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    channel = open_channel_to(f"127.0.0.1:{port}", load_settings({}))
    try:
        call = channel.unary_unary("/t.R/Echo", _registered_method=True)
        assert await call(b"", metadata=(("x-request-id", "given"),)) == b"given"
        assert len(await call(b"", metadata=(("other", "x"),))) == 32
    finally:
        await channel.close()
        await srv.stop(None)
    assert count(metrics, "/t.R/Echo", "OK") == 2
