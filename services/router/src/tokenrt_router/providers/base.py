"""The provider interface, its errors, and the circuit breaker that tracks health.

An adapter turns a ProviderRequest into the provider's wire format and the answer back
into protobuf messages and a Usage. Retries, backoff and fallback live in
`calls.py`, above the adapters, so every adapter gets the same policy.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tokenrt.v1 import common_pb2
from tokenrt_pricing import Usage


class Failure(enum.Enum):
    RATE_LIMITED = "rate_limited"
    SERVER = "server_error"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    UNREACHABLE = "unreachable"
    BAD_REQUEST = "bad_request"  # not retried: the same request fails again
    # The deployment refuses us (401/403: key or permission; 404: no such model there).
    # Not the caller's fault and not retried on that deployment; another deployment or
    # model may serve the request.
    REFUSED = "provider_refused"

    @property
    def retryable(self) -> bool:
        return self not in (Failure.BAD_REQUEST, Failure.REFUSED)

    @property
    def callers_fault(self) -> bool:
        """The request itself is wrong: no fallback helps and no health is lost."""
        return self is Failure.BAD_REQUEST


class ProviderError(Exception):
    def __init__(self, kind: Failure, message: str, status: int = 0,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ProviderRequest:
    model_id: str
    messages: Sequence[common_pb2.Message]
    tools: Sequence[common_pb2.Tool]
    sampling: common_pb2.SamplingParams
    max_output: int
    request_id: str = ""


@dataclass
class Answer:
    message: common_pb2.Message
    finish_reason: int
    usage: Usage | None


@dataclass
class Delta:
    text: str = ""
    tool_calls: list[common_pb2.ToolCall] = field(default_factory=list)
    # Index of each tool call piece in `tool_calls`, aligned.
    tool_indexes: list[int] = field(default_factory=list)


@dataclass
class StreamEnd:
    finish_reason: int
    usage: Usage | None


class Provider(Protocol):
    name: str

    async def complete(self, req: ProviderRequest, timeout: float) -> Answer: ...  # noqa: ASYNC109

    def stream(self, req: ProviderRequest, timeout: float) -> AsyncIterator[Delta | StreamEnd]:
        ...

    async def close(self) -> None: ...


class Breaker:
    """Per key (a model, or a deployment): `threshold` failures in a row open the circuit
    for `cool_seconds`; `cool` opens it for a given time (a Retry-After)."""

    def __init__(self, threshold: int = 5, cool_seconds: float = 10.0) -> None:
        self.threshold = threshold
        self.cool_seconds = cool_seconds
        self._fails: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def ok(self, model: str) -> None:
        self._fails.pop(model, None)

    def failed(self, model: str) -> None:
        n = self._fails.get(model, 0) + 1
        self._fails[model] = n
        if n >= self.threshold:
            self._open_until[model] = time.monotonic() + self.cool_seconds
            self._fails[model] = 0

    def cool(self, key: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._open_until[key] = max(until, self._open_until.get(key, 0.0))

    def open_for(self, key: str) -> float:
        """Seconds the circuit of `key` stays open (0 when closed)."""
        return max(0.0, self._open_until.get(key, 0.0) - time.monotonic())

    def unhealthy(self) -> dict[str, str]:
        now = time.monotonic()
        return {m: f"circuit open for {until - now:.0f}s more after repeated failures"
                for m, until in self._open_until.items() if until > now}
