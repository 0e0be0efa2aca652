"""The whole pipeline against real services (the session stack) and the simulator."""

from __future__ import annotations

import asyncio
import re
import uuid

import aiohttp
import grpc
import pytest

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tokenrt_pricing.catalog import load as load_catalog
from tokenrt_router.bound import input_bound

from .conftest import ROUTER_KEY, detail_of

T = common_pb2
AUTH = (("authorization", f"Bearer {ROUTER_KEY}"),)


def msg(role: int, text: str) -> common_pb2.Message:
    return T.Message(role=role, content=[T.ContentPart(text=text)])


def request(text: str, **prefs: object) -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        session_id="s-" + uuid.uuid4().hex[:8],
        messages=[msg(T.ROLE_SYSTEM, "You are a coding assistant."), msg(T.ROLE_USER, text)],
        sampling=T.SamplingParams(temperature=0.0, max_output_tokens=64),
        preferences=router_pb2.RoutingPreferences(**prefs))  # type: ignore[arg-type]


@pytest.fixture
async def router(router_env: dict) -> router_pb2_grpc.RouterServiceStub:
    ch = grpc.aio.insecure_channel(router_env["address"])
    yield router_pb2_grpc.RouterServiceStub(ch)
    await ch.close()


@pytest.fixture
async def ledger(stack) -> ledger_pb2_grpc.LedgerServiceStub:  # type: ignore[no-untyped-def]
    ch = grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address)
    yield ledger_pb2_grpc.LedgerServiceStub(ch)
    await ch.close()


@pytest.fixture
async def budget(stack) -> budget_pb2_grpc.BudgetServiceStub:  # type: ignore[no-untyped-def]
    ch = grpc.aio.insecure_channel(stack.settings.endpoint("budget").address)
    yield budget_pb2_grpc.BudgetServiceStub(ch)
    await ch.close()


async def event_of(ledger: ledger_pb2_grpc.LedgerServiceStub, event_id: str,
                   within: float = 15) -> events_pb2.UsageEvent:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return (await ledger.GetEvent(ledger_pb2.GetEventRequest(event_id=event_id),
                                          timeout=5)).event
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or \
                    asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_complete_answers_and_records(router, ledger) -> None:  # type: ignore[no-untyped-def]
    resp = await router.Complete(request("Explain what a Python list is.",
                                         forced_model="sim/gpt-4o-mini"), metadata=AUTH)
    c = resp.completion
    assert "simulator" in c.message.content[0].text
    assert c.served_model == "sim/gpt-4o-mini" and c.provider == T.PROVIDER_SIMULATOR
    assert c.usage.input_tokens > 0 and 0 < c.usage.output_tokens <= 64
    assert c.usage_source == T.USAGE_SOURCE_PROVIDER_REPORTED
    # gpt-4o-mini: $0.15 / $0.60 per 1M tokens, in nusd per token 150 / 600.
    assert c.cost_nusd == c.usage.input_tokens * 150 + c.usage.output_tokens * 600
    assert c.budget.decision in (T.BUDGET_DECISION_ALLOW, T.BUDGET_DECISION_UNSPECIFIED)
    e = await event_of(ledger, c.event_id)
    assert e.status == events_pb2.USAGE_STATUS_OK and e.cost_nusd == c.cost_nusd
    assert e.usage.output_tokens == c.usage.output_tokens and e.served_model == "sim/gpt-4o-mini"
    assert e.budget_reservation_id  # committed: the budget's rebuild counts this event


