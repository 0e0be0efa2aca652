"""Two budget replicas (two processes, one Redis and Postgres) under 500 concurrent
reserve+commit calls against a hard limit: never overspent, filled to within one request."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2

from .conftest import BudgetEnv, chain, limit, new_org, scope, wait_ready

K = common_pb2
B = budget_pb2
N = 500
BIGGEST = 50


async def _two(budget: BudgetEnv) -> list[budget_pb2_grpc.BudgetServiceStub]:
    procs = [budget.start(), budget.start()]
    await asyncio.gather(*(wait_ready(p.address) for p in procs))  # type: ignore[attr-defined]
    channels = [grpc.aio.insecure_channel(p.address) for p in procs]  # type: ignore[attr-defined]
    return [budget_pb2_grpc.BudgetServiceStub(c) for c in channels]


async def _run(stubs: list[budget_pb2_grpc.BudgetServiceStub], org: str, sizes: list[int],
               actual_pct: list[int]) -> tuple[int, int]:
    """Reserve+commit every size concurrently over both replicas; (committed, allowed)."""
    async def one(i: int) -> int:
        stub = stubs[i % 2]
        r = await stub.Reserve(B.ReserveRequest(chain=chain(org, user=f"u{i % 7}"),
                                                estimated_tokens=sizes[i]))
        if r.decision != K.BUDGET_DECISION_ALLOW:
            assert r.decision == K.BUDGET_DECISION_DENY and not r.reservation_id
            return -1
        actual = sizes[i] * actual_pct[i] // 100
        c = await stubs[(i + 1) % 2].Commit(B.CommitRequest(reservation_id=r.reservation_id,
                                                            actual_tokens=actual))
        assert c.outcome == B.SETTLEMENT_OUTCOME_COMMITTED
        return actual

    results = await asyncio.gather(*(one(i) for i in range(len(sizes))))
    return sum(x for x in results if x >= 0), sum(1 for x in results if x >= 0)


async def test_500_concurrent_never_overspent_and_filled(budget: BudgetEnv) -> None:
    stubs = await _two(budget)
    org = new_org()
    rng = random.Random(7)
    cap = 5_000
    # A hard limit on the org, a roomy one on the project: both are checked atomically.
    lim = (await stubs[0].SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", cap)))).limit
    await stubs[1].SetLimit(B.SetLimitRequest(limit=limit(f"project:{org}/web", 10**9)))
    sizes = [rng.randint(1, BIGGEST) for _ in range(N)]
    assert sum(sizes) > 2 * cap  # demand exceeds the limit
    committed, allowed = await _run(stubs, org, sizes, [100] * N)
    for stub in stubs:
        st = (await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))).limits
        [s] = [x for x in st if x.limit_id == lim.limit_id]
        assert s.used == committed and s.reserved == 0
    assert committed <= cap
    assert cap - committed < BIGGEST, (committed, allowed)


async def test_smaller_actuals_and_a_limit_change_seen_by_the_other_replica(
        budget: BudgetEnv) -> None:
    stubs = await _two(budget)
    org = new_org()
    rng = random.Random(11)
    cap = 3_000
    lim = (await stubs[0].SetLimit(B.SetLimitRequest(limit=limit(f"user:{org}/web/u1", 10**6))))
    await stubs[0].SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", cap)))
    sizes = [rng.randint(1, BIGGEST) for _ in range(N)]
    committed, _ = await _run(stubs, org, sizes, [rng.randint(0, 100) for _ in range(N)])
    assert committed <= cap
    # A change made through replica 0 binds replica 1 at once.
    changed = lim.limit
    changed.limit = 10
    await stubs[0].SetLimit(B.SetLimitRequest(limit=changed))
    r = await stubs[1].Reserve(B.ReserveRequest(chain=chain(org, user="u1"), estimated_tokens=11,
                                                dry_run=True))
    assert r.decision == K.BUDGET_DECISION_DENY
    [mine] = [s for s in r.limits if s.limit_id == changed.limit_id]
    assert mine.limit == 10 and mine.triggered


@pytest.mark.parametrize("n", [50])
async def test_reservations_expire_across_replicas(budget: BudgetEnv, n: int) -> None:
    stubs = await _two(budget)
    org = new_org()
    await stubs[0].SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", n)))
    # A TTL well above the time 50 reserves take on a loaded machine (1 s was not).
    held = await asyncio.gather(*(stubs[i % 2].Reserve(B.ReserveRequest(
        chain=chain(org), estimated_tokens=1, ttl_seconds=3)) for i in range(n)))
    assert all(r.decision == K.BUDGET_DECISION_ALLOW for r in held)
    assert (await stubs[1].Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=1,
                                                    dry_run=True))).decision == K.BUDGET_DECISION_DENY
    await asyncio.sleep(4.5)  # never committed: the sweepers give every hold back
    st = await stubs[1].Status(B.StatusRequest(scope=scope(f"org:{org}")))
    assert (st.limits[0].used, st.limits[0].reserved) == (0, 0)
