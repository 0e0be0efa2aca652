"""The request id of the call being served, carried into logs and outgoing calls."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"

request_id: ContextVar[str | None] = ContextVar("tokenrt_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex
