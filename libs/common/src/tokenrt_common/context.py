"""The request id of the call being served, carried into logs and outgoing calls."""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
# A router service key (router.proto ApiKey.service) names the tenant a request acts for
# with these request headers (gRPC metadata); the router refuses them from any other key.
ACT_FOR_ORG_HEADER = "tokenrt-act-for-org"
ACT_FOR_PROJECT_HEADER = "tokenrt-act-for-project"
ACT_FOR_USER_HEADER = "tokenrt-act-for-user"

request_id: ContextVar[str | None] = ContextVar("tokenrt_request_id", default=None)
# The full gRPC method of the call being served, e.g. "/tokenrt.v1.CounterService/CountText".
rpc_method: ContextVar[str | None] = ContextVar("tokenrt_rpc_method", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def add_call_context(logger: Any, name: str,
                     event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every event logged while serving a call names it.

    Two plain context variables, set once per call, cost less than binding and unbinding
    structlog's context for every call."""
    rid = request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid)
        event.setdefault("method", rpc_method.get())
    return event
