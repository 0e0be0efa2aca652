"""AIP-193 errors for every service: a status code, a message that says what to fix, and
an ErrorDetail in the trailing metadata key `tokenrt-error-detail-bin` (common.proto)."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from tokenrt.v1 import common_pb2
from tokenrt_common.context import request_id

DETAIL_KEY = "tokenrt-error-detail-bin"


def error_detail(reason: common_pb2.ErrorReason.ValueType, **fields: Any) -> common_pb2.ErrorDetail:
    """The machine-readable detail of an error, stamped with the current request id.

    `fields` are ErrorDetail's own (field, limit, actual, remaining, unit, reset_at,
    retry_after_ms, limits, suggestions, smallest_achievable_tokens, ...)."""
    return common_pb2.ErrorDetail(reason=reason, request_id=request_id.get() or "", **fields)


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                reason: common_pb2.ErrorReason.ValueType, message: str,
                **fields: Any) -> NoReturn:
    """End the call with `code`, `message` and an ErrorDetail built from `fields`."""
    await abort_with(context, code, message, error_detail(reason, **fields))


async def abort_with(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                     detail: common_pb2.ErrorDetail) -> NoReturn:
    await context.abort(code, message,
                        trailing_metadata=((DETAIL_KEY, detail.SerializeToString()),))
    raise AssertionError("context.abort returned")  # abort always raises


async def invalid(context: grpc.aio.ServicerContext, field: str, message: str) -> NoReturn:
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                common_pb2.ERROR_REASON_INVALID_ARGUMENT, message, field=field)


class ServiceError(Exception):
    """A refusal raised where no call context is at hand (one item of a batch, a helper
    shared by a unary and a batch method): the call's abort or the item's ItemError is
    made from it, with the same status, message and detail."""

    def __init__(self, code: grpc.StatusCode, reason: common_pb2.ErrorReason.ValueType,
                 message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.fields = fields

    def detail(self) -> common_pb2.ErrorDetail:
        return error_detail(self.reason, **self.fields)

    def item(self) -> common_pb2.ItemError:
        return common_pb2.ItemError(code=self.code.value[0], message=str(self),
                                    detail=self.detail())

    async def abort(self, context: grpc.aio.ServicerContext) -> NoReturn:
        await abort_with(context, self.code, str(self), self.detail())
