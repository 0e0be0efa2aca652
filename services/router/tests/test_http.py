"""The OpenAI-compatible HTTP endpoint, driven by the official `openai` client and raw
HTTP, on a real router process (keys from its key store) over the session stack."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import grpc
import openai
import pytest

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    common_pb2,
    events_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
)
from tokenrt_router.http_api import read_timeout

from .conftest import RouterProc, assert_no_secrets, create_key

T = common_pb2


def new_org() -> str:
    return "h2-" + uuid.uuid4().hex[:10]


def client(r: RouterProc, key: str, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=r.http + "/v1", api_key=key, max_retries=0, timeout=60,
                              **kw)


@pytest.fixture
async def ledger(stack) -> ledger_pb2_grpc.LedgerServiceStub:  # type: ignore[no-untyped-def]
    ch = grpc.aio.insecure_channel(stack.settings.endpoint("ledger").address)
    yield ledger_pb2_grpc.LedgerServiceStub(ch)
    await ch.close()


async def event_for(ledger, org: str, request_id: str, within: float = 20) -> events_pb2.UsageEvent:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await ledger.ListEvents(ledger_pb2.ListEventsRequest(
            filter=ledger_pb2.UsageFilter(org_id=org), page_size=100), timeout=5)
        for e in r.events:
            if e.request_id == request_id:
                return e
        assert asyncio.get_running_loop().time() < deadline, f"no event for {request_id}"
        await asyncio.sleep(0.25)


async def http(r: RouterProc, method: str, path: str, key: str | None = None,
               body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.request(
            method, r.http + path, headers=headers,
            data=raw if raw is not None else (json.dumps(body) if body is not None else None)
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def usage(r: RouterProc, key: str, query: str = "") -> tuple[int, Any]:
    status, _, body = await http(r, "GET", "/v1/usage" + query, key)
    return status, body


async def usage_requests(r: RouterProc, key: str, want: int, within: float = 20) -> dict[str, Any]:
    """The key's tenant's totals, once the ledger has counted `want` requests."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status, body = await usage(r, key)
        assert status == 200, body
        if body["total"]["requests"] >= want or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.25)


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim/gpt-4o-mini", "max_tokens": 40, "temperature": 0,
            "messages": [{"role": "system", "content": "You are a coding assistant."},
                         {"role": "user", "content": text}], **extra}


