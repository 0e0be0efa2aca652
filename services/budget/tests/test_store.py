"""The Lua scripts on a real Redis, driven by hypothesis: any sequence of reserves,
commits (actual <= estimate), releases and expiries keeps a hard limit unspent-over and
the holds equal to what is outstanding."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tokenrt.v1 import common_pb2 as K
from tokenrt_budget import core
from tokenrt_budget.store import CatchUp, Counters, Slot, new_reservation_id
from tokenrt_common.redis_pipelined import PipelinedConnection

from .conftest import REDIS_URL

EPOCH = "0e0c0a01"

ops = st.lists(st.tuples(st.sampled_from(["reserve", "commit", "release", "tick"]),
                         st.integers(0, 40), st.integers(0, 100)), max_size=60)


@asynccontextmanager
async def _private() -> AsyncIterator[tuple[Counters, str]]:
    """Counters under a key prefix of their own and a new organization; the keys go
    afterwards."""
    r = aioredis.from_url(REDIS_URL, socket_timeout=5)
    counters = Counters(r, f"tstore{uuid.uuid4().hex[:10]}", PipelinedConnection(REDIS_URL, 5))
    try:
        yield counters, f"org-{uuid.uuid4().hex[:8]}"
    finally:
        keys = [k async for k in r.scan_iter(match=f"{counters.keys.prefix}:*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await counters.close()


async def _ready(counters: Counters, org: str) -> None:
    """The organization's counters as after a rebuild of nothing, without a window."""
    assert await counters.install_rebuild(org, [], now=datetime.now(UTC), epoch=EPOCH,
                                          from_ms=0, until_ms=0, force=True)


