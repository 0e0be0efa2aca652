"""After Redis comes back empty and the counters are rebuilt from the ledger, usage that
was still on its way to the ledger (events in an outbox, the stream or a ledger batch) is
added once it arrives, and never twice: not for commits that arrive after the rebuild (the
budget counts those itself), not for late commits of events the rebuild already counted,
not for retries, not with two replicas catching up at once. Real budget replicas, a real
ledger, a private Valkey (see test_restart.py) and events published on real JetStream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
import structlog

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, events_pb2
from tokenrt_budget import core, service
from tokenrt_budget.service import Budget
from tokenrt_budget.store import (
    Counters,
    LedgerUsage,
    LimitStore,
    NoUsage,
    UsageQuery,
    UsageSource,
    UsageTotals,
    migrate,
    org_tag,
)
from tokenrt_common.redis_pipelined import PipelinedConnection
from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import PrivateValkey
from tokenrt_usage import Publisher, StreamSpec
from tokenrt_usage.testing import make_event

from .conftest import (
    PG_DSN,
    REDIS_URL,
    BudgetEnv,
    chain,
    free_port,
    ledger_sum,
    limit,
    new_org,
    scope,
    wait_ready,
)

K = common_pb2
B = budget_pb2
FAST = {"TOKENRT_BUDGET_CATCHUP_INTERVAL_SECONDS": "0.2"}


async def _publisher(be: BudgetEnv, tmp: Path) -> Publisher:
    pub = Publisher(be.env["TOKENRT_NATS_URL"], StreamSpec.from_settings(load_settings(be.env)),
                    tmp / "outbox.sqlite3")
    await pub.start()
    assert await pub.wait_ready(within=20)
    return pub


# When each reservation was made: a router stamps its events with that time, not with the
# time they are published (a rolling limit's catch-up sums them by it, bucket by bucket).
RESERVED_AT: dict[str, datetime] = {}


def _event(org: str, reservation_id: str, tokens: int) -> events_pb2.UsageEvent:
    event = make_event(org_id=org, project_id="web", user_id="alice", session_id="s1",
                       input_tokens=tokens - tokens // 4, output_tokens=tokens // 4)
    event.budget_reservation_id = reservation_id
    event.budget_reserved_at.FromDatetime(RESERVED_AT[reservation_id])
    return event


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)


async def test_usage_in_flight_at_a_redis_restart_is_counted_once_it_reaches_the_ledger(
        with_ledger: tuple[BudgetEnv, str], valkey: PrivateValkey, tmp_path: Path) -> None:
    be, ledger_addr = with_ledger
    a, b = be.start(**FAST), be.start(**FAST)  # both run catch-up passes
    for proc in (a, b):
        await wait_ready(proc.address)  # type: ignore[attr-defined]
    org = new_org()
    pub = await _publisher(be, tmp_path)
    async with grpc.aio.insecure_channel(a.address) as cha, \
            grpc.aio.insecure_channel(b.address) as chb:  # type: ignore[attr-defined]
        sa, sb = budget_pb2_grpc.BudgetServiceStub(cha), budget_pb2_grpc.BudgetServiceStub(chb)
        hard = (await sa.SetLimit(B.SetLimitRequest(limit=limit(
            f"org:{org}", 1000, period=K.LIMIT_PERIOD_TOTAL)))).limit
        # A rolling window too: its buckets are rebuilt and caught up one by one.
        await sa.SetLimit(B.SetLimitRequest(limit=limit(
            f"project:{org}/web", 10**6, period=K.LIMIT_PERIOD_ROLLING,
            rolling_window_seconds=600, action=K.LIMIT_ACTION_THROTTLE)))

        async def used() -> int:
            org_st = await sb.Status(B.StatusRequest(scope=scope(f"org:{org}")))
            project = await sb.Status(B.StatusRequest(scope=scope(f"project:{org}/web")))
            assert org_st.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED
            assert org_st.limits[0].used == project.limits[0].used, (org_st, project)
            return org_st.limits[0].used

        async def ledger() -> int:
            return await ledger_sum(ledger_addr, org)

        async def reserve(stub: budget_pb2_grpc.BudgetServiceStub, tokens: int) -> str:
            at = datetime.now(UTC)
            r = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=tokens))
            assert r.decision == K.BUDGET_DECISION_ALLOW, r
            RESERVED_AT[r.reservation_id] = at
            return r.reservation_id

        async def commit(stub: budget_pb2_grpc.BudgetServiceStub, rid: str, tokens: int) -> int:
            return (await stub.Commit(B.CommitRequest(
                reservation_id=rid, actual_tokens=tokens, chain=chain(org)))).outcome

        # Before the restart: r1 committed, its event still on its way (the outbox);
        # r2 and r4 answered but not yet committed; r2's event is in the ledger already.
        r1, r2, r4 = await reserve(sa, 300), await reserve(sa, 100), await reserve(sa, 40)
        assert await commit(sa, r1, 300) == B.SETTLEMENT_OUTCOME_COMMITTED
        await pub.publish(_event(org, r2, 100))
        await _until("the ledger has r2", lambda: _eq(ledger(), 100))

        valkey.kill()
        valkey.start(tmp_path)  # back, and empty
        # The rebuild finds only r2's 100 in the ledger.
        await _until("rebuilt", lambda: _ok(used()))
        assert await used() == 100
        # r2's commit arrives late: charged (the reservation is gone), and the catch-up
        # takes back the copy the rebuild counted from the ledger.
        assert await commit(sb, r2, 100) == B.SETTLEMENT_OUTCOME_LATE_COMMITTED
        await _until("r2 counted once", lambda: _eq(used(), 100), 10)
        # r4's late commit comes before its event: counted by the commit alone.
        assert await commit(sa, r4, 40) == B.SETTLEMENT_OUTCOME_LATE_COMMITTED
        # r3 is made and committed after the rebuild (on the other replica); its event
        # reaches the ledger at once: counted by the commit alone too.
        r3 = await reserve(sb, 50)
        assert await commit(sb, r3, 50) == B.SETTLEMENT_OUTCOME_COMMITTED
        await pub.publish(_event(org, r3, 50))
        await pub.publish(_event(org, r4, 40))
        await _until("the ledger has r2, r3, r4", lambda: _eq(ledger(), 190))
        await asyncio.sleep(1)  # passes run meanwhile
        assert await used() == 190
        # r1's event arrives at last: the catch-up adds it.
        await pub.publish(_event(org, r1, 300))
        await _until("the ledger has r1", lambda: _eq(ledger(), 490))
        await _until("r1 caught up", lambda: _eq(used(), 490), 10)
        # Retried late commits charge nothing again (their tombstones answer).
        for rid, tokens in ((r2, 100), (r4, 40)):
            assert await commit(sb, rid, tokens) == B.SETTLEMENT_OUTCOME_ALREADY_SETTLED
        await asyncio.sleep(1)
        assert (await used(), await ledger()) == (490, 490)
        # The hard limit sees it: 490 + 600 would pass 1000.
        over = await sa.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=600))
        assert over.decision == K.BUDGET_DECISION_DENY
        assert {s.limit_id: s.used for s in over.limits if s.triggered} == {hard.limit_id: 490}
    await pub.close()
    assert "budget.caught_up" in be.log_text()


async def _eq(value: Awaitable[int], want: int) -> bool:
    return await value == want


async def _ok(value: Awaitable[int]) -> bool:
    try:
        await value
        return True
    except (AssertionError, grpc.aio.AioRpcError):
        return False


async def test_a_forced_rebuild_keeps_holds_and_counts_their_commits_once(
        with_ledger: tuple[BudgetEnv, str], valkey: PrivateValkey, tmp_path: Path) -> None:
    """RebuildCounters with reservations held: committed after it, each is counted once,
    whether its event reached the ledger before the rebuild, or after the commit."""
    be, ledger_addr = with_ledger
    proc = be.start(**FAST)
    await wait_ready(proc.address)  # type: ignore[attr-defined]
    org = new_org()
    pub = await _publisher(be, tmp_path)
    async with grpc.aio.insecure_channel(proc.address) as ch:  # type: ignore[attr-defined]
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 1000)))

        async def used() -> int:
            st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
            return st.limits[0].used

        async def ledger() -> int:
            return await ledger_sum(ledger_addr, org)

        held = []
        for tokens in (100, 60):
            at = datetime.now(UTC)
            r = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=tokens))
            RESERVED_AT[r.reservation_id] = at
            held.append(r.reservation_id)
        await pub.publish(_event(org, held[0], 100))  # before its commit
        await _until("the ledger has the first", lambda: _eq(ledger(), 100))
        await stub.RebuildCounters(B.RebuildCountersRequest(scope=scope(f"org:{org}")))
        st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
        assert [(s.used, s.reserved) for s in st.limits] == [(100, 160)]
        for rid, tokens in zip(held, (100, 60), strict=True):
            c = await stub.Commit(B.CommitRequest(reservation_id=rid, actual_tokens=tokens))
            assert c.outcome == B.SETTLEMENT_OUTCOME_COMMITTED
        await pub.publish(_event(org, held[1], 60))
        await _until("the ledger has both", lambda: _eq(ledger(), 160))
        await _until("each counted once", lambda: _eq(used(), 160), 10)
        await asyncio.sleep(1)
        assert (await used(), await ledger()) == (160, 160)
    await pub.close()


# --- one replica in process on the real Redis and Postgres ---

@asynccontextmanager
async def _private() -> AsyncIterator[tuple[str, str, asyncpg.Pool]]:
    """A Redis key prefix, a Postgres schema and a pool of this test's own; all removed
    afterwards."""
    tag = uuid.uuid4().hex[:10]
    prefix, schema = f"tbudget{tag}", f"budget_t{tag}"
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
    try:
        yield prefix, schema, pool
    finally:
        r = aioredis.from_url(REDIS_URL, socket_timeout=5)
        keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def _budget(prefix: str, schema: str, usage: UsageSource, pool: asyncpg.Pool,
                  **overrides: str) -> Budget:
    settings = load_settings({"TOKENRT_BUDGET_REDIS_PREFIX": prefix,
                              "TOKENRT_BUDGET_SCHEMA": schema, **overrides})
    async with pool.acquire() as conn:
        await migrate(conn, schema, structlog.get_logger())
    counters = Counters(aioredis.from_url(REDIS_URL, socket_timeout=5), prefix,
                        PipelinedConnection(REDIS_URL, 5))
    store = LimitStore(pool, schema)
    return Budget(settings, lambda: counters, lambda: store, usage, structlog.get_logger(),
                  lambda *_: None)


async def _windows(budget: Budget, orgs: list[str]) -> None:
    """Each organization rebuilt with one day limit whose catch-up base is 0, its window
    open for a minute and its first pass due now."""
    now = datetime.now(UTC)
    for org in orgs:
        lim = core.Limit(f"l-{org}", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_DAY, 1000, K.LIMIT_ACTION_DENY)
        await budget.limit_store().upsert(lim, create=True)
        [slot] = budget.slots([lim], now)
        assert await budget.counters().install_rebuild(
            org, [(slot, {"Lused": 0})], now=now, epoch="1a2b3c4d",
            from_ms=int(now.timestamp() * 1000) - 900_000,
            until_ms=int(now.timestamp() * 1000) + 60_000, force=True)


async def test_catch_up_rounds_are_capped_and_back_off_while_the_ledger_is_down(
        pg_ready: None) -> None:
    """A round runs at most TOKENRT_BUDGET_CATCHUP_MAX_PASSES_PER_SECOND passes per second
    of the interval, the longest-due first (the others stay due); a pass whose ledger
    call fails ends the round and waits the longest interval (16), so a ledger that is
    down gets one call per round, not one per organization."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}")  # no ledger there
    async with _private() as (prefix, schema, pool):
        down = await _budget(prefix, schema, LedgerUsage(channel, 0.5), pool)
        orgs = [new_org() for _ in range(8)]
        await _windows(down, orgs)
        counters = down.counters()
        now = datetime.now(UTC)
        assert sorted(await counters.due_catchups(now)) == sorted(orgs)
        assert await down.catch_up_all(1.0) == 1  # the first fails: the round ends
        later = datetime.now(UTC)
        still = await counters.due_catchups(later)
        assert len(still) == 7
        [failed] = set(orgs) - set(still)
        assert await counters.due_catchups(later + timedelta(seconds=15)) == still
        assert failed in await counters.due_catchups(later + timedelta(seconds=17))

        # With a ledger that answers (here: no usage), 3 passes per second of a 1 s round.
        up = await _budget(prefix, schema, NoUsage(), pool,
                           TOKENRT_BUDGET_CATCHUP_MAX_PASSES_PER_SECOND="3")
        assert await up.catch_up_all(1.0) == 3
        assert len(await counters.due_catchups(datetime.now(UTC))) == 4
        assert await up.catch_up_all(1.0) == 3
        assert await up.catch_up_all(1.0) == 1
        assert await counters.due_catchups(datetime.now(UTC)) == []
    await channel.close()