async def test_openai_client_streams_usage_lands_under_the_key_and_others_cannot_read_it(keys_router, ledger) -> None:  # type: ignore[no-untyped-def]
    org_a, org_b = new_org(), new_org()
    a = await create_key(keys_router, org_a)
    b = await create_key(keys_router, org_b)
    stream = await client(keys_router, a.secret).chat.completions.create(
        model="sim/gpt-4o-mini", max_tokens=40, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Explain Python generators " + uuid.uuid4().hex}])
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == "sim/gpt-4o-mini"
               for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "simulator" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices
                and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert 0 < last.usage.completion_tokens <= 40 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens

    e = await event_for(ledger, org_a, chunks[0].id.removeprefix("chatcmpl-"))
    assert (e.org_id, e.project_id, e.api_key_id) == (org_a, "web", a.api_key.api_key_id)
    assert e.stream and e.status == events_pb2.USAGE_STATUS_OK
    assert e.usage.input_tokens == last.usage.prompt_tokens
    assert e.usage.output_tokens == last.usage.completion_tokens
    # gpt-4o-mini: 150 / 600 nusd per input / output token.
    assert e.cost_nusd == e.usage.input_tokens * 150 + e.usage.output_tokens * 600

    mine = await usage_requests(keys_router, a.secret, 1)
    assert mine["org_id"] == org_a and mine["total"]["requests"] == 1
    assert mine["total"]["cost_nusd"] == e.cost_nusd
    theirs = await usage_requests(keys_router, b.secret, 1, within=1)
    assert theirs["org_id"] == org_b and theirs["total"]["requests"] == 0
    assert theirs["total"]["cost_nusd"] == 0
    status, body = await usage(keys_router, b.secret, f"?org_id={org_a}")
    assert status == 403 and body["error"]["type"] == "permission_error"
    assert body["error"]["param"] == "org_id"
    status, body = await usage(keys_router, b.secret, "?project_id=other")
    assert status == 403


async def test_cache_entries_never_cross_tenants(keys_router) -> None:  # type: ignore[no-untyped-def]
    org = new_org()
    a = await create_key(keys_router, org)
    sibling = await create_key(keys_router, org, project="other")  # same org, other project
    stranger = await create_key(keys_router, new_org())
    body = chat("Write a haiku about caches " + uuid.uuid4().hex)
    status, first_h, first = await http(keys_router, "POST", "/v1/chat/completions", a.secret, body)
    assert status == 200 and first_h["x-tokenrt-cache"] == "miss"
    for _ in range(50):  # the store is coalesced off the request's path
        status, again_h, again = await http(keys_router, "POST", "/v1/chat/completions",
                                            a.secret, body)
        if again_h["x-tokenrt-cache"] == "hit":
            break
        await asyncio.sleep(0.1)
    assert again_h["x-tokenrt-cache"] == "hit" and again_h["x-tokenrt-cost-nusd"] == "0"
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    for other in (sibling, stranger):
        status, h, _ = await http(keys_router, "POST", "/v1/chat/completions", other.secret, body)
        assert status == 200 and h["x-tokenrt-cache"] == "miss" and int(h["x-tokenrt-cost-nusd"]) > 0


async def test_nothing_in_a_request_changes_the_tenant(keys_router, ledger) -> None:  # type: ignore[no-untyped-def]
    org, victim = new_org(), new_org()
    a = await create_key(keys_router, org)
    v = await create_key(keys_router, victim)
    c = client(keys_router, a.secret, organization=victim, project="x",
               default_headers={"x-tokenrt-org": victim, "x-org-id": victim})
    raw = await c.chat.completions.with_raw_response.create(
        model="sim/gpt-4o-mini", max_tokens=16,
        messages=[{"role": "user", "content": "hello " + uuid.uuid4().hex}],
        extra_body={"org_id": victim, "project_id": "x", "tenant": {"org_id": victim},
                    "metadata": {"org_id": victim}})
    done = raw.parse()
    assert done.object == "chat.completion" and done.usage is not None
    assert done.choices[0].message.role == "assistant" and done.choices[0].finish_reason
    e = await event_for(ledger, org, done.id.removeprefix("chatcmpl-"))
    assert (e.org_id, e.project_id) == (org, "web")
    assert e.event_id == raw.headers["x-tokenrt-event-id"]
    assert (await usage_requests(keys_router, v.secret, 1, within=1))["total"]["requests"] == 0
    # A user-bound key cannot speak for another user.
    bound = await create_key(keys_router, org, user="ada")
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client(keys_router, bound.secret).chat.completions.create(
            model="sim/gpt-4o-mini", user="bob", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 403 and info.value.body["param"] == "user"


async def test_error_shapes_401_400_404(keys_router) -> None:  # type: ignore[no-untyped-def]
    key = (await create_key(keys_router, new_org())).secret
    status, _, body = await http(keys_router, "POST", "/v1/chat/completions", None, chat("hi"))
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    status, _, body = await http(keys_router, "POST", "/v1/chat/completions",
                                 "trk_" + uuid.uuid4().hex, chat("hi"))
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        await client(keys_router, "trk_" + uuid.uuid4().hex).models.list()
    cases = [(b"{not json", None),
             (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
             (json.dumps(chat("x", temperature=5)).encode(), "temperature"),
             (json.dumps(chat("x", max_tokens=0)).encode(), "max_tokens"),
             (json.dumps(chat("x", n=2)).encode(), "n"),
             (json.dumps({**chat("x"), "messages": [{"role": "wizard", "content": "x"}]}).encode(),
              "messages[0].role"),
             (json.dumps({**chat("x"), "tools": [{"type": "function", "function": {}}]}).encode(),
              "tools[0].function.name")]
    for raw, param in cases:
        status, _, body = await http(keys_router, "POST", "/v1/chat/completions", key, raw=raw)
        assert status == 400, (param, body)
        assert body["error"]["param"] == param and body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as info:
        await client(keys_router, key).chat.completions.create(
            model="sim/no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and info.value.body["code"] == "model_not_found"
    status, _, body = await http(keys_router, "GET", "/v1/nowhere", key)
    assert status == 404 and "Unknown request URL" in body["error"]["message"]
    models = await client(keys_router, key).models.list()
    assert "sim/gpt-4o-mini" in [m.id for m in models.data]


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


async def test_tool_calls_round_trip_in_json_and_stream(keys_router) -> None:  # type: ignore[no-untyped-def]
    c = client(keys_router, (await create_key(keys_router, new_org())).secret)
    ask = [{"role": "user", "content": "Weather in Paris? " + uuid.uuid4().hex}]
    done = await c.chat.completions.create(model="sim/gpt-4o-mini", messages=ask,
                                           tools=WEATHER, tool_choice="required")
    call = done.choices[0].message.tool_calls[0]
    assert done.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.function.name == "get_weather" and call.id
    json.loads(call.function.arguments)
    stream = await c.chat.completions.create(model="sim/gpt-4o-mini", messages=ask + [
        {"role": "user", "content": "again"}], tools=WEATHER, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    pieces = [t for ch in [x async for x in stream] if ch.choices
              for t in ch.choices[0].delta.tool_calls or []]
    assert pieces[0].id and pieces[0].function.name == "get_weather" and pieces[0].index == 0
    json.loads("".join(p.function.arguments or "" for p in pieces))
    # The tool's answer goes back as a tool message tied to the call.
    follow = await c.chat.completions.create(model="sim/gpt-4o-mini", messages=ask + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "{\"temp_c\": 21}"}],
        tools=WEATHER)
    assert follow.choices[0].message.content


async def test_client_gone_mid_stream_is_metered_as_cancelled(keys_router, ledger, sim_url) -> None:  # type: ignore[no-untyped-def]
    org = new_org()
    key = (await create_key(keys_router, org)).secret
    rid = uuid.uuid4().hex
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/pace", json={"model": "gpt-4.1-mini", "tps": 20})
    try:
        async with aiohttp.ClientSession() as s:
            resp = await s.post(keys_router.http + "/v1/chat/completions", json=chat(
                "Tell me a long story " + uuid.uuid4().hex, model="sim/gpt-4.1-mini",
                max_tokens=200, stream=True), headers={"Authorization": f"Bearer {key}",
                                                       "x-request-id": rid})
            assert resp.status == 200 and resp.headers["x-request-id"] == rid
            seen = 0
            async for line in resp.content:
                seen += b'"content":"' in line and b'"content":""' not in line
                if seen >= 3:
                    break
            resp.close()
        e = await event_for(ledger, org, rid)
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
    assert e.status == events_pb2.USAGE_STATUS_CANCELLED, e
    assert 3 <= e.usage.output_tokens < 200 and e.cost_nusd > 0


async def test_the_sdks_read_timeout_is_the_callers_deadline(keys_router, ledger) -> None:  # type: ignore[no-untyped-def]
    """HTTP carries no deadline; the OpenAI SDKs send `x-stainless-read-timeout`. A request
    whose caller stops reading before the router gets to it is given up unsent (504, a
    CANCELLED event charging nothing); a caller that waits long enough is answered."""
    org = new_org()
    key = (await create_key(keys_router, org)).secret
    rid = uuid.uuid4().hex
    async with aiohttp.ClientSession() as s, s.post(
            keys_router.http + "/v1/chat/completions", json=chat("late " + uuid.uuid4().hex),
            headers={"Authorization": f"Bearer {key}", "x-request-id": rid,
                     "x-stainless-read-timeout": "0.000001"}) as resp:
        status, body = resp.status, await resp.json()
    assert status == 504 and "deadline" in body["error"]["message"], body
    e = await event_for(ledger, org, rid)
    assert e.status == events_pb2.USAGE_STATUS_CANCELLED and e.cost_nusd == 0, e
    assert e.usage.input_tokens == 0 and e.usage.output_tokens == 0, e
    async with aiohttp.ClientSession() as s, s.post(
            keys_router.http + "/v1/chat/completions", json=chat("in time " + uuid.uuid4().hex),
            headers={"Authorization": f"Bearer {key}", "x-stainless-read-timeout": "600"}
    ) as resp:
        assert resp.status == 200, await resp.text()


def test_only_a_positive_read_timeout_counts() -> None:
    assert read_timeout({"x-stainless-read-timeout": "600.0"}) == 600.0
    for junk in ("", "0", "-1", "nan", "inf", "soon"):
        assert read_timeout({"x-stainless-read-timeout": junk}) is None
    assert read_timeout({}) is None


async def test_absurd_bodies_are_400_not_500(keys_router) -> None:  # type: ignore[no-untyped-def]
    key = (await create_key(keys_router, new_org())).secret
    for raw in (b"[" * 100_000, b"\xff\xfe{}", b"null", b'{"model": "x", "messages": "hi"}',
                b'{"model": "sim/gpt-4o", "messages": [{"role": "user", "content": "\\ud800"}]}',
                json.dumps(chat("x", stream_options={"include_usage": True})).encode()):
        status, _, body = await http(keys_router, "POST", "/v1/chat/completions", key, raw=raw)
        assert status == 400 and body["error"]["type"] == "invalid_request_error", (raw[:20], body)


@pytest.fixture
async def budget(stack) -> budget_pb2_grpc.BudgetServiceStub:  # type: ignore[no-untyped-def]
    ch = grpc.aio.insecure_channel(stack.settings.endpoint("budget").address)
    yield budget_pb2_grpc.BudgetServiceStub(ch)
    await ch.close()


@pytest.mark.parametrize("action,kind,code", [
    (T.LIMIT_ACTION_DENY, "insufficient_quota", "budget_exceeded"),
    (T.LIMIT_ACTION_THROTTLE, "requests", "rate_limit_exceeded")])
async def test_budget_refusals_are_429_with_retry_after(keys_router, budget, action, kind, code) -> None:  # type: ignore[no-untyped-def]
    org = new_org()
    key = (await create_key(keys_router, org)).secret
    await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
        scope=T.Scope(kind=T.SCOPE_KIND_ORG, org_id=org), metric=T.LIMIT_METRIC_COST,
        period=T.LIMIT_PERIOD_DAY, limit=1, action=action, name="h2")), timeout=10)
    status, headers, body = await http(keys_router, "POST", "/v1/chat/completions", key,
                                       chat("over budget " + uuid.uuid4().hex))
    assert status == 429, body
    assert body["error"]["type"] == kind and body["error"]["code"] == code
    assert int(headers["Retry-After"]) >= 1
    with pytest.raises(openai.RateLimitError):
        await client(keys_router, key).chat.completions.create(
            model="sim/gpt-4o-mini", messages=[{"role": "user", "content": "again"}], stream=True)
    # The key sees that limit on its own budget view; another tenant does not.
    status, _, mine = await http(keys_router, "GET", "/v1/budget", key)
    assert status == 200 and [(x["scope"], x["org_id"], x["limit"]) for x in mine["limits"]] == \
        [("org", org, 1)]
    other = (await create_key(keys_router, new_org())).secret
    status, _, theirs = await http(keys_router, "GET", "/v1/budget", other)
    assert status == 200 and theirs["limits"] == []