def _slot(counters: Counters, lim: core.Limit, now: datetime, need: int) -> Slot:
    win = core.window(lim, now)
    return Slot(lim, win, counters.keys.counter(lim, win), need, core.blocks(lim.action, False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.integers(1, 200), st.booleans())
@example([("reserve", 0, 0), ("tick", 20, 0)], 1, False)  # a zero hold expiring (CI once)
def test_any_sequence_keeps_the_hard_limit(sequence: list[tuple[str, int, int]], cap: int,
                                           rolling: bool) -> None:
    asyncio.run(_run(sequence, cap, rolling))


async def _run(sequence: list[tuple[str, int, int]], cap: int, rolling: bool) -> None:
    async with _private() as (counters, org):
        lim = core.Limit("l1", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_ROLLING if rolling else K.LIMIT_PERIOD_TOTAL, cap,
                         K.LIMIT_ACTION_DENY, rolling_window_seconds=3600 if rolling else 0)
        now = datetime.now(UTC)
        await _ready(counters, org)
        held: dict[str, tuple[int, datetime]] = {}  # reservation -> (estimate, expiry)
        used = 0
        for op, amount, pct in sequence:
            if op == "tick":  # time passes: some reservations expire
                now += timedelta(seconds=amount)
                held = {rid: v for rid, v in held.items() if v[1] > now}
            elif op == "reserve":
                rid = new_reservation_id(org, EPOCH)
                res = await counters.reserve(org, [_slot(counters, lim, now, amount)], now=now,
                                             ttl_ms=20_000, reservation_id=rid, dry_run=False,
                                             version="0", epoch=EPOCH)
                fits = used + sum(v[0] for v in held.values()) + amount <= cap
                assert (res.status == "OK") == fits
                if fits:
                    held[rid] = (amount, now + timedelta(seconds=20))
            elif held:
                rid = sorted(held)[amount % len(held)]
                estimate, _ = held.pop(rid)
                actual = estimate * pct // 100
                res2 = await counters.settle(rid, commit=op == "commit", tokens=actual,
                                             cost_nusd=0, now=now)
                assert res2.status == "DONE"
                if op == "commit":
                    used += actual
            [c] = await counters.read(org, [_slot(counters, lim, now, 0)], now)
            assert c.used == used <= cap
            assert c.reserved == sum(v[0] for v in held.values())


async def test_rolling_window_forgets_old_usage() -> None:
    async with _private() as (counters, org):
        lim = core.Limit("l1", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_ROLLING, 100, K.LIMIT_ACTION_THROTTLE,
                         rolling_window_seconds=60)
        await _ready(counters, org)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i, amount in enumerate((30, 30, 30)):  # at 0 s, 20 s, 40 s
            now = t0 + timedelta(seconds=20 * i)
            rid = new_reservation_id(org, EPOCH)
            ok = await counters.reserve(org, [_slot(counters, lim, now, amount)], now=now,
                                        ttl_ms=10_000, reservation_id=rid, dry_run=False,
                                        version="0", epoch=EPOCH)
            assert ok.status == "OK"
            await counters.settle(rid, commit=True, tokens=amount, cost_nusd=0, now=now)
        at50 = t0 + timedelta(seconds=50)
        refused = await counters.reserve(org, [_slot(counters, lim, at50, 20)], now=at50,
                                         ttl_ms=10_000, reservation_id="x", dry_run=True,
                                         version="0", epoch=EPOCH)
        assert refused.status == "REFUSED"
        # The first 30 leave the window at 60 s: 10 s after 50 s.
        assert refused.counters[0].used == 90 and refused.counters[0].retry_after_ms == 10_000
        at61 = t0 + timedelta(seconds=61)
        [c] = await counters.read(org, [_slot(counters, lim, at61, 0)], at61)
        assert c.used == 60
        # Long idle: everything left the window.
        later = t0 + timedelta(hours=2)
        [c] = await counters.read(org, [_slot(counters, lim, later, 0)], later)
        assert c.used == 0


async def test_catch_up_adds_what_the_ledger_gained_once_and_gives_back_a_late_commit(
        ) -> None:
    """The catch-up script on its own: the ledger's sum since the horizon is added as it
    grows (an older, smaller answer takes nothing back), a commit of a reservation made
    before the rebuild is charged once (a retry is not) and refuses sums taken before it,
    and the next sum, which leaves that reservation out, takes back what the rebuild or an
    earlier pass had already counted of it."""
    async with _private() as (counters, org):
        lim = core.Limit("l1", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_TOTAL, 10_000, K.LIMIT_ACTION_DENY)
        now = datetime.now(UTC)
        slot = _slot(counters, lim, now, 0)
        epoch = "1a2b3c4d"
        until = int(now.timestamp() * 1000) + 60_000
        # Rebuilt: 100 in the period, 40 of it reserved since the horizon.
        assert await counters.install_rebuild(org, [(slot, {"used": 100, "Lused": 40})],
                                              now=now, epoch=epoch, from_ms=0,
                                              until_ms=until, force=False)
        assert not await counters.install_rebuild(org, [], now=now, epoch="ffffffff",
                                                  from_ms=0, until_ms=until, force=False)
        assert await counters.due_catchups(now) == [org]
        win = await counters.catchup_window(org)
        assert win is not None and (win.epoch, win.version, win.counted) == (epoch, 0, [])

        async def used() -> int:
            return (await counters.read(org, [slot], now))[0].used

        def at(version: int, epoch: str = epoch) -> CatchUp:
            return CatchUp(epoch, 0, 0, until, version, [])

        assert await counters.apply_catchup(org, at(0), [(slot, {"used": 50})], now) == 10
        assert await counters.apply_catchup(org, at(0), [(slot, {"used": 45})], now) == 0
        assert await used() == 110
        # Passes that add nothing wait ever longer for the next (1 s, then 2 s, ...).
        win = await counters.catchup_window(org)
        assert win is not None and win.next_ms == int(now.timestamp() * 1000) + 2000

        # A reservation of the old epoch, committed late (its event is in the 50 already).
        old = new_reservation_id(org, "00000000")
        late = _slot(counters, lim, now, 7)
        assert (await counters.charge(org, [late], now, old)).status == "DONE"
        assert await used() == 117
        retry = await counters.charge(org, [late], now, old)  # a retry: charged once
        assert retry.status == "SETTLED" and await used() == 117
        win = await counters.catchup_window(org)
        assert win is not None and (win.version, win.counted, win.next_ms) == (1, [old], 0)
        # A sum taken before that commit is refused; the next one leaves it out.
        assert await counters.apply_catchup(org, at(0), [(slot, {"used": 60})], now) is None
        assert await counters.apply_catchup(org, at(1), [(slot, {"used": 43})], now) == -7
        assert await used() == 110
        assert await counters.apply_catchup(org, at(1), [(slot, {"used": 41})], now) == 0
        # A pass of another window (an earlier rebuild's) is refused.
        assert await counters.apply_catchup(org, at(1, "00000000"), [(slot, {"used": 99})],
                                            now) is None

        # A reservation of the new epoch is counted by its commit and never noted.
        rid = new_reservation_id(org, epoch)
        res = await counters.reserve(org, [_slot(counters, lim, now, 5)], now=now,
                                     ttl_ms=10_000, reservation_id=rid, dry_run=False,
                                     version="0", epoch=epoch)
        assert res.status == "OK"
        stale = await counters.reserve(org, [_slot(counters, lim, now, 5)], now=now,
                                       ttl_ms=10_000, reservation_id="x", dry_run=True,
                                       version="0", epoch="00000000")
        assert (stale.status, stale.epoch) == ("EPOCH", epoch)
        await counters.settle(rid, commit=True, tokens=5, cost_nusd=0, now=now)
        assert await used() == 115
        win = await counters.catchup_window(org)
        assert win is not None and win.version == 1
        # A Reset drops the bases: the catch-up leaves the counter alone from then on.
        await counters.set_used(slot, {}, now, restart_alerts=True)
        assert await counters.apply_catchup(org, at(1), [(slot, {"used": 500})], now) == 0
        assert await used() == 0


async def test_a_retried_late_commit_is_charged_once_without_a_catch_up_window() -> None:
    """A late commit (its reservation expired or died with Redis) leaves a tombstone like a
    commit does: a retry, by the charge script or by the settle script, charges nothing,
    whether or not a catch-up window is open."""
    async with _private() as (counters, org):
        lim = core.Limit("l1", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_TOTAL, 10_000, K.LIMIT_ACTION_DENY)
        now = datetime.now(UTC)
        await _ready(counters, org)  # no window
        for rid in (new_reservation_id(org, EPOCH), new_reservation_id(org, "00000000")):
            before = (await counters.read(org, [_slot(counters, lim, now, 0)], now))[0].used
            first = await counters.charge(org, [_slot(counters, lim, now, 7)], now, rid)
            assert first.status == "DONE"
            again = await counters.charge(org, [_slot(counters, lim, now, 7)], now, rid)
            assert again.status == "SETTLED"
            settled = await counters.settle(rid, commit=True, tokens=7, cost_nusd=0, now=now)
            assert settled.status == "SETTLED"
            [c] = await counters.read(org, [_slot(counters, lim, now, 0)], now)
            assert c.used == before + 7


steps = st.lists(st.tuples(st.sampled_from(["arrive", "commit", "read", "apply"]),
                           st.integers(0, 5)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 50), st.booleans()), min_size=1, max_size=6), steps)
