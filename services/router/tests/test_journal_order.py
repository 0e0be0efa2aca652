"""The pipeline in this process, against the session stack and the simulator: what it
journals, and when. The journal record is written before the answer (journal.py's
promise): when `Router.complete` returns, or when `Router.stream` hands out its done
message, the request's event and settlement are already in a journal segment. (A
kill-after-answer test cannot see a write made microseconds after the answer; this one
can.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import structlog

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    cache_pb2_grpc,
    common_pb2,
    compressor_pb2_grpc,
    counter_pb2_grpc,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
)
from tokenrt_common.settings import load_settings
from tokenrt_pricing import catalog as pricing_catalog
from tokenrt_router.api import new_job
from tokenrt_router.journal import _read
from tokenrt_router.keys import Caller
from tokenrt_router.pipeline import Deps, Router
from tokenrt_router.providers import registry
from tokenrt_router.refusal import Refusal
from tokenrt_usage.publisher import Publisher

T = common_pb2
LOG = structlog.get_logger("test")


@asynccontextmanager
async def running(router_env: dict, folder: Path, **overrides: str) -> AsyncIterator[Router]:  # type: ignore[type-arg]
    """A Router in this process with its outbox and journal in `folder`."""
    settings = load_settings(router_env["env"] | {
        "TOKENRT_USAGE_OUTBOX_PATH": str(folder / "outbox.sqlite3")} | overrides)
    channels = {n: grpc.aio.insecure_channel(settings.endpoint(n).address)
                for n in ("counter", "cache", "budget", "compressor")}
    publisher = Publisher.from_settings(settings, LOG)
    await publisher.start()
    deps = Deps(counter_pb2_grpc.CounterServiceStub(channels["counter"]),
                cache_pb2_grpc.CacheServiceStub(channels["cache"]),
                budget_pb2_grpc.BudgetServiceStub(channels["budget"]),
                compressor_pb2_grpc.CompressorServiceStub(channels["compressor"]), publisher)
    router = Router(settings, LOG, deps, pricing_catalog.load(None, None),
                    registry.for_router(settings, LOG))
    router.start()
    try:
        yield router
    finally:
        await router.drain()
        for p in router.providers.values():
            await p.close()
        await publisher.close()
        for ch in channels.values():
            await ch.close()


@pytest.fixture
async def in_process(router_env: dict, tmp_path: Path) -> AsyncIterator[Router]:  # type: ignore[type-arg]
    """Flushing once a second: the records stay outstanding while the test looks."""
    async with running(router_env, tmp_path, TOKENRT_ROUTER_FLUSH_MS="1000") as router:
        yield router


def journaled(router: Router) -> list[tuple[events_pb2.UsageEvent, bytes]]:
    out = []
    for path in router.journal.folder.glob("*.seg"):
        with path.open("rb") as f:
            entries, _ = _read(f.fileno())
        out += [(events_pb2.UsageEvent.FromString(e.event), e.settlement) for e in entries]
    return out


def job_for(router_env: dict, stream: bool):  # type: ignore[no-untyped-def,type-arg]
    req = router_pb2.CompleteRequest(
        session_id="s-" + uuid.uuid4().hex[:8],
        messages=[T.Message(role=T.ROLE_USER,
                            content=[T.ContentPart(text="journal order " + uuid.uuid4().hex)])],
        sampling=T.SamplingParams(max_output_tokens=32),
        preferences=router_pb2.RoutingPreferences(forced_model="sim/gpt-4o-mini"))
    caller = Caller("key_journal", router_env["org"], router_env["project"])
    return new_job(caller, req, "r-" + uuid.uuid4().hex, stream)


def assert_journaled(router: Router, event_id: str) -> None:
    found = [(e, s) for e, s in journaled(router) if e.event_id == event_id]
    assert len(found) == 1, "the answer went out before its journal record was written"
    event, settlement = found[0]
    assert event.status == events_pb2.USAGE_STATUS_OK and event.cost_nusd > 0
    commit = budget_pb2.Settlement.FromString(settlement).commit
    assert commit.reservation_id and commit.actual_cost_nusd == event.cost_nusd


async def test_complete_returns_after_its_record_is_journaled(in_process: Router,
                                                              router_env: dict) -> None:  # type: ignore[type-arg]
    job = job_for(router_env, stream=False)
    completion = await in_process.complete(job)
    assert_journaled(in_process, completion.event_id)  # nothing ran since it returned


async def test_stream_sends_done_after_its_record_is_journaled(in_process: Router,
                                                               router_env: dict) -> None:  # type: ignore[type-arg]
    job = job_for(router_env, stream=True)
    gen = in_process.stream(job)
    async for msg in gen:
        if msg.WhichOneof("event") == "done":
            assert_journaled(in_process, msg.done.event_id)  # the generator is paused here
            break
    await gen.aclose()  # a client gone right after the done message: recorded once
    await in_process.drain()
    assert not journaled(in_process)  # all done: published and settled, nothing twice


async def test_an_event_the_outbox_cannot_take_yet_is_kept_not_dropped(router_env: dict,  # type: ignore[type-arg]
                                                                      tmp_path: Path) -> None:
    """NATS unreachable and the outbox refusing writes (as on a full disk) for longer than a
    few flush retries: the answered request's event is kept and retried, and reaches the
    outbox once it takes writes again (it was dropped after ~1.4 s)."""
    async with running(router_env, tmp_path, TOKENRT_NATS_URL="nats://127.0.0.1:1",
                       TOKENRT_ROUTER_FLUSH_MS="50") as router:
        outbox = router.deps.publisher.outbox
        db = await outbox._run(outbox._conn)
        db.execute("PRAGMA query_only=1")  # every insert fails, as on a full disk
        completion = await router.complete(job_for(router_env, stream=False))
        await asyncio.sleep(3)  # the first retries (~1.4 s) fail
        assert router.deps.publisher.pending == 0
        db.execute("PRAGMA query_only=0")  # room again
        for _ in range(100):
            if router.deps.publisher.pending:
                break
            await asyncio.sleep(0.1)
        [record] = await outbox.head(10)
        assert record.event_id == completion.event_id


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_a_request_whose_caller_already_gave_up_is_recorded_unsent(
        in_process: Router, router_env: dict, stream: bool) -> None:  # type: ignore[type-arg]
    """A request that waited (in the server's queue) past its caller's deadline is given up
    before counting: DEADLINE_EXCEEDED, one CANCELLED event, nothing reserved or charged."""
    job = job_for(router_env, stream=stream)
    job.deadline = time.monotonic() - 0.001
    with pytest.raises(Refusal) as info:
        if stream:
            async for _ in in_process.stream(job):
                pass
        else:
            await in_process.complete(job)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "before counting" in info.value.message
    [(event, settlement)] = [(e, s) for e, s in journaled(in_process)
                             if e.event_id == job.event_id]
    assert event.status == events_pb2.USAGE_STATUS_CANCELLED and event.cost_nusd == 0
    assert event.error_code == "DEADLINE_EXCEEDED" and event.stream == stream
    assert settlement == b"" and not job.reservation_id and job.input_tokens == 0


async def test_a_record_replayed_after_its_commit_went_through_is_charged_once(
        router_env: dict, stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def,type-arg]
    """A router dies after its commit reached the budget but before the event was
    published: the next router on its folder replays the whole record. The event reaches
    the ledger once, and the commit is not charged again (the budget's tombstone)."""
    job = job_for(router_env, stream=False)
    scope = T.Scope(kind=T.SCOPE_KIND_SESSION, org_id=router_env["org"],
                    project_id=router_env["project"], session_id=job.req.session_id)
    async with grpc.aio.insecure_channel(stack.settings.endpoint("budget").address) as bch, \
            grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address) as lch:
        budget = budget_pb2_grpc.BudgetServiceStub(bch)
        await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
            scope=scope, metric=T.LIMIT_METRIC_COST, period=T.LIMIT_PERIOD_TOTAL,
            limit=10**15, action=T.LIMIT_ACTION_DENY, name="test")), timeout=10)
        async with running(router_env, tmp_path, TOKENRT_ROUTER_FLUSH_MS="1000") as first:
            completion = await first.complete(job)
            await first.settlements.drain()  # the commit went through
            first.events._kick = lambda: None  # type: ignore[method-assign]
            first.events._items.clear()  # its event did not: the router "dies" here
            first.journal.close()  # (its lock goes with it)
        async with running(router_env, tmp_path, TOKENRT_ROUTER_FLUSH_MS="50") as second:
            await second.events.drain()
            await second.settlements.drain()
            assert not journaled(second)  # replayed and done
            # The publisher connects in the background: an event replayed before it did
            # is in its outbox; let it reach the stream before this router closes.
            assert await second.deps.publisher.wait_ready(30)
            assert await second.deps.publisher.flush(30)
        ledger = ledger_pb2_grpc.LedgerServiceStub(lch)
        for _ in range(100):
            found = (await ledger.ListEvents(ledger_pb2.ListEventsRequest(
                filter=ledger_pb2.UsageFilter(org_id=router_env["org"],
                                              session_id=job.req.session_id)),
                timeout=5)).events
            if found:
                break
            await asyncio.sleep(0.2)
        assert [e.event_id for e in found] == [completion.event_id]
        [lim] = (await budget.Status(budget_pb2.StatusRequest(scope=scope), timeout=5)).limits
    assert completion.cost_nusd > 0
    assert (lim.used, lim.reserved) == (completion.cost_nusd, 0)