async def test_a_limit_on_one_key_binds_that_key_only(keys_router, budget) -> None:  # type: ignore[no-untyped-def]
    org = new_org()
    capped, free = await create_key(keys_router, org), await create_key(keys_router, org)
    await budget.SetLimit(budget_pb2.SetLimitRequest(limit=budget_pb2.Limit(
        scope=T.Scope(kind=T.SCOPE_KIND_API_KEY, org_id=org,
                      api_key_id=capped.api_key.api_key_id),
        metric=T.LIMIT_METRIC_COST, period=T.LIMIT_PERIOD_DAY, limit=1,
        action=T.LIMIT_ACTION_DENY, name="h2-key")), timeout=10)
    body = chat("per key " + uuid.uuid4().hex)
    status, _, refused = await http(keys_router, "POST", "/v1/chat/completions", capped.secret,
                                    body)
    assert status == 429 and refused["error"]["code"] == "budget_exceeded"
    status, _, _ = await http(keys_router, "POST", "/v1/chat/completions", free.secret, body)
    assert status == 200


async def test_provider_failure_is_502_and_a_broken_stream_ends_with_an_error(keys_router, sim_url) -> None:  # type: ignore[no-untyped-def]
    key = (await create_key(keys_router, new_org())).secret
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/faults", json={"model": "gpt-4.1-nano", "fault": "500",
                                                    "count": -1})
    try:
        status, _, body = await http(keys_router, "POST", "/v1/chat/completions", key,
                                     chat("fail " + uuid.uuid4().hex, model="sim/gpt-4.1-nano"))
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
    assert status == 502 and body["error"]["type"] == "server_error", body
    async with aiohttp.ClientSession() as s:  # paced, so the first tokens go out first
        await s.post(sim_url + "/sim/pace", json={"model": "gpt-4.1-nano", "tps": 200})
        await s.post(sim_url + "/sim/faults", json={"model": "gpt-4.1-nano",
                                                    "fault": "malformed", "count": -1})
    try:
        stream = await client(keys_router, key).chat.completions.create(
            model="sim/gpt-4.1-nano", max_tokens=40, stream=True,
            messages=[{"role": "user", "content": "break " + uuid.uuid4().hex}])
        got: list[str] = []
        with pytest.raises(openai.APIError) as info:
            async for c in stream:
                got += [c.choices[0].delta.content or ""] if c.choices else []
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
    assert "stream broke" in str(info.value.message) and "".join(got)  # output came first
    assert info.value.body["type"] == "server_error"


async def test_no_key_in_the_router_log_after_http_calls(keys_router) -> None:  # type: ignore[no-untyped-def]
    wrong = "trk_" + uuid.uuid4().hex
    status, _, _ = await http(keys_router, "GET", "/v1/models", wrong)
    assert status == 401
    await asyncio.sleep(0.2)
    text = assert_no_secrets(keys_router.log)
    assert "router.auth_failed" in text and wrong not in text
