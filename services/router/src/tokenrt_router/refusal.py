"""Refusals: a gRPC status, a message a person can act on, an ErrorDetail for machines,
and the usage status recorded for the refused request."""

from __future__ import annotations

import grpc

from tokenrt.v1 import common_pb2, events_pb2

DETAIL_KEY = "tokenrt-error-detail-bin"


class Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, reason: int, message: str,
                 detail: common_pb2.ErrorDetail | None = None,
                 status: int = events_pb2.USAGE_STATUS_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or common_pb2.ErrorDetail()
        self.detail.reason = reason  # type: ignore[assignment]
        self.status = status

    def trailers(self, request_id: str) -> tuple[tuple[str, bytes], ...]:
        self.detail.request_id = request_id
        return ((DETAIL_KEY, self.detail.SerializeToString()),)


def invalid(field: str, message: str) -> Refusal:
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, common_pb2.ERROR_REASON_INVALID_ARGUMENT,
                   message, common_pb2.ErrorDetail(field=field))
