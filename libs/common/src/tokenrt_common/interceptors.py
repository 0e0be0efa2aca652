"""Server-side call wrapper: request id, logs, metrics, and no raw exceptions out.

Every call gets the caller's `x-request-id` (or a new one), bound into structlog's
context so every event logged while serving it carries it, and set as the context
variable that outgoing client calls copy. Each call is counted by method and status
code. A request body that does not decode (malformed, truncated, invalid UTF-8 in a
string, nested too deep) is INVALID_ARGUMENT naming the message type, before the handler
runs; so is a value the database refuses as data (SQLSTATE class 22, e.g. a NUL character
in text) that a handler let through. Any other exception a handler did not turn into a
status becomes INTERNAL with the request id in the message, and is logged with its
traceback; the service goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError

from tokenrt.v1 import common_pb2
from tokenrt_common.context import REQUEST_ID_HEADER, new_request_id, request_id, rpc_method
from tokenrt_common.errors import DETAIL_KEY, error_detail
from tokenrt_common.metrics import Metrics


class BadRequestBody(Exception):
    """The request bytes are not a valid message of the method's request type."""


class CallWrapper:
    """Wraps every method handler of a server once, when it is registered.

    A grpc.aio server interceptor runs for every call and builds a new handler each time
    (~0.1 ms of CPU per call here); a handler wrapped at registration costs nothing until
    it is called. Register services on `wrapper.server(server)` instead of the server.
    """

    def __init__(self, log: structlog.stdlib.BoundLogger, metrics: Metrics,
                 fault_delay_ms: int = 0) -> None:
        self._log = log
        self._metrics = metrics
        self._delay = fault_delay_ms / 1000

    def server(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """The server, with every handler registered through it wrapped."""
        return cast(grpc.aio.Server, _WrappingServer(server, self))

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        log, metrics = self._log, self._metrics
        # Fault drills slow the service's own RPCs, never health checks or reflection.
        delay = self._delay if method.startswith("/tokenrt.") else 0.0
        # A unary request is decoded here, inside the call's bookkeeping, so a body that
        # does not parse is INVALID_ARGUMENT (gRPC itself would answer UNKNOWN).
        decode = (handler.request_deserializer
                  if handler.unary_unary or handler.unary_stream else None)
        wire_in = None if decode else handler.request_deserializer

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with _Call(log, metrics, delay, method, context):
                    return await inner(_decoded(decode, request), context)

            factory = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                       else grpc.stream_unary_rpc_method_handler)
            return factory(unary, wire_in, handler.response_serializer)

        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with _Call(log, metrics, delay, method, context):
                result = inner_stream(_decoded(decode, request), context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                else:  # a coroutine that writes with context.write()
                    await result

        factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                   else grpc.stream_stream_rpc_method_handler)
        return factory(streaming, wire_in, handler.response_serializer)


class _WrappingServer:
    """A grpc.aio server whose handler registrations go through a CallWrapper."""

    def __init__(self, server: grpc.aio.Server, wrapper: CallWrapper) -> None:
        self._server = server
        self._wrapper = wrapper

    def add_registered_method_handlers(
            self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service, {
            name: self._wrapper.wrap(handler, f"/{service}/{name}")
            for name, handler in handlers.items()})

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            [_WrappedGeneric(handler, self._wrapper) for handler in handlers])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


# Code that registers services checks for an asyncio server (reflection picks its asyncio
# servicer that way); this is one, by delegation.
grpc.aio.Server.register(_WrappingServer)


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler (looked up per call by method name): each method wrapped once."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrapper: CallWrapper) -> None:
        self._inner = inner
        self._wrapper = wrapper
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(details)
        if handler is None:  # not ours: another handler or UNIMPLEMENTED
            return None
        method: str = details.method  # type: ignore[attr-defined]  # set by grpc
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = (handler, self._wrapper.wrap(handler, method))
            self._wrapped[method] = known
        return known[1]


def _decoded(decode: Callable[[bytes], Any] | None, request: Any) -> Any:
    if decode is None:
        return request
    try:
        return decode(request)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise BadRequestBody(f"the request body is not a valid message: {exc}") from None


class _Call:
    """The bookkeeping around one call: context, timing, status code, error mapping."""

    def __init__(self, log: structlog.stdlib.BoundLogger, metrics: Metrics, delay: float,
                 method: str, context: grpc.aio.ServicerContext) -> None:
        self._log = log
        self._metrics = metrics
        self._delay = delay
        self._method = method
        self._rid = _request_id(context.invocation_metadata())
        self._context = context
        self._start = 0.0

    async def __aenter__(self) -> None:
        # Each call runs in its own task, so these do not leak into other calls.
        request_id.set(self._rid)
        rpc_method.set(self._method)
        self._metrics.in_flight_now.inc()
        self._start = time.perf_counter()
        if self._delay:
            await asyncio.sleep(self._delay)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: Any) -> bool:
        code = _code_name(self._context.code())
        try:
            if kind is None:
                return False
            # A caller that cancels a server stream closes its generator (GeneratorExit).
            if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                code = "CANCELLED"
                return False
            if isinstance(exc, grpc.aio.AbortError) or code not in ("OK", "UNKNOWN"):
                return False
            if isinstance(exc, BadRequestBody) or _data_exception(exc):
                code = "INVALID_ARGUMENT"
                message = (str(exc) if isinstance(exc, BadRequestBody) else
                           f"a value in the request cannot be stored or compared: {exc}")
                detail = error_detail(common_pb2.ERROR_REASON_INVALID_ARGUMENT)
                await self._context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{self._method}: {message}",
                    trailing_metadata=((DETAIL_KEY, detail.SerializeToString()),))
            code = "INTERNAL"
            self._log.error("rpc.failed", exc_info=exc)
            await self._context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error while serving {self._method}; request id {self._rid}",
            )
            return False  # abort raises; this line is not reached
        finally:
            seconds = time.perf_counter() - self._start
            self._metrics.in_flight_now.dec()
            self._metrics.observe(self._method, code, seconds)
            # Successful calls are logged only at debug level: they are counted in metrics.
            (self._log.debug if code == "OK" else self._log.info)(
                "rpc.done", code=code, duration_ms=round(seconds * 1000, 3))


def _data_exception(exc: BaseException | None) -> bool:
    """A database refused a value the request carried (SQLSTATE class 22, "data exception":
    a NUL character in text, a number or date out of range), which a handler let through."""
    return str(getattr(exc, "sqlstate", "") or "").startswith("22")


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return new_request_id()


def _code_name(code: Any) -> str:
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:  # the asyncio context may report the raw integer
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"
