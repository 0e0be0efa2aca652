"""Ledger <-> budget reconciliation: for every limit's current period, the budget service's
committed usage (`LimitState.used`) against the ledger's charged events in the same scope
and period (the sum `SumUsage` answers), and the drift between them.

The budget is read first (its answer fixes each period's bounds), then the ledger. The
pure part (`span`, `amount`, `compare`) is unit-tested; `BudgetReader` is the gRPC
client of the budget service and `reconcile` ties the two together.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import grpc

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, ledger_pb2
from tokenrt_ledger import convert
from tokenrt_ledger.convert import BadRequest
from tokenrt_ledger.store import LedgerStore

K = common_pb2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Usage reserved "now" but after the budget answered still falls inside an open range.
OPEN_END = timedelta(minutes=1)
# The budget counts a rolling window in at most this many buckets of ceil(N / 60) s
# (docs/budgets.md, budget core.rolling_buckets); the ledger sums the same buckets.
ROLLING_BUCKETS = 60
LIST_PAGE = 1000
MAX_TOLERANCE_BP = 10_000


class BudgetUnavailable(Exception):
    """The budget service did not give its committed totals; the message says why."""


@dataclass(frozen=True)
class Span:
    """The range the ledger sums for one limit (on budget_reserved_at), and the period
    reported (None where the period has no such bound: TOTAL)."""

    start: datetime
    end: datetime
    period_start: datetime | None
    period_end: datetime | None


def rolling_buckets(window_seconds: int) -> tuple[int, int]:
    """(bucket length in seconds, bucket count) covering a rolling window, as the budget
    counts it."""
    size = max(1, math.ceil(window_seconds / ROLLING_BUCKETS))
    return size, math.ceil(window_seconds / size)


def span(limit: budget_pb2.Limit, state: common_pb2.LimitState, now: datetime) -> Span:
    """What to sum for one limit's current period, from the budget's own answer.

    Calendar periods: [period_start, reset_at) as the budget reported them. Rolling
    windows: the whole buckets the budget still counts (its `period_start` is its clock
    minus the window). TOTAL: everything up to now. A limit Reset within the span starts
    the sum at the reset, as the budget's own counter did.
    """
    whole = _span(limit, state, now)
    if not limit.HasField("last_reset_at"):
        return whole
    reset = convert.to_datetime(limit.last_reset_at)
    return replace(whole, start=max(whole.start, reset))


def _span(limit: budget_pb2.Limit, state: common_pb2.LimitState, now: datetime) -> Span:
    if limit.period == K.LIMIT_PERIOD_TOTAL or not state.HasField("period_start"):
        return Span(EPOCH, now + OPEN_END, None, None)
    start = convert.to_datetime(state.period_start)
    if limit.period == K.LIMIT_PERIOD_ROLLING:
        size, count = rolling_buckets(limit.rolling_window_seconds)
        bucket_ms = size * 1000
        budget_now_ms = (state.period_start.seconds * 1000 + state.period_start.nanos // 1_000_000
                         + limit.rolling_window_seconds * 1000)
        current = budget_now_ms // bucket_ms
        first = datetime.fromtimestamp((current - count + 1) * bucket_ms / 1000, UTC)
        last = datetime.fromtimestamp((current + 1) * bucket_ms / 1000, UTC)
        return Span(first, last, first, last)
    end = convert.to_datetime(state.reset_at) if state.HasField("reset_at") else now + OPEN_END
    return Span(start, end, start, end)


def amount(metric: int, tokens: int, cost_nusd: int, requests: int) -> int:
    """A sum in a metric's unit: tokens, nano-USD or requests."""
    if metric == K.LIMIT_METRIC_TOKENS:
        return tokens
    if metric == K.LIMIT_METRIC_COST:
        return cost_nusd
    if metric == K.LIMIT_METRIC_REQUESTS:
        return requests
    raise ValueError(f"unknown limit metric {metric}")


def within_tolerance(drift: int, limit: int, tolerance_bp: int) -> bool:
    """|drift| <= tolerance_bp basis points of the limit (0 = exactly equal)."""
    return abs(drift) * 10_000 <= tolerance_bp * limit


