"""What the load generator saw, against what the ledger recorded and what the budget holds.

Per phase (the load's `user`), once the ledger has caught up:
- lost: answered requests whose usage event the ledger does not have;
- double_counted: events beyond one per request id, plus requests the rollups count beyond
  the distinct events (QueryUsage against ListEvents);
- mismatched: answered requests whose event has other tokens, cost or status than the
  answer the caller got;
- overspend: how far the hard limit's committed usage (budget) or the usage the ledger
  recorded for that scope went past the limit;
- budget_drift: the budget's committed tokens minus the ledger's SumUsage for the same
  scope (0 when the budget holds what the ledger recorded), and what is still reserved.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
)

from .load import Outcome
from .stack import Tenant

T = common_pb2
OK_STATUSES = (events_pb2.USAGE_STATUS_OK, events_pb2.USAGE_STATUS_CACHE_HIT)


def user_scope(tenant: Tenant, user: str) -> common_pb2.Scope:
    return T.Scope(kind=T.SCOPE_KIND_USER, org_id=tenant.org, project_id=tenant.project,
                   user_id=user)


async def set_limits(budget_addr: str, tenants: tuple[Tenant, ...], user: str,
                     hard_tokens: int) -> dict[str, str]:
    """A hard (DENY, fail-closed) token limit on each hard tenant's phase user, a soft one
    on the others. Returns org -> limit id."""
    ids: dict[str, str] = {}
    async with grpc.aio.insecure_channel(budget_addr) as ch:
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        for t in tenants:
            limit = budget_pb2.Limit(
                scope=user_scope(t, user), metric=T.LIMIT_METRIC_TOKENS,
                period=T.LIMIT_PERIOD_TOTAL, limit=hard_tokens if t.hard else hard_tokens // 2,
                action=T.LIMIT_ACTION_DENY if t.hard else T.LIMIT_ACTION_ALLOW,
                fail_mode=budget_pb2.FAIL_MODE_CLOSED if t.hard else budget_pb2.FAIL_MODE_OPEN,
                name=f"chaos {user}")
            reply = await stub.SetLimit(budget_pb2.SetLimitRequest(limit=limit), timeout=10)
            ids[t.org] = reply.limit.limit_id
    return ids


@dataclass
class Audit:
    requests: int = 0
    ok: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    unclear: int = 0  # refused with UNKNOWN/INTERNAL, or by the caller's own deadline
    late: int = 0  # answered or refused after its deadline
    max_elapsed_s: float = 0.0
    ledger_events: int = 0
    lost: int = 0
    double_counted: int = 0
    mismatched: int = 0
    hard_limit: int = 0
    hard_budget_used: int = 0
    hard_budget_reserved: int = 0
    hard_ledger_tokens: int = 0
    overspend: int = 0
    budget_drift: int = 0
    catchup_s: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def example(self, kind: str, text: str) -> None:
        found = self.examples.setdefault(kind, [])
        if len(found) < 3:
            found.append(text)


def classify(outcomes: list[Outcome], deadline_s: float) -> Audit:
    a = Audit(requests=len(outcomes))
    for o in outcomes:
        a.max_elapsed_s = max(a.max_elapsed_s, o.elapsed)
        if o.ok:
            a.ok += 1
        else:
            a.refused[o.code] = a.refused.get(o.code, 0) + 1
            a.example(o.code, f"{o.request_id} {o.detail[:160]!r} {o.elapsed:.2f}s")
            by_caller = o.code == "DEADLINE_EXCEEDED" and o.detail == "Deadline Exceeded"
            if o.code in ("UNKNOWN", "INTERNAL", "NO_DONE") or by_caller or not o.detail:
                a.unclear += 1
                a.example("unclear", f"{o.request_id} {o.code} {o.detail!r} {o.elapsed:.2f}s")
        if o.elapsed > deadline_s + 0.5:
            a.late += 1
    return a


def _phase_filter(tenant: Tenant, user: str) -> ledger_pb2.UsageFilter:
    """The phase's usage of one tenant (the suite runs well within these hours)."""
    f = ledger_pb2.UsageFilter(org_id=tenant.org, user_id=user)
    f.start_time.FromDatetime(datetime.now(UTC) - timedelta(hours=2))
    f.end_time.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    return f


async def _events(stub: ledger_pb2_grpc.LedgerServiceStub, tenant: Tenant,
                  user: str) -> list[events_pb2.UsageEvent]:
    f = _phase_filter(tenant, user)
    out: list[events_pb2.UsageEvent] = []
    token = ""
    while True:
        reply = await stub.ListEvents(ledger_pb2.ListEventsRequest(
            filter=f, page_size=1000, page_token=token), timeout=10)
        out.extend(reply.events)
        token = reply.next_page_token
        if not token:
            return out


async def _rollup_requests(stub: ledger_pb2_grpc.LedgerServiceStub, tenant: Tenant,
                           user: str) -> int:
    reply = await stub.QueryUsage(ledger_pb2.QueryUsageRequest(
        filter=_phase_filter(tenant, user)), timeout=10)
    return sum(r.totals.requests for r in reply.rows)


