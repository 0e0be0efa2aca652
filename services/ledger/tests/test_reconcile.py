"""Ledger <-> budget reconciliation on real processes: a budget and a ledger started with the
test kit, limits set and reservations committed through the budget's API, the matching
usage events published through `tokenrt_usage.Publisher`; one event held back is the
drift that `Reconcile` and `tokenrt usage reconcile` must report, exactly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
)
from tokenrt_ledger import reconcile
from tokenrt_testkit.procs import PrivateValkey, ServiceProcess, start_service
from tokenrt_testkit.stack import INFRA_DEFAULTS, free_ports, with_fresh_ports
from tokenrt_usage.testing import make_event

from .conftest import PG_DSN, LedgerEnv, wait_ready

K = common_pb2
B = budget_pb2
REDIS_URL = INFRA_DEFAULTS["TOKENRT_REDIS_URL"]
UTC0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# --- the pure part --------------------------------------------------------------------

def _state(period: int, start: datetime | None, end: datetime | None, used: int = 0,
           limit: int = 1000) -> K.LimitState:
    st = K.LimitState(limit_id="l1", metric=K.LIMIT_METRIC_TOKENS, period=period,  # type: ignore[arg-type]
                      used=used, limit=limit)
    if start is not None:
        st.period_start.FromDatetime(start)
    if end is not None:
        st.reset_at.FromDatetime(end)
    return st


def test_span_of_a_calendar_period_is_the_budgets_own_bounds() -> None:
    lim = B.Limit(period=K.LIMIT_PERIOD_MONTH)
    end = datetime(2026, 4, 1, tzinfo=UTC)
    s = reconcile.span(lim, _state(K.LIMIT_PERIOD_MONTH, UTC0.replace(day=1, hour=0), end), UTC0)
    assert (s.start, s.end) == (datetime(2026, 3, 1, tzinfo=UTC), end)
    assert (s.period_start, s.period_end) == (s.start, s.end)


def test_span_of_a_rolling_window_is_the_buckets_the_budget_counts() -> None:
    # 3600 s window: 60 buckets of 60 s; the budget's clock is period_start + 3600 s.
    lim = B.Limit(period=K.LIMIT_PERIOD_ROLLING, rolling_window_seconds=3600)
    budget_now = UTC0 + timedelta(seconds=42, milliseconds=500)
    s = reconcile.span(lim, _state(K.LIMIT_PERIOD_ROLLING, budget_now - timedelta(hours=1),
                                   budget_now), UTC0)
    assert s.end == UTC0 + timedelta(minutes=1)  # end of the current bucket
    assert s.start == s.end - timedelta(minutes=60)
    # 90 s window: buckets of 2 s, 45 of them.
    lim = B.Limit(period=K.LIMIT_PERIOD_ROLLING, rolling_window_seconds=90)
    s = reconcile.span(lim, _state(K.LIMIT_PERIOD_ROLLING, budget_now - timedelta(seconds=90),
                                   budget_now), UTC0)
    assert s.end == UTC0 + timedelta(seconds=44)
    assert s.end - s.start == timedelta(seconds=90)


def test_span_of_a_total_limit_is_everything() -> None:
    s = reconcile.span(B.Limit(period=K.LIMIT_PERIOD_TOTAL), _state(K.LIMIT_PERIOD_TOTAL, None,
                                                                     None), UTC0)
    assert s.start == reconcile.EPOCH and s.end > UTC0
    assert s.period_start is None and s.period_end is None


def test_a_reset_within_the_span_starts_the_sum_at_the_reset() -> None:
    end = datetime(2026, 4, 1, tzinfo=UTC)
    state = _state(K.LIMIT_PERIOD_MONTH, UTC0.replace(day=1, hour=0), end)
    lim = B.Limit(period=K.LIMIT_PERIOD_MONTH)
    lim.last_reset_at.FromDatetime(datetime(2026, 3, 10, tzinfo=UTC))
    s = reconcile.span(lim, state, UTC0)
    assert (s.start, s.end) == (datetime(2026, 3, 10, tzinfo=UTC), end)
    assert s.period_start == datetime(2026, 3, 1, tzinfo=UTC)  # the period itself unchanged
    lim.last_reset_at.FromDatetime(datetime(2026, 2, 10, tzinfo=UTC))  # an earlier period's
    assert reconcile.span(lim, state, UTC0).start == datetime(2026, 3, 1, tzinfo=UTC)
    total = B.Limit(period=K.LIMIT_PERIOD_TOTAL)
    total.last_reset_at.FromDatetime(datetime(2026, 3, 10, tzinfo=UTC))
    assert reconcile.span(total, _state(K.LIMIT_PERIOD_TOTAL, None, None), UTC0).start == \
        datetime(2026, 3, 10, tzinfo=UTC)


def test_tolerance_and_amounts() -> None:
    assert reconcile.within_tolerance(0, 1000, 0)
    assert not reconcile.within_tolerance(1, 1000, 0)
    assert reconcile.within_tolerance(-10, 1000, 100)  # 1% of 1000
    assert not reconcile.within_tolerance(11, 1000, 100)
    assert [reconcile.amount(m, 7, 8, 9) for m in (K.LIMIT_METRIC_TOKENS, K.LIMIT_METRIC_COST,
                                                   K.LIMIT_METRIC_REQUESTS)] == [7, 8, 9]
    row = reconcile.compare(_state(K.LIMIT_PERIOD_DAY, UTC0, UTC0 + timedelta(days=1), used=500),
                            reconcile.Span(UTC0, UTC0, UTC0, UTC0), 450, 0)
    assert (row.budget_used, row.ledger_used, row.drift, row.within_tolerance) == (500, 450, 50,
                                                                                   False)


# --- real processes -------------------------------------------------------------------

@dataclass
class Pair:
    env: dict[str, str]
    ledger: ServiceProcess
    budget: ServiceProcess
    tmp: Path


@pytest.fixture(scope="module")
async def pair(module_ledger: LedgerEnv) -> AsyncIterator[Pair]:
    tag = uuid.uuid4().hex[:10]
    env = dict(module_ledger.env, TOKENRT_REDIS_URL=REDIS_URL,
               TOKENRT_BUDGET_REDIS_PREFIX=f"trec{tag}", TOKENRT_BUDGET_SCHEMA=f"budget_r{tag}",
               TOKENRT_BUDGET_ALERT_SUBJECT_PREFIX=f"t{tag}.budget.v1.alerts")
    tmp = module_ledger.tmp
    ledger = await asyncio.to_thread(start_service, "ledger", env, tmp / "rec-ledger.log")
    budget = None
    try:
        await wait_ready(ledger.address)
        budget = await asyncio.to_thread(start_service, "budget", env, tmp / "rec-budget.log")
        yield Pair(env, ledger, budget, tmp)
    finally:
        for p in (budget, ledger):
            if p is not None:
                await asyncio.to_thread(p.stop)
        pg = await asyncpg.connect(PG_DSN)
        await pg.execute(f'DROP SCHEMA IF EXISTS "budget_r{tag}" CASCADE')
        await pg.close()
        r = aioredis.from_url(REDIS_URL, socket_timeout=2)
        keys = [k async for k in r.scan_iter(match=f"trec{tag}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()


def _scope(kind: int, org: str, project: str = "", user: str = "",
           session: str = "") -> K.Scope:
    return K.Scope(kind=kind, org_id=org, project_id=project, user_id=user,  # type: ignore[arg-type]
                   session_id=session)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tokenrt_ledger.cli", "usage", "reconcile",
                           *args], env=env, capture_output=True, text=True, timeout=60)


async def _ledger_requests(stub: ledger_pb2_grpc.LedgerServiceStub, org: str) -> int:
    q = ledger_pb2.SumUsageQuery(scope=_scope(K.SCOPE_KIND_ORG, org))
    q.start_time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
    q.end_time.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    reply = await stub.SumUsage(ledger_pb2.SumUsageRequest(queries=[q]), timeout=5)
    return reply.results[0].requests


async def _wait_ingested(stub: ledger_pb2_grpc.LedgerServiceStub, org: str, n: int) -> None:
    for _ in range(300):
        if await _ledger_requests(stub, org) == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the ledger never held {n} charged events of {org}")


async def test_reconcile_reports_the_exact_drift_of_a_missing_event(
        pair: Pair, module_ledger: LedgerEnv) -> None:
    org = f"org-{uuid.uuid4().hex[:12]}"
    chain = K.ScopeChain(scopes=[
        _scope(K.SCOPE_KIND_ORG, org), _scope(K.SCOPE_KIND_PROJECT, org, "web"),
        _scope(K.SCOPE_KIND_USER, org, "web", "alice"),
        _scope(K.SCOPE_KIND_SESSION, org, "web", "alice", "s1")])
    wanted = [
        B.Limit(scope=chain.scopes[0], metric=K.LIMIT_METRIC_TOKENS, period=K.LIMIT_PERIOD_DAY,
                limit=1_000_000, action=K.LIMIT_ACTION_DENY),
        B.Limit(scope=chain.scopes[1], metric=K.LIMIT_METRIC_COST, period=K.LIMIT_PERIOD_MONTH,
                limit=1_000_000_000_000, action=K.LIMIT_ACTION_DENY),
        B.Limit(scope=chain.scopes[2], metric=K.LIMIT_METRIC_REQUESTS,
                period=K.LIMIT_PERIOD_TOTAL, limit=1000, action=K.LIMIT_ACTION_ALLOW),
        B.Limit(scope=chain.scopes[3], metric=K.LIMIT_METRIC_TOKENS,
                period=K.LIMIT_PERIOD_ROLLING, rolling_window_seconds=3600, limit=1_000_000,
                action=K.LIMIT_ACTION_THROTTLE),
    ]
    events: list[events_pb2.UsageEvent] = []
    async with grpc.aio.insecure_channel(pair.budget.address) as bch, \
            grpc.aio.insecure_channel(pair.ledger.address) as lch:
        budget = budget_pb2_grpc.BudgetServiceStub(bch)
        ledger = ledger_pb2_grpc.LedgerServiceStub(lch)
        limit_ids = {}
        for lim in wanted:
            saved = (await budget.SetLimit(B.SetLimitRequest(limit=lim), timeout=5)).limit
            limit_ids[saved.limit_id] = lim.metric
        for i in range(5):
            tokens_in, tokens_out, cost = 100 + 10 * i, 50 + i, 1_000_000 + 1_001 * i
            reserved_at = datetime.now(UTC)
            answer = await budget.Reserve(B.ReserveRequest(
                chain=chain, estimated_tokens=tokens_in + tokens_out + 100,
                estimated_cost_nusd=cost + 5000), timeout=5)
            assert answer.decision == K.BUDGET_DECISION_ALLOW and answer.reservation_id
            commit = await budget.Commit(B.CommitRequest(
                reservation_id=answer.reservation_id, actual_tokens=tokens_in + tokens_out,
                actual_cost_nusd=cost, chain=chain), timeout=5)
            assert commit.outcome == B.SETTLEMENT_OUTCOME_COMMITTED
            e = make_event(org_id=org, project_id="web", user_id="alice", session_id="s1",
                           input_tokens=tokens_in, output_tokens=tokens_out, cost_nusd=cost)
            e.budget_reservation_id = answer.reservation_id
            e.budget_reserved_at.FromDatetime(reserved_at)
            events.append(e)

        publisher = module_ledger.publisher()
        await publisher.start()
        assert await publisher.wait_ready(within=10)
        for e in events[:4]:  # the last one is "lost": the drift
            await publisher.publish(e)
        await _wait_ingested(ledger, org, 4)

        lost = events[4]
        lost_amount = {K.LIMIT_METRIC_TOKENS: lost.usage.input_tokens + lost.usage.output_tokens,
                       K.LIMIT_METRIC_COST: lost.cost_nusd, K.LIMIT_METRIC_REQUESTS: 1}
        total = {K.LIMIT_METRIC_TOKENS: sum(e.usage.input_tokens + e.usage.output_tokens
                                            for e in events),
                 K.LIMIT_METRIC_COST: sum(e.cost_nusd for e in events),
                 K.LIMIT_METRIC_REQUESTS: 5}
        reply = await ledger.Reconcile(ledger_pb2.ReconcileRequest(scope=chain.scopes[0]),
                                       timeout=10)
        assert {r.limit_id: r.metric for r in reply.rows} == limit_ids
        assert reply.drifted_limits == 4
        for r in reply.rows:
            assert r.budget_used == total[r.metric], r
            assert r.ledger_used == total[r.metric] - lost_amount[r.metric], r
            assert r.drift == lost_amount[r.metric] and not r.within_tolerance
        rows = {r.metric: r for r in reply.rows if r.scope.kind == K.SCOPE_KIND_SESSION}
        rolling = rows[K.LIMIT_METRIC_TOKENS]
        assert (rolling.period_end.ToDatetime(UTC) - rolling.period_start.ToDatetime(UTC)
                == timedelta(hours=1))

        # A tolerance of 9 bp of the limit covers the missing event on every limit but the
        # user's requests (1 of 1000 = 10 bp).
        loose = await ledger.Reconcile(ledger_pb2.ReconcileRequest(
            scope=chain.scopes[0], tolerance_bp=9), timeout=10)
        assert [r.metric for r in loose.rows if not r.within_tolerance] == [
            K.LIMIT_METRIC_REQUESTS]
        assert loose.drifted_limits == 1

        # A project scope covers the project's limits and those below, not the org's.
        below = await ledger.Reconcile(ledger_pb2.ReconcileRequest(scope=chain.scopes[1]),
                                       timeout=10)
        assert sorted(r.scope.kind for r in below.rows) == [
            K.SCOPE_KIND_PROJECT, K.SCOPE_KIND_USER, K.SCOPE_KIND_SESSION]

        done = await asyncio.to_thread(_cli, pair.env, "--org", org, "--json")
        assert done.returncode == 1, done.stderr
        answer_json = json.loads(done.stdout)
        assert answer_json["drifted_limits"] == 4
        by_metric = {r["metric"]: r for r in answer_json["rows"] if r["scope"] == f"org:{org}"}
        assert by_metric["tokens"]["drift"] == lost_amount[K.LIMIT_METRIC_TOKENS]
        assert by_metric["tokens"]["unit"] == "tokens"
        cost_row = next(r for r in answer_json["rows"] if r["metric"] == "cost")
        assert (cost_row["scope"], cost_row["unit"], cost_row["drift"]) == (
            f"project:{org}/web", "nusd", lost.cost_nusd)
        done = await asyncio.to_thread(_cli, pair.env, "--org", org)
        lines = done.stdout.splitlines()
        assert done.returncode == 1 and sum(x.endswith("  DRIFT") for x in lines) == 4, lines
        assert "4 of 4 limits drifted" in done.stdout

        # The lost event arrives: no drift left.
        await publisher.publish(lost)
        await publisher.close()
        await _wait_ingested(ledger, org, 5)
        reply = await ledger.Reconcile(ledger_pb2.ReconcileRequest(scope=chain.scopes[0]),
                                       timeout=10)
        assert reply.drifted_limits == 0 and len(reply.rows) == 4
        assert all(r.drift == 0 and r.budget_used == r.ledger_used == total[r.metric]
                   for r in reply.rows)
        done = await asyncio.to_thread(_cli, pair.env, "--org", org, "--project", "web")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 of 3 limits drifted" in done.stdout
        assert not any(x.endswith("  DRIFT") for x in done.stdout.splitlines())

        # A Reset of the org's limit zeroes its counter; the ledger then sums only the usage
        # after the reset (it used to report all the earlier usage as negative drift).
        await budget.Reset(B.ResetRequest(scope=chain.scopes[0]), timeout=5)
        after = await budget.Reserve(B.ReserveRequest(
            chain=chain, estimated_tokens=500, estimated_cost_nusd=10_000), timeout=5)
        reserved_at = datetime.now(UTC)
        await budget.Commit(B.CommitRequest(reservation_id=after.reservation_id,
                                            actual_tokens=300, actual_cost_nusd=7_000,
                                            chain=chain), timeout=5)
        e = make_event(org_id=org, project_id="web", user_id="alice", session_id="s1",
                       input_tokens=200, output_tokens=100, cost_nusd=7_000)
        e.budget_reservation_id = after.reservation_id
        e.budget_reserved_at.FromDatetime(reserved_at)
        publisher = module_ledger.publisher()
        await publisher.start()
        assert await publisher.wait_ready(within=10)
        await publisher.publish(e)
        await publisher.close()
        await _wait_ingested(ledger, org, 6)
        reply = await ledger.Reconcile(ledger_pb2.ReconcileRequest(scope=chain.scopes[0]),
                                       timeout=10)
        [org_row] = [r for r in reply.rows if r.scope.kind == K.SCOPE_KIND_ORG]
        assert org_row.budget_used == org_row.ledger_used == 300 and org_row.drift == 0
        assert reply.drifted_limits == 0


async def test_reconcile_rejects_bad_input(pair: Pair) -> None:
    async with grpc.aio.insecure_channel(pair.ledger.address) as ch:
        stub = ledger_pb2_grpc.LedgerServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Reconcile(ledger_pb2.ReconcileRequest(tolerance_bp=-1), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tolerance_bp" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Reconcile(ledger_pb2.ReconcileRequest(
                scope=K.Scope(kind=K.SCOPE_KIND_PROJECT, org_id="acme")), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "project_id" in (err.value.details() or "")
    done = await asyncio.to_thread(_cli, pair.env, "--project", "web")
    assert done.returncode == 2 and "--project needs --org" in done.stderr


async def test_reconcile_without_the_budget_is_unavailable(pair: Pair) -> None:
    # A second ledger replica whose budget address has nothing behind it.
    env = with_fresh_ports(pair.env, "ledger", "budget")  # no budget listens at its address
    ledger = await asyncio.to_thread(start_service, "ledger", env, pair.tmp / "rec-lone.log")
    try:
        await wait_ready(ledger.address)
        async with grpc.aio.insecure_channel(ledger.address) as ch:
            stub = ledger_pb2_grpc.LedgerServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Reconcile(ledger_pb2.ReconcileRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"budget service at {env['TOKENRT_BUDGET_ADDR']}" in (err.value.details() or "")
        done = await asyncio.to_thread(_cli, env, "--json")
        assert done.returncode == 2 and "UNAVAILABLE" in done.stderr, done.stderr
    finally:
        await asyncio.to_thread(ledger.stop)


async def test_reconcile_when_the_budget_cannot_read_its_counters_is_unavailable(
        pair: Pair) -> None:
    # A budget on a private Valkey that goes away: its Status answers FAILED_* states,
    # whose `used` is no committed total to compare.
    valkey = PrivateValkey(free_ports(1)[0])
    valkey.start(pair.tmp)
    tag = uuid.uuid4().hex[:10]
    env = dict(with_fresh_ports(pair.env, "ledger", "budget"), TOKENRT_REDIS_URL=valkey.url,
               TOKENRT_BUDGET_SCHEMA=f"budget_v{tag}", TOKENRT_BUDGET_REDIS_PREFIX=f"trecv{tag}",
               TOKENRT_DEPENDENCY_TIMEOUT_SECONDS="0.5")
    procs: list[ServiceProcess] = []
    try:
        procs.append(await asyncio.to_thread(start_service, "ledger", env,
                                             pair.tmp / "rec-v-ledger.log"))
        await wait_ready(procs[0].address)
        procs.append(await asyncio.to_thread(start_service, "budget", env,
                                             pair.tmp / "rec-v-budget.log"))
        org = f"org-{uuid.uuid4().hex[:12]}"
        async with grpc.aio.insecure_channel(procs[1].address) as bch, \
                grpc.aio.insecure_channel(procs[0].address) as lch:
            await budget_pb2_grpc.BudgetServiceStub(bch).SetLimit(B.SetLimitRequest(
                limit=B.Limit(scope=_scope(K.SCOPE_KIND_ORG, org), metric=K.LIMIT_METRIC_TOKENS,
                              period=K.LIMIT_PERIOD_DAY, limit=1000,
                              action=K.LIMIT_ACTION_DENY)), timeout=5)
            ledger = ledger_pb2_grpc.LedgerServiceStub(lch)
            ok = await ledger.Reconcile(ledger_pb2.ReconcileRequest(
                scope=_scope(K.SCOPE_KIND_ORG, org)), timeout=10)
            assert [(r.budget_used, r.ledger_used, r.drift) for r in ok.rows] == [(0, 0, 0)]
            await asyncio.to_thread(valkey.stop)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ledger.Reconcile(ledger_pb2.ReconcileRequest(
                    scope=_scope(K.SCOPE_KIND_ORG, org)), timeout=15)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot read its counters" in (err.value.details() or "")
    finally:
        for p in reversed(procs):
            await asyncio.to_thread(p.stop)
        valkey.stop()
        pg = await asyncpg.connect(PG_DSN)
        await pg.execute(f'DROP SCHEMA IF EXISTS "budget_v{tag}" CASCADE')
        await pg.close()