def compare(state: common_pb2.LimitState, s: Span, ledger_used: int,
            tolerance_bp: int) -> ledger_pb2.ReconcileRow:
    drift = state.used - ledger_used
    row = ledger_pb2.ReconcileRow(
        limit_id=state.limit_id, scope=state.scope, metric=state.metric,
        budget_used=state.used, ledger_used=ledger_used, drift=drift,
        within_tolerance=within_tolerance(drift, state.limit, tolerance_bp))
    if s.period_start is not None:
        row.period_start.FromDatetime(s.period_start)
    if s.period_end is not None:
        row.period_end.FromDatetime(s.period_end)
    return row


class BudgetReader:
    """The budget service's limits and their current states, over gRPC."""

    def __init__(self, stub: budget_pb2_grpc.BudgetServiceStub, address: str,
                 timeout: float) -> None:
        self._stub = stub
        self._address = address
        self._timeout = timeout

    def _failed(self, exc: grpc.aio.AioRpcError, what: str) -> Exception:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return BadRequest("scope", f"the budget service refused the scope: {exc.details()}")
        return BudgetUnavailable(
            f"the budget service at {self._address} did not answer {what} "
            f"({exc.code().name}: {exc.details()}); reconciliation needs its committed "
            "totals, retry when it is up")

    async def limits(self, org_id: str) -> list[budget_pb2.Limit]:
        """Every limit (of one organization when org_id is set)."""
        out: list[budget_pb2.Limit] = []
        token = ""
        while True:
            request = budget_pb2.ListLimitsRequest(org_id=org_id, page_size=LIST_PAGE,
                                                   page_token=token)
            try:
                reply = await self._stub.ListLimits(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                raise self._failed(exc, "ListLimits") from None
            out += reply.limits
            token = reply.next_page_token
            if not token:
                return out

    async def states(self, scope: common_pb2.Scope) -> list[common_pb2.LimitState]:
        """Current states of the limits on `scope` and below."""
        try:
            reply = await self._stub.Status(
                budget_pb2.StatusRequest(scope=scope, include_descendants=True),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc, "Status") from None
        if reply.limits and reply.enforcement != K.BUDGET_ENFORCEMENT_ENFORCED:
            raise BudgetUnavailable(
                f"the budget service at {self._address} cannot read its counters (Redis "
                "unreachable), so its committed totals are unknown; retry when it is back")
        return list(reply.limits)


def org_scope(org_id: str) -> common_pb2.Scope:
    return common_pb2.Scope(kind=K.SCOPE_KIND_ORG, org_id=org_id)


async def reconcile(budget: BudgetReader, store: LedgerStore, scope: common_pb2.Scope | None,
                    tolerance_bp: int, watermark: datetime | None
                    ) -> ledger_pb2.ReconcileResponse:
    """Compare every limit on `scope` and below (every limit when None)."""
    if not 0 <= tolerance_bp <= MAX_TOLERANCE_BP:
        raise BadRequest("tolerance_bp", f"tolerance_bp must be 0 (exact) to "
                         f"{MAX_TOLERANCE_BP} basis points, got {tolerance_bp}")
    now = datetime.now(UTC)
    if scope is not None:
        convert.scope_filter(scope, EPOCH, now, "scope")  # INVALID_ARGUMENT when malformed
    limits = {lim.limit_id: lim for lim in
              await budget.limits(scope.org_id if scope is not None else "")}
    tops: Sequence[common_pb2.Scope] = (
        [scope] if scope is not None
        else [org_scope(org) for org in sorted({lim.scope.org_id for lim in limits.values()})])
    states = [st for top in tops for st in await budget.states(top)]
    now = datetime.now(UTC)
    # Everything the ledger had stored by then is in the sums.
    stamp = watermark or now
    pairs = [(st, span(limits[st.limit_id], st, now)) for st in states
             if st.limit_id in limits]  # a limit created since ListLimits: next time
    filters = [convert.scope_filter(st.scope, s.start, s.end, "scope") for st, s in pairs]
    sums = await asyncio.gather(*(store.sum_usage(f) for f in filters))
    rows = [compare(st, s, amount(st.metric, r["tokens"], r["cost_nusd"], r["requests"]),
                    tolerance_bp)
            for (st, s), r in zip(pairs, sums, strict=True)]
    reply = ledger_pb2.ReconcileResponse(
        rows=rows, drifted_limits=sum(1 for r in rows if not r.within_tolerance))
    reply.watermark.FromDatetime(stamp)
    return reply
