"""Retries with backoff (honouring Retry-After) and fallback across models, for every
adapter alike. A stream is retried or moved to a fallback only before its first chunk:
after that the caller has seen output, and a failure ends the stream (metered)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from tokenrt_pricing.model import ModelEntry
from tokenrt_router.providers.base import (
    Answer,
    Breaker,
    Delta,
    Failure,
    Provider,
    ProviderError,
    ProviderRequest,
    StreamEnd,
)

BASE_BACKOFF = 0.05


@dataclass(frozen=True)
class Route:
    entry: ModelEntry
    provider: Provider
    max_output: int


@dataclass
class Policy:
    timeout: float
    retries: int
    max_retry_after: float


@dataclass
class Outcome:
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    last: ProviderError | None = None


def _delay(err: ProviderError, attempt: int, policy: Policy) -> float | None:
    """Seconds to wait before retrying the same model; None = move to the next model."""
    if not err.kind.retryable or attempt > policy.retries:
        return None
    if err.retry_after is not None:
        return err.retry_after if err.retry_after <= policy.max_retry_after else None
    return BASE_BACKOFF * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311


async def complete(routes: Sequence[Route], build: Callable[[Route], ProviderRequest],
                   policy: Policy, breaker: Breaker,
                   outcome: Outcome) -> tuple[Answer, Route]:
    for route in routes:
        attempt = 0
        while True:
            attempt += 1
            outcome.attempts += 1
            try:
                answer = await route.provider.complete(build(route), policy.timeout)
                breaker.ok(route.entry.name)
                return answer, route
            except ProviderError as err:
                if not err.kind.callers_fault:
                    breaker.failed(route.entry.name)
                outcome.errors.append(f"{route.entry.name}: {err}")
                outcome.last = err
                wait = _delay(err, attempt, policy)
                if wait is None:
                    break
                await asyncio.sleep(wait)
    assert outcome.last is not None
    raise outcome.last


async def open_stream(routes: Sequence[Route], build: Callable[[Route], ProviderRequest],
                      policy: Policy, breaker: Breaker, outcome: Outcome,
                      ) -> tuple[Route, Delta | StreamEnd, AsyncIterator[Delta | StreamEnd]]:
    """The first event of the first route that answers, and the rest of its stream."""
    for route in routes:
        attempt = 0
        while True:
            attempt += 1
            outcome.attempts += 1
            gen = route.provider.stream(build(route), policy.timeout)
            try:
                first = await gen.__anext__()
                breaker.ok(route.entry.name)
                return route, first, gen
            except StopAsyncIteration:
                err = ProviderError(Failure.MALFORMED, "empty stream")
            except ProviderError as exc:
                err = exc
            if not err.kind.callers_fault:
                breaker.failed(route.entry.name)
            outcome.errors.append(f"{route.entry.name}: {err}")
            outcome.last = err
            wait = _delay(err, attempt, policy)
            if wait is None:
                break
            await asyncio.sleep(wait)
    assert outcome.last is not None
    raise outcome.last