class _ResetLedger:
    """Answers as the ledger would if 500 tokens had been reserved before a Reset, and
    runs `during` (once) while the first sum is being taken, as a slow ledger allows."""

    live = True

    def __init__(self) -> None:
        self.reset_at: datetime | None = None
        self.during: Callable[[], Awaitable[None]] | None = None

    async def sum(self, queries: Sequence[UsageQuery], exclude_prefix: str = "",
                  exclude_ids: Sequence[str] = ()) -> tuple[list[UsageTotals], datetime]:
        if self.during is not None:
            during, self.during = self.during, None
            await during()
        cut = self.reset_at
        return ([UsageTotals(500 if cut is None or q.start < cut else 0, 0, 0)
                 for q in queries], datetime.now(UTC))


async def test_a_reset_made_while_a_rebuild_sums_the_ledger_is_not_undone(
        pg_ready: None) -> None:
    """The rebuild read the limits before the Reset and its sums include the usage the
    Reset cleared: installing them would undo the Reset. The install is refused (the
    limits version moved) and the rebuild sums again with the Reset's limits."""
    ledger = _ResetLedger()
    async with _private() as (prefix, schema, pool):
        budget = await _budget(prefix, schema, ledger, pool)
        org = new_org()
        whole = core.Scope(core.ORG, org)
        await budget.limit_store().upsert(core.Limit(
            f"l-{org}", whole, K.LIMIT_METRIC_TOKENS, K.LIMIT_PERIOD_DAY, 1000,
            K.LIMIT_ACTION_DENY), create=True)

        async def reset() -> None:
            _, ledger.reset_at = await budget.reset(whole, "")

        ledger.during = reset
        await budget.rebuild_org(org)
        assert ledger.reset_at is not None  # the Reset did run during the rebuild
        [state], _ = await budget.status(whole, False)
        assert (state.check.used, state.check.reserved) == (0, 0)


async def test_a_window_with_too_many_late_commits_waits_and_does_not_starve_the_others(
        pg_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window whose counted set is larger than the ledger takes in one call skips its
    passes; it must wait the longest interval like a pass that added nothing, not stay the
    longest-due organization and take a place in every capped round."""
    monkeypatch.setattr(service, "MAX_COUNTED", 2)
    async with _private() as (prefix, schema, pool):
        budget = await _budget(prefix, schema, NoUsage(), pool,
                               TOKENRT_BUDGET_CATCHUP_MAX_PASSES_PER_SECOND="1")
        crowded, other = new_org(), new_org()
        await _windows(budget, [crowded])
        counters = budget.counters()
        await counters.redis.sadd(counters.keys.counted(org_tag(crowded)), "a", "b", "c")
        await _windows(budget, [other])  # due after the crowded one
        assert await budget.catch_up_all(1.0) == 1  # the crowded one: skipped
        assert await budget.catch_up_all(1.0) == 1  # the other one
        assert await counters.due_catchups(datetime.now(UTC)) == []