def test_any_interleaving_of_late_events_commits_and_passes_counts_each_once(
        reservations: list[tuple[int, bool]], sequence: list[tuple[str, int]]) -> None:
    """Reservations made before a rebuild (amount, whether their event was in the ledger at
    the rebuild), then in any order: their events reach the ledger, their late commits
    (retried or not) arrive, catch-up passes read the ledger and apply, also late and out
    of order. Once every event has arrived and a pass has run, each is counted once."""
    asyncio.run(_interleave(reservations, sequence))


async def _interleave(reservations: list[tuple[int, bool]],
                      sequence: list[tuple[str, int]]) -> None:
    async with _private() as (counters, org):
        lim = core.Limit("l1", core.Scope(core.ORG, org), K.LIMIT_METRIC_TOKENS,
                         K.LIMIT_PERIOD_TOTAL, 10**9, K.LIMIT_ACTION_DENY)
        now = datetime.now(UTC)
        slot = _slot(counters, lim, now, 0)
        rids = [new_reservation_id(org, "00000000") for _ in reservations]
        ledger = {i for i, (_, early) in enumerate(reservations) if early}
        older = 1000  # reserved before the horizon: in the rebuild, never caught up
        recent = sum(reservations[i][0] for i in ledger)
        until = int(now.timestamp() * 1000) + 60_000
        passes: dict[int, tuple[CatchUp, int]] = {}

        async def read() -> tuple[CatchUp, int]:
            win = await counters.catchup_window(org)
            assert win is not None
            return win, sum(reservations[i][0] for i in ledger if rids[i] not in win.counted)

        await counters.install_rebuild(org, [(slot, {"used": older + recent, "Lused": recent})],
                                       now=now, epoch="1a2b3c4d", from_ms=0, until_ms=until,
                                       force=True)
        for op, k in sequence:
            i = k % len(reservations)
            if op == "arrive":
                ledger.add(i)
            elif op == "commit":
                late = _slot(counters, lim, now, reservations[i][0])
                await counters.charge(org, [late], now, rids[i])
            elif op == "read":
                passes[k] = await read()
            elif k in passes:
                win, total = passes.pop(k)
                await counters.apply_catchup(org, win, [(slot, {"used": total})], now)
        ledger = set(range(len(reservations)))
        for _ in range(2):  # the first may meet a commit's version change: one more
            win, total = await read()
            if await counters.apply_catchup(org, win, [(slot, {"used": total})],
                                            now) is not None:
                break
        for win, total in passes.values():  # slow replicas' passes, applied last
            await counters.apply_catchup(org, win, [(slot, {"used": total})], now)
        [c] = await counters.read(org, [slot], now)
        assert c.used == older + sum(amount for amount, _ in reservations)
