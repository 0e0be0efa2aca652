"""Budget benchmark: Reserve+Commit pairs per second and pair latency over gRPC.

Starts its own budget process (real Redis and Postgres from TOKENRT_REDIS_URL /
TOKENRT_POSTGRES_DSN or the local defaults, under a private key prefix and schema), puts
three limits on each scope of a four-scope chain (org, project, user, session: tokens per
day, cost per month in Europe/Berlin, requests per rolling minute; 12 limits per check),
then keeps 64 pairs in flight from one client process:

  unary   Reserve then Commit, one call each              targets >= 5,000 pairs/s, p99 < 5 ms
  batch   the same pairs coalesced by the client into ReserveBatch / SettleBatch calls
          (one batch per in-flight round, as the router's settle path does)

Run: `make bench-budget` (or `.venv/bin/python bench/budget/bench.py [--seconds 10] [--json]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import budget_pb2 as B
from tokenrt.v1 import budget_pb2_grpc
from tokenrt.v1 import common_pb2 as K
from tokenrt_common.settings import load_settings
from tokenrt_testkit.cpu import cpu_seconds, load_average
from tokenrt_testkit.stack import stack_env

IN_FLIGHT = 64


def chain(org: str) -> K.ScopeChain:
    return K.ScopeChain(scopes=[
        K.Scope(kind=K.SCOPE_KIND_ORG, org_id=org),
        K.Scope(kind=K.SCOPE_KIND_PROJECT, org_id=org, project_id="web"),
        K.Scope(kind=K.SCOPE_KIND_USER, org_id=org, project_id="web", user_id="alice"),
        K.Scope(kind=K.SCOPE_KIND_SESSION, org_id=org, project_id="web", user_id="alice",
                session_id="s1")])


async def setup_limits(stub: budget_pb2_grpc.BudgetServiceStub, org: str) -> None:
    for scope in chain(org).scopes:
        for lim in (
            B.Limit(scope=scope, metric=K.LIMIT_METRIC_TOKENS, period=K.LIMIT_PERIOD_DAY,
                    limit=10**15, action=K.LIMIT_ACTION_DENY),
            B.Limit(scope=scope, metric=K.LIMIT_METRIC_COST, period=K.LIMIT_PERIOD_MONTH,
                    time_zone="Europe/Berlin", limit=10**15, action=K.LIMIT_ACTION_DENY),
            B.Limit(scope=scope, metric=K.LIMIT_METRIC_REQUESTS, period=K.LIMIT_PERIOD_ROLLING,
                    rolling_window_seconds=60, limit=10**12, action=K.LIMIT_ACTION_THROTTLE),
        ):
            await stub.SetLimit(B.SetLimitRequest(limit=lim))


async def ensure_database(dsn: str) -> None:
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def run_unary(stub: budget_pb2_grpc.BudgetServiceStub, org: str, seconds: float
                    ) -> list[float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    req = B.ReserveRequest(chain=chain(org), estimated_tokens=3000, estimated_cost_nusd=9000)

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await stub.Reserve(req)
            assert r.decision == K.BUDGET_DECISION_ALLOW, r
            await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id,
                                              actual_tokens=1200, actual_cost_nusd=4000))
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return lat


class Coalescer:
    """Pairs from many callers go out as one ReserveBatch and one SettleBatch per round."""

    def __init__(self, stub: budget_pb2_grpc.BudgetServiceStub) -> None:
        self.stub = stub
        self.reserves: list[tuple[B.ReserveRequest, asyncio.Future[Any]]] = []
        self.commits: list[tuple[B.CommitRequest, asyncio.Future[Any]]] = []
        self.wake = asyncio.Event()

    async def reserve(self, req: B.ReserveRequest) -> B.ReserveResponse:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.reserves.append((req, fut))
        self.wake.set()
        return await fut

    async def commit(self, req: B.CommitRequest) -> None:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.commits.append((req, fut))
        self.wake.set()
        await fut

    async def loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            reserves, self.reserves = self.reserves, []
            commits, self.commits = self.commits, []
            await asyncio.gather(self._reserve(reserves), self._commit(commits))

    async def _reserve(self, items: list[tuple[B.ReserveRequest, asyncio.Future[Any]]]) -> None:
        if items:
            reply = await self.stub.ReserveBatch(B.ReserveBatchRequest(
                requests=[r for r, _ in items]))
            for (_, fut), res in zip(items, reply.results, strict=True):
                fut.set_result(res.response)

    async def _commit(self, items: list[tuple[B.CommitRequest, asyncio.Future[Any]]]) -> None:
        if items:
            await self.stub.SettleBatch(B.SettleBatchRequest(
                settlements=[B.Settlement(commit=c) for c, _ in items]))
            for _, fut in items:
                fut.set_result(None)


async def run_batch(stub: budget_pb2_grpc.BudgetServiceStub, org: str, seconds: float
                    ) -> list[float]:
    lat: list[float] = []
    stop = time.perf_counter() + seconds
    co = Coalescer(stub)
    pump = asyncio.create_task(co.loop())
    req = B.ReserveRequest(chain=chain(org), estimated_tokens=3000, estimated_cost_nusd=9000)

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await co.reserve(req)
            assert r.decision == K.BUDGET_DECISION_ALLOW, r
            await co.commit(B.CommitRequest(reservation_id=r.reservation_id,
                                            actual_tokens=1200, actual_cost_nusd=4000))
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    pump.cancel()
    return lat


def summary(name: str, lat: list[float], seconds: float, cpu_s: float) -> dict[str, Any]:
    return {"mode": name, "pairs": len(lat), "pairs_per_s": round(len(lat) / seconds),
            "p50_ms": round(statistics.median(lat) * 1000, 2),
            "p99_ms": round(pct(lat, 0.99) * 1000, 2), "in_flight": IN_FLIGHT,
            "server_cpu_ms_per_pair": round(cpu_s * 1000 / max(1, len(lat)), 3),
            "load_average": load_average()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    env = stack_env(tmp, TOKENRT_BUDGET_REDIS_PREFIX=f"benchbudget{tag}",
                    TOKENRT_BUDGET_SCHEMA=f"budget_bench{tag}",
                    TOKENRT_BUDGET_REBUILD_SOURCE="none", TOKENRT_LOG_LEVEL="warning")
    settings = load_settings(env)
    await ensure_database(settings.postgres_dsn)
    log = (tmp / "budget.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_budget"], env=env,  # noqa: ASYNC220
                            stdout=log, stderr=subprocess.STDOUT)
    address = settings.endpoint("budget").address
    results = []
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(300):
                try:
                    h = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if h.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
            stub = budget_pb2_grpc.BudgetServiceStub(channel)
            org = f"bench-{tag}"
            for _ in range(100):
                try:
                    await setup_limits(stub, org)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            for name, fn in (("unary", run_unary), ("batch", run_batch)):
                await fn(stub, org, 1.0)  # warm-up
                cpu0 = cpu_seconds(proc.pid)
                lat = await fn(stub, org, args.seconds)
                results.append(summary(name, lat, args.seconds, cpu_seconds(proc.pid) - cpu0))
            states = (await stub.Status(B.StatusRequest(scope=chain(org).scopes[0]))).limits
            assert len(states) == 3 and all(s.reserved == 0 for s in states)
    finally:
        proc.terminate()
        proc.wait(15)
        r = aioredis.from_url(settings.redis_url)
        keys = [k async for k in r.scan_iter(match=f"benchbudget{tag}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        pg = await asyncpg.connect(settings.postgres_dsn)
        await pg.execute(f'DROP SCHEMA IF EXISTS "budget_bench{tag}" CASCADE')
        await pg.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"budget: 4-scope chain, 12 limits, {IN_FLIGHT} pairs in flight, one client process, "
          f"{os.cpu_count()} cores")
    for r in results:
        print(f"  {r['mode']:6} {r['pairs_per_s']:>6} pairs/s  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  server CPU {r['server_cpu_ms_per_pair']:.2f} ms/pair  "
              f"load {r['load_average']:.2f}   (targets >= 5000 pairs/s, p99 < 5 ms)")


if __name__ == "__main__":
    asyncio.run(main())