async def _ledger_tokens(stub: ledger_pb2_grpc.LedgerServiceStub,
                         scope: common_pb2.Scope) -> int:
    q = ledger_pb2.SumUsageQuery(scope=scope)
    q.start_time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
    q.end_time.FromDatetime(datetime(2100, 1, 1, tzinfo=UTC))
    reply = await stub.SumUsage(ledger_pb2.SumUsageRequest(queries=[q]), timeout=10)
    return reply.results[0].tokens


async def _hard_state(stub: budget_pb2_grpc.BudgetServiceStub, scope: common_pb2.Scope,
                      limit_id: str) -> common_pb2.LimitState | None:
    reply = await stub.Status(budget_pb2.StatusRequest(scope=scope), timeout=10)
    return next((s for s in reply.limits if s.limit_id == limit_id), None)


async def limit_state(budget_addr: str, scope: common_pb2.Scope,
                      limit_id: str) -> common_pb2.LimitState | None:
    async with grpc.aio.insecure_channel(budget_addr) as ch:
        return await _hard_state(budget_pb2_grpc.BudgetServiceStub(ch), scope, limit_id)


async def _retrying(until: float, call: Any, *args: Any) -> Any:
    """A query that may meet a dependency still coming back: retried until `until`."""
    while True:
        try:
            return await call(*args)
        except grpc.aio.AioRpcError:
            if time.monotonic() > until:
                raise
            await asyncio.sleep(0.3)


async def reconcile(a: Audit, outcomes: list[Outcome], env: dict[str, str],
                    tenants: tuple[Tenant, ...], user: str, limit_ids: dict[str, str],
                    catchup_limit_s: float) -> Audit:
    """Wait (bounded) until the ledger has every answered request's event, then compare."""
    answered = {o.event_id: o for o in outcomes if o.ok}
    t0 = time.monotonic()
    until = t0 + catchup_limit_s
    async with grpc.aio.insecure_channel(env["TOKENRT_LEDGER_ADDR"]) as lch, \
            grpc.aio.insecure_channel(env["TOKENRT_BUDGET_ADDR"]) as bch:
        ledger = ledger_pb2_grpc.LedgerServiceStub(lch)
        budget = budget_pb2_grpc.BudgetServiceStub(bch)
        events: list[events_pb2.UsageEvent] = []
        while True:
            events = []
            for t in tenants:
                events += await _retrying(until, _events, ledger, t, user)
            missing = set(answered) - {e.event_id for e in events}
            if not missing or time.monotonic() > until:
                break
            await asyncio.sleep(0.5)
        a.catchup_s = time.monotonic() - t0
        await asyncio.sleep(1.0)  # a replay that would double an event lands meanwhile
        events = []
        rolled = 0
        for t in tenants:
            events += await _retrying(until + 10, _events, ledger, t, user)
            rolled += await _retrying(until + 10, _rollup_requests, ledger, t, user)
        a.ledger_events = len(events)
        by_event = {e.event_id: e for e in events}
        for eid, o in answered.items():
            e = by_event.get(eid)
            if e is None:
                a.lost += 1
                a.example("lost", f"{o.request_id} event {eid} ({'stream' if o.stream else 'unary'})")
            elif (e.usage.input_tokens, e.usage.output_tokens, e.cost_nusd) != (
                    o.input_tokens, o.output_tokens, o.cost_nusd) or e.status not in OK_STATUSES:
                a.mismatched += 1
                a.example("mismatched", f"{o.request_id}: answer {o.input_tokens}/"
                          f"{o.output_tokens}/{o.cost_nusd} ledger {e.usage.input_tokens}/"
                          f"{e.usage.output_tokens}/{e.cost_nusd} status {e.status}")
        per_request = Counter(e.request_id for e in events)
        extra = sum(n - 1 for n in per_request.values() if n > 1)
        for rid, n in per_request.items():
            if n > 1:
                a.example("double_counted", f"{rid}: {n} events")
        if rolled > len(by_event):
            a.example("double_counted", f"rollups count {rolled} requests, events {len(by_event)}")
        a.double_counted = extra + max(0, rolled - len(by_event))

        for t in tenants:
            if not t.hard:
                continue
            scope = user_scope(t, user)
            state = None
            settle_until = time.monotonic() + 10  # settlements are made off the answer's path
            while True:
                state = await _retrying(until + 10, _hard_state, budget, scope,
                                        limit_ids[t.org])
                if state is None or state.reserved == 0 or time.monotonic() > settle_until:
                    break
                await asyncio.sleep(0.3)
            if state is None:
                raise AssertionError(f"the budget does not show limit {limit_ids[t.org]}")
            spent = sum(e.usage.input_tokens + e.usage.output_tokens for e in events
                        if e.org_id == t.org)
            charged = await _retrying(until + 10, _ledger_tokens, ledger, scope)
            a.hard_limit = state.limit
            a.hard_budget_used = state.used
            a.hard_budget_reserved = state.reserved
            a.hard_ledger_tokens = spent
            a.overspend = max(0, max(state.used, spent) - state.limit)
            a.budget_drift = state.used - charged
            if a.overspend:
                a.example("overspend", f"limit {state.limit}: budget used {state.used}, "
                          f"ledger {spent}")
            if a.budget_drift or state.reserved:
                a.example("budget_drift", f"budget used {state.used} reserved "
                          f"{state.reserved}, ledger SumUsage {charged}")
    return a