async def test_unknown_key_is_unauthenticated(router) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(request("hi"), metadata=(("authorization", "Bearer nope"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_empty_messages_is_invalid(router) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(router_pb2.CompleteRequest(), metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail_of(info.value).field == "messages"


async def test_cache_hit_costs_nothing_and_is_recorded(router, ledger) -> None:  # type: ignore[no-untyped-def]
    text = "Write a haiku about caches " + uuid.uuid4().hex
    first = (await router.Complete(request(text, forced_model="sim/gpt-4o"), metadata=AUTH)).completion
    assert not first.cache.hit and first.cache.stored
    for _ in range(50):  # the store is coalesced off the critical path
        second = (await router.Complete(request(text, forced_model="sim/gpt-4o"),
                                        metadata=AUTH)).completion
        if second.cache.hit:
            break
        await asyncio.sleep(0.1)
    assert second.cache.hit and second.cost_nusd == 0 and second.usage.output_tokens == 0
    assert second.message.content[0].text == first.message.content[0].text
    assert second.cache.saved_cost_nusd == first.cost_nusd
    e = await event_of(ledger, second.event_id)
    assert e.cache_hit and e.status == events_pb2.USAGE_STATUS_CACHE_HIT
    assert e.cost_nusd == 0 and e.cache_saved_cost_nusd == first.cost_nusd


async def test_stream_deltas_add_up_to_done(router, ledger) -> None:  # type: ignore[no-untyped-def]
    call = router.StreamComplete(router_pb2.StreamCompleteRequest(
        request=request("Stream me an answer " + uuid.uuid4().hex, forced_model="sim/gpt-4o-mini")),
        metadata=AUTH)
    events = [e async for e in call]
    assert events[0].WhichOneof("event") == "start"
    text = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    done = events[-1].done
    assert done.message.content[0].text == text and "simulator" in text
    assert done.usage.output_tokens > 0 and done.cost_nusd > 0
    e = await event_of(ledger, done.event_id)
    assert e.stream and e.usage.output_tokens == done.usage.output_tokens


async def test_provider_errors_fall_back(router, sim_url, ledger) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/faults", json={"model": "gpt-4o", "fault": "500", "count": -1})
    try:
        c = (await router.Complete(request("Fallback please " + uuid.uuid4().hex,
                                           preferred_model="sim/gpt-4o"),
                                   metadata=AUTH)).completion
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
    assert c.served_model != "sim/gpt-4o" and "simulator" in c.message.content[0].text
    e = await event_of(ledger, c.event_id)
    assert e.provider_attempts >= 2


async def session_events(ledger, org: str, session: str, n: int = 1,  # type: ignore[no-untyped-def]
                         within: float = 15) -> list[events_pb2.UsageEvent]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await ledger.ListEvents(ledger_pb2.ListEventsRequest(
            filter=ledger_pb2.UsageFilter(org_id=org, session_id=session), page_size=50),
            timeout=5)
        if len(r.events) >= n or asyncio.get_running_loop().time() > deadline:
            return list(r.events)
        await asyncio.sleep(0.2)


def session_scope(env: dict, session: str) -> common_pb2.Scope:
    return T.Scope(kind=T.SCOPE_KIND_SESSION, org_id=env["org"], project_id=env["project"],
                   session_id=session)


async def set_limit(budget, env: dict, session: str, action: int, limit: int,  # type: ignore[no-untyped-def]
                    metric: int = T.LIMIT_METRIC_COST) -> None:
    await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
        scope=session_scope(env, session), metric=metric, period=T.LIMIT_PERIOD_TOTAL,
        limit=limit, action=action, name="test")), timeout=10)


async def settled_limit(budget, env: dict, session: str) -> common_pb2.LimitState:  # type: ignore[no-untyped-def]
    """The session's one limit once its reservation is settled (off the path: ~5 s max)."""
    for _ in range(50):
        st = await budget.Status(budget_pb2.StatusRequest(scope=session_scope(env, session)))
        [lim] = st.limits
        if lim.reserved == 0 and lim.used:
            break
        await asyncio.sleep(0.1)
    return lim


async def test_forced_model_failing_is_unavailable_and_recorded(router, router_env, sim_url, ledger) -> None:  # type: ignore[no-untyped-def]
    req = request("fail " + uuid.uuid4().hex, forced_model="sim/gpt-4.1-nano")
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/faults", json={"model": "gpt-4.1-nano", "fault": "503", "count": -1})
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.Complete(req, metadata=AUTH)
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert detail_of(info.value).reason == T.ERROR_REASON_PROVIDER_ERROR
    [e] = await session_events(ledger, router_env["org"], req.session_id)
    assert e.status == events_pb2.USAGE_STATUS_ERROR and e.provider_attempts == 2
    assert e.cost_nusd == 0
    # Reserved, then released: the event names no reservation, so the budget's rebuild and
    # the ledger's reconciliation do not count a request the budget gave back.
    assert e.HasField("budget_reserved_at") and e.budget_reservation_id == ""


async def test_deny_is_resource_exhausted_with_details_and_recorded(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    req = request("deny me", forced_model="sim/gpt-4o")
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, 1000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(req, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    d = detail_of(info.value)
    assert d.reason == T.ERROR_REASON_BUDGET_EXCEEDED and d.limit == 1000
    assert d.remaining == 1000 and d.unit == "cost" and d.budget_decision == T.BUDGET_DECISION_DENY
    assert d.limits and d.request_id
    [e] = await session_events(ledger, router_env["org"], req.session_id)
    assert e.status == events_pb2.USAGE_STATUS_DENIED and e.cost_nusd == 0
    assert e.budget_decision == T.BUDGET_DECISION_DENY and e.budget_limit_id


async def test_degrade_picks_the_cheaper_model(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    req = request("degrade me " + uuid.uuid4().hex, preferred_model="sim/gpt-4o")
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DEGRADE, 1000)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert c.served_model == "sim/gpt-4o-mini" and c.degraded_from_model == "sim/gpt-4o"
    assert c.budget.decision == T.BUDGET_DECISION_DEGRADE
    e = await event_of(ledger, c.event_id)
    assert e.degraded_from_model == "sim/gpt-4o" and e.served_model == "sim/gpt-4o-mini"
    assert e.cost_nusd == c.usage.input_tokens * 150 + c.usage.output_tokens * 600


async def test_degrade_not_allowed_is_refused(router, router_env, budget) -> None:  # type: ignore[no-untyped-def]
    req = request("no degrade", forced_model="sim/gpt-4o")
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DEGRADE, 1000)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(req, metadata=AUTH)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert detail_of(info.value).reason == T.ERROR_REASON_DEGRADE_NOT_ALLOWED


async def test_compression_runs_when_asked_and_is_recorded(router, ledger) -> None:  # type: ignore[no-untyped-def]
    turns = [msg(T.ROLE_SYSTEM, "You are a coding assistant.")]
    for i in range(30):
        turns.append(msg(T.ROLE_USER, f"Question {i}: " + "please look at this code again " * 12))
        turns.append(msg(T.ROLE_ASSISTANT, f"Answer {i}: " + "the code looks fine to me " * 12))
    turns.append(msg(T.ROLE_USER, "Now summarise what we did."))
    req = router_pb2.CompleteRequest(
        session_id="s-" + uuid.uuid4().hex[:8], messages=turns,
        sampling=T.SamplingParams(max_output_tokens=32),
        preferences=router_pb2.RoutingPreferences(
            forced_model="sim/gpt-4o-mini",
            compression=router_pb2.CompressionPolicy(mode=router_pb2.COMPRESSION_MODE_ALWAYS,
                                                     target_tokens=600)))
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert c.compression.original_tokens > 2000
    assert c.compression.compressed_tokens <= 600
    assert c.usage.input_tokens <= 600  # what the simulator counted on the compressed prompt
    e = await event_of(ledger, c.event_id)
    assert e.compression_applied and e.compression_saved_tokens == c.compression.saved_tokens


async def test_auto_compression_only_past_the_threshold(router) -> None:  # type: ignore[no-untyped-def]
    req = request("short prompt", forced_model="sim/gpt-4o-mini")
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert not c.HasField("compression")


async def paced(budget, router_env: dict, sim_url: str, text: str, **pace: int  # type: ignore[no-untyped-def]
                ) -> router_pb2.CompleteRequest:
    """A request to sim/gpt-4.1-mini (2,000 output tokens at most) on a session with a
    limit far away, the simulator pacing that model as `pace` says (until sim/faults is
    cleared)."""
    req = request(text + " " + uuid.uuid4().hex, forced_model="sim/gpt-4.1-mini")
    req.sampling.max_output_tokens = 2000
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_ALLOW, 10**15)
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/pace", json={"model": "gpt-4.1-mini", **pace})
    return req


async def unpaced(sim_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        await s.delete(sim_url + "/sim/faults")


async def cancelled(ledger, budget, router_env: dict,  # type: ignore[no-untyped-def]
                    req: router_pb2.CompleteRequest) -> events_pb2.UsageEvent:
    """The request's one event, CANCELLED, once its reservation is settled with what the
    event charges (nothing held)."""
    [e] = await session_events(ledger, router_env["org"], req.session_id)
    assert e.status == events_pb2.USAGE_STATUS_CANCELLED
    assert e.finish_reason == T.FINISH_REASON_CANCELLED
    lim = await settled_limit(budget, router_env, req.session_id)
    assert lim.reserved == 0 and lim.used == e.cost_nusd
    return e


async def test_cancelled_stream_releases_the_rest(router, router_env, sim_url, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    req = await paced(budget, router_env, sim_url, "cancel me", tps=20)
    try:
        call = router.StreamComplete(router_pb2.StreamCompleteRequest(request=req), metadata=AUTH)
        seen = 0
        async for ev in call:
            if ev.WhichOneof("event") == "delta":
                seen += 1
                if seen == 3:
                    call.cancel()
                    break
    finally:
        await unpaced(sim_url)
    e = await cancelled(ledger, budget, router_env, req)
    assert 3 <= e.usage.output_tokens < 40 and e.usage_source == T.USAGE_SOURCE_COUNTED
    assert e.cost_nusd == e.usage.input_tokens * 400 + e.usage.output_tokens * 1600


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_a_call_its_caller_gave_up_on_before_any_output_charges_the_prompt_and_releases_the_rest(router, router_env, sim_url, budget, ledger, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """The caller's deadline passes before the provider's answer (unary) or first chunk
    (stream): one CANCELLED event, the prompt charged (the provider had it), the rest of
    the reservation given back at once (a stream's was held for its TTL, unrecorded)."""
    req = await paced(budget, router_env, sim_url, "give up",
                      **({"ttft_ms": 30_000} if stream else {"latency_ms": 30_000}))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            if stream:
                async for _ in router.StreamComplete(
                        router_pb2.StreamCompleteRequest(request=req), metadata=AUTH, timeout=5):
                    pass
            else:
                await router.Complete(req, metadata=AUTH, timeout=5)
    finally:
        await unpaced(sim_url)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    e = await cancelled(ledger, budget, router_env, req)
    assert e.stream == stream
    # The prompt reached the provider: charged; the output is unknown: not charged in full.
    assert e.usage.input_tokens > 0 and e.usage.output_tokens == 0
    assert e.cost_nusd == e.usage.input_tokens * 400


async def test_select_model_explains(router) -> None:  # type: ignore[no-untyped-def]
    req = request("Design the architecture for a distributed rate limiter.")
    r = await router.SelectModel(router_pb2.SelectModelRequest(request=req), metadata=AUTH)
    assert r.model and r.selection.task_type == T.TASK_TYPE_REASONING
    assert r.selection.complexity == T.COMPLEXITY_HIGH
    assert r.candidates[0].model == r.model and r.candidates[0].eligible
    assert all(c.estimated_cost_nusd > 0 for c in r.candidates)
    assert r.input_tokens > 0 and {x.name for x in r.candidates[0].components} >= {"price", "complexity"}
    easy = await router.SelectModel(router_pb2.SelectModelRequest(request=request("Hi! thanks")),
                                    metadata=AUTH)
    assert easy.model != r.model  # a greeting does not go to the premium choice


async def test_list_models(router) -> None:  # type: ignore[no-untyped-def]
    r = await router.ListModels(router_pb2.ListModelsRequest(), metadata=AUTH)
    names = {m.model.name for m in r.models}
    assert {"sim/gpt-4o-mini", "sim/gpt-4o"} <= names and all(m.available for m in r.models)
    full = await router.ListModels(router_pb2.ListModelsRequest(include_unavailable=True),
                                   metadata=AUTH)
    gone = [m for m in full.models if not m.available]
    assert gone and "provider" in gone[0].unavailable_reason


async def test_near_the_end_of_a_budget_the_default_output_is_clamped_to_fit(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    # gpt-4o: 2,500 nUSD per input token, 10,000 per output token; its default max output
    # (4,096 tokens, ~41M nUSD) does not fit 10.5M nUSD, about 1,000 output tokens do.
    req = request("clamp me " + uuid.uuid4().hex, forced_model="sim/gpt-4o")
    req.sampling.ClearField("max_output_tokens")
    limit = 10_500_000
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, limit)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert c.budget.decision == T.BUDGET_DECISION_ALLOW and c.cost_nusd <= limit
    e = await event_of(ledger, c.event_id)
    assert e.status == events_pb2.USAGE_STATUS_OK and e.cost_nusd == c.cost_nusd

    # The caller's own max output is never lowered: the same budget refuses it.
    explicit = request("clamp me not " + uuid.uuid4().hex, forced_model="sim/gpt-4o")
    explicit.sampling.max_output_tokens = 4096
    await set_limit(budget, router_env, explicit.session_id, T.LIMIT_ACTION_DENY, limit)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(explicit, metadata=AUTH)
    assert detail_of(info.value).reason == T.ERROR_REASON_BUDGET_EXCEEDED


async def one_request_a_window(budget, env: dict, session: str, seconds: int) -> None:  # type: ignore[no-untyped-def]
    """A QUEUE limit on the session: one request per rolling window of `seconds`."""
    await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
        scope=session_scope(env, session), metric=T.LIMIT_METRIC_REQUESTS,
        period=T.LIMIT_PERIOD_ROLLING, rolling_window_seconds=seconds, limit=1,
        action=T.LIMIT_ACTION_QUEUE, name="one a window")), timeout=10)


async def test_queue_waits_for_a_rolling_window_then_serves_or_times_out(router, router_env, budget) -> None:  # type: ignore[no-untyped-def]
    first = request("queue one " + uuid.uuid4().hex)
    session = first.session_id
    await one_request_a_window(budget, router_env, session, 2)
    await router.Complete(first, metadata=AUTH)

    waited = request("queue two " + uuid.uuid4().hex, max_queue_wait_ms=5000)
    waited.session_id = session
    c = (await router.Complete(waited, metadata=AUTH, timeout=15)).completion
    assert c.queue_wait_ms > 0 and c.budget.decision == T.BUDGET_DECISION_ALLOW

    impatient = request("queue three " + uuid.uuid4().hex, max_queue_wait_ms=100)
    impatient.session_id = session
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(impatient, metadata=AUTH, timeout=15)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert detail_of(info.value).reason == T.ERROR_REASON_BUDGET_QUEUE_TIMEOUT


async def sim_requests(sim_url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(sim_url + "/sim/stats") as r:
        return int((await r.json())["requests"])


async def test_a_request_whose_deadline_passes_while_queued_is_given_up_unsent(router, router_env, sim_url, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    """Queued for budget capacity due after the caller's deadline: the router gives up at
    once with its own DEADLINE_EXCEEDED (not the caller's timer), sends nothing to the
    provider, holds and charges nothing, and records the request."""
    first = request("deadline one " + uuid.uuid4().hex)
    session = first.session_id
    await one_request_a_window(budget, router_env, session, 60)
    answered = (await router.Complete(first, metadata=AUTH, timeout=15)).completion
    sent = await sim_requests(sim_url)

    queued = request("deadline two " + uuid.uuid4().hex, max_queue_wait_ms=120_000)
    queued.session_id = session
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await router.Complete(queued, metadata=AUTH, timeout=3)
    took = asyncio.get_running_loop().time() - t0
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "caller's deadline" in (info.value.details() or ""), info.value.details()
    assert detail_of(info.value).reason == T.ERROR_REASON_BUDGET_QUEUE_TIMEOUT
    assert took < 3
    assert await sim_requests(sim_url) == sent
    events = await session_events(ledger, router_env["org"], session, n=2)
    [e] = [e for e in events if e.event_id != answered.event_id]
    assert e.status == events_pb2.USAGE_STATUS_THROTTLED and e.cost_nusd == 0
    assert e.error_code == "DEADLINE_EXCEEDED"
    st = await budget.Status(budget_pb2.StatusRequest(scope=session_scope(router_env, session)))
    assert [(lim.used, lim.reserved) for lim in st.limits] == [(1, 0)]



# -- the speculative reserve (an upper bound of the prompt reserved while it is counted) --

async def speculated(env: dict) -> dict[str, float]:
    """The router's speculative reserves so far, by outcome (its Prometheus counter)."""
    port = env["env"]["TOKENRT_ROUTER_METRICS_PORT"]
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^tokenrt_router_speculative_reserves_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}


async def outcomes_since(env: dict, before: dict[str, float]) -> dict[str, float]:
    now = await speculated(env)
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}


async def test_a_speculative_reservation_with_the_same_plan_is_kept_and_committed(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    req = request("Explain what a Python tuple is. " + uuid.uuid4().hex, forced_model="sim/gpt-4o")
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, 10**12)
    before = await speculated(router_env)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert await outcomes_since(router_env, before) == {"kept": 1}
    assert c.budget.decision == T.BUDGET_DECISION_ALLOW and c.budget.reservation_id
    lim = await settled_limit(budget, router_env, req.session_id)
    assert lim.reserved == 0 and lim.used == c.cost_nusd  # one reservation, committed
    e = await event_of(ledger, c.event_id)
    assert e.budget_reservation_id == c.budget.reservation_id and e.cost_nusd == c.cost_nusd


async def test_a_plan_the_exact_count_changes_is_released_and_reserved_again(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    # ~20 KB of code, ~6,000 tokens, on a 16k-token model: the bound (bytes) plans
    # compression, the count does not.
    code = "".join(f"def handler_{i}(request):\n    return request.json()['items'][{i}]\n"
                   for i in range(350))
    req = request("Explain this code " + uuid.uuid4().hex + ":\n" + code,
                  forced_model="sim/gpt-3.5-turbo")
    entry = load_catalog().resolve("sim/gpt-3.5-turbo").entry
    exact = (await router.SelectModel(router_pb2.SelectModelRequest(request=req),
                                      metadata=AUTH)).input_tokens
    assert input_bound(req, entry) > entry.context_window > 2 * exact
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, 10**12)
    before = await speculated(router_env)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert await outcomes_since(router_env, before) == {"re_reserved": 1}
    assert c.budget.decision == T.BUDGET_DECISION_ALLOW and not c.HasField("compression")
    lim = await settled_limit(budget, router_env, req.session_id)
    assert lim.reserved == 0 and lim.used == c.cost_nusd  # the first one charged nothing
    e = await event_of(ledger, c.event_id)
    assert e.budget_reservation_id == c.budget.reservation_id


async def padded_prompt(router, words: int) -> tuple[router_pb2.CompleteRequest, int, int]:  # type: ignore[no-untyped-def]
    """A prompt on sim/gpt-4o whose bound (bytes) is ~3x its tokens, its exact count (the
    router's SelectModel) and its bound."""
    req = request("Explain this: " + uuid.uuid4().hex + " " + "ok " * words,
                  forced_model="sim/gpt-4o")
    exact = (await router.SelectModel(router_pb2.SelectModelRequest(request=req),
                                      metadata=AUTH)).input_tokens
    bound = input_bound(req, load_catalog().resolve("sim/gpt-4o").entry)
    assert bound is not None
    return req, exact, bound


async def test_a_bound_the_budget_refuses_is_reserved_again_with_the_exact_count(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    req, exact, bound = await padded_prompt(router, 200)
    assert bound > exact + 10
    # A token limit the exact estimate fits and the bound does not.
    limit = exact + 64 + (bound - exact) // 2
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, limit,
                    metric=T.LIMIT_METRIC_TOKENS)
    before = await speculated(router_env)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert await outcomes_since(router_env, before) == {"refused": 1}
    assert c.budget.decision == T.BUDGET_DECISION_ALLOW and c.usage.input_tokens == exact
    lim = await settled_limit(budget, router_env, req.session_id)
    assert lim.reserved == 0 and lim.used == c.usage.input_tokens + c.usage.output_tokens
    assert lim.used <= limit


async def test_a_cache_hit_gives_the_speculative_reservation_back(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    text = "Write a limerick about budgets " + uuid.uuid4().hex
    session = "s-" + uuid.uuid4().hex[:8]
    await set_limit(budget, router_env, session, T.LIMIT_ACTION_DENY, 10**12)
    before = await speculated(router_env)
    charged = 0
    for _ in range(50):  # until the first answer's cache store has landed
        req = request(text, forced_model="sim/gpt-4o")
        req.session_id = session
        c = (await router.Complete(req, metadata=AUTH)).completion
        if c.cache.hit:
            break
        charged += c.cost_nusd
        await asyncio.sleep(0.1)
    assert c.cache.hit and c.cost_nusd == 0 and not c.budget.reservation_id
    assert (await outcomes_since(router_env, before)).get("released_hit") == 1
    lim = await settled_limit(budget, router_env, session)
    assert lim.reserved == 0 and lim.used == charged  # the hit's reservation charged nothing


async def test_files_counted_before_are_bounded_by_their_count_so_the_plan_holds(router, router_env) -> None:  # type: ignore[no-untyped-def]
    """An IDE's requests: the same files, a new question, on a 16k-token model. The first
    bound (the files' bytes, over the window) plans compression, its count (~6,000 tokens)
    does not: reserved again. The next request bounds the files by their learned counts,
    plans as its count does and keeps its speculative reservation."""
    tag = uuid.uuid4().hex
    files = [msg(T.ROLE_USER, f"# file {f} {tag}.py\n" + "".join(
        f"def handler_{f}_{i}(request):\n    return request.json()['items'][{i}]\n"
        for i in range(70))) for f in range(5)]

    def ide(question: str) -> router_pb2.CompleteRequest:
        return router_pb2.CompleteRequest(
            session_id="s-" + tag[:8],
            messages=[msg(T.ROLE_SYSTEM, "You are a coding assistant."), *files,
                      msg(T.ROLE_USER, question)],
            sampling=T.SamplingParams(max_output_tokens=64),
            preferences=router_pb2.RoutingPreferences(forced_model="sim/gpt-3.5-turbo"))

    first = ide("Explain what handler_0_3 returns.")
    entry = load_catalog().resolve("sim/gpt-3.5-turbo").entry
    exact = (await router.SelectModel(router_pb2.SelectModelRequest(request=first),
                                      metadata=AUTH)).input_tokens
    assert input_bound(first, entry) > entry.context_window > 2 * exact
    before = await speculated(router_env)
    await router.Complete(first, metadata=AUTH)
    assert await outcomes_since(router_env, before) == {"re_reserved": 1}
    before = await speculated(router_env)
    c = (await router.Complete(ide("Explain what handler_1_4 returns."), metadata=AUTH)).completion
    assert await outcomes_since(router_env, before) == {"kept": 1}
    assert not c.cache.hit and c.budget.reservation_id and not c.HasField("compression")


async def test_a_bound_past_a_warning_level_is_reserved_again_so_the_answer_says_the_exact_level(router, router_env, budget, ledger) -> None:  # type: ignore[no-untyped-def]
    # The bound (bytes) of this prompt is ~3x its tokens: held, it would pass the limit's
    # warning level (80 %) although the request itself stays far below it.
    req, exact, bound = await padded_prompt(router, 600)
    limit = (bound + 64) * 10 // 9  # the bound's estimate is at 90 % of it
    assert exact + 64 < limit * 7 // 10
    await set_limit(budget, router_env, req.session_id, T.LIMIT_ACTION_DENY, limit,
                    metric=T.LIMIT_METRIC_TOKENS)
    before = await speculated(router_env)
    c = (await router.Complete(req, metadata=AUTH)).completion
    assert await outcomes_since(router_env, before) == {"near_limit": 1}
    assert c.budget.decision == T.BUDGET_DECISION_ALLOW
    assert not c.budget.warnings  # (the bound's level was WARNING)
    lim = await settled_limit(budget, router_env, req.session_id)
    assert lim.reserved == 0 and lim.used == c.usage.input_tokens + c.usage.output_tokens
