"""AIP-193 errors for every service: a status code, a message that says what to fix, and
an ErrorDetail in the trailing metadata key `tokenrt-error-detail-bin` (common.proto)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc

from tokenrt.v1 import common_pb2
from tokenrt_common.context import request_id

DETAIL_KEY = "tokenrt-error-detail-bin"


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                reason: common_pb2.ErrorReason.ValueType, message: str, *, field: str = "",
                limit: int = 0, actual: int = 0, unit: str = "",
                suggestions: Sequence[str] = ()) -> NoReturn:
    detail = common_pb2.ErrorDetail(reason=reason, field=field, limit=limit, actual=actual,
                                    unit=unit, suggestions=list(suggestions),
                                    request_id=request_id.get() or "")
    await context.abort(code, message,
                        trailing_metadata=((DETAIL_KEY, detail.SerializeToString()),))
    raise AssertionError("context.abort returned")  # abort always raises


async def invalid(context: grpc.aio.ServicerContext, field: str, message: str) -> NoReturn:
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                common_pb2.ERROR_REASON_INVALID_ARGUMENT, message, field=field)
