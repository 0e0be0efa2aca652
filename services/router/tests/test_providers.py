"""Provider adapters against the providers' documented wire formats, served by a real HTTP
server on a real port (tests/wire/*): the request body each adapter sends, answers, finish
reasons, tool calls, usage, and the cost in nano-USD computed by hand from the catalog."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt.v1 import common_pb2
from tokenrt_common.settings import load_settings
from tokenrt_pricing import Usage, catalog, cost_of
from tokenrt_router.providers import calls, registry
from tokenrt_router.providers.base import (
    Answer,
    Breaker,
    Delta,
    Failure,
    Provider,
    ProviderError,
    ProviderRequest,
    StreamEnd,
)
from tokenrt_router.providers.deployments import DeploymentError, load_specs

T = common_pb2
WIRE = Path(__file__).parent / "wire"
KEY = "sk-test-9f3b2c-DO-NOT-LEAK"
CATALOG = catalog.load()


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    sse: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds before the answer (JSON) or between events (SSE).
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    body: Any


class Upstream:
    """A real HTTP server: answers each path with its scripted replies in order, records
    every request. Each test works under its own path prefix."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, path: str, *replies: Reply) -> None:
        self.replies.setdefault(path, []).extend(replies)

    def requests(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(Seen(request.path, request.query_string, dict(request.headers),
                              json.loads(raw) if raw else None))
        queue = self.replies.get(request.path)
        if not queue:
            return web.json_response({"error": {"message": f"no reply for {request.path}"}},
                                     status=500)
        r = queue.pop(0)
        if not r.sse:
            await asyncio.sleep(r.delay)
            return web.Response(status=r.status, text=r.body, headers=r.headers,
                                content_type="application/json")
        resp = web.StreamResponse(status=r.status, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", **r.headers})
        await resp.prepare(request)
        for event in r.body.split("\n\n"):
            if event.strip():
                await resp.write((event + "\n\n").encode())
                await asyncio.sleep(r.delay)
        await resp.write_eof()
        return resp


_OPEN: list[registry.Built] = []


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _close_providers() -> AsyncIterator[None]:
    yield
    while _OPEN:
        for p in _OPEN.pop().providers.values():
            await p.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def upstream() -> AsyncIterator[Upstream]:
    u = Upstream()
    await u.start()
    yield u
    await u.stop()


def wire(name: str) -> str:
    return (WIRE / name).read_text()


def json_reply(name: str, status: int = 200, **headers: str) -> Reply:
    return Reply(status, wire(name).replace("{KEY}", KEY), headers=headers)


def sse_reply(name: str) -> Reply:
    return Reply(200, wire(name), sse=True)


def providers(upstream: Upstream, prefix: str, extra: dict[str, str] | None = None,
              env: dict[str, str] | None = None) -> registry.Built:
    settings = load_settings({
        "TOKENRT_PROVIDER_OPENAI_BASE_URL": f"{upstream.url}{prefix}/openai/v1",
        "TOKENRT_PROVIDER_ANTHROPIC_BASE_URL": f"{upstream.url}{prefix}/anthropic/v1",
        "TOKENRT_PROVIDER_GEMINI_BASE_URL": f"{upstream.url}{prefix}/gemini/v1beta",
        **(extra or {})})
    keys = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY}
    built = registry.build(settings, keys if env is None else env)
    _OPEN.append(built)
    return built


def prefix() -> str:
    return "/" + uuid.uuid4().hex[:10]


def msg(role: int, text: str = "", **kw: Any) -> common_pb2.Message:
    m = T.Message(role=role, **kw)
    if text:
        m.content.add(text=text)
    return m


READ_FILE = T.Tool(name="read_file", description="Read a file of the workspace",
                   parameters_json_schema=json.dumps({
                       "type": "object", "properties": {"path": {"type": "string"}},
                       "required": ["path"]}))


def request(model: str, *messages: common_pb2.Message, tools: bool = False,
            sampling: common_pb2.SamplingParams | None = None) -> ProviderRequest:
    return ProviderRequest(model, list(messages) or [msg(T.ROLE_USER, "reverse a list")],
                           [READ_FILE] if tools else [], sampling or T.SamplingParams(),
                           max_output=256)


async def collect(p: Provider, req: ProviderRequest) -> tuple[list[Delta], StreamEnd]:
    deltas: list[Delta] = []
    async for item in p.stream(req, 5.0):
        if isinstance(item, StreamEnd):
            return deltas, item
        deltas.append(item)
    raise AssertionError("no StreamEnd")


def assembled_calls(deltas: list[Delta]) -> dict[int, T.ToolCall]:
    """Tool-call pieces put together as the pipeline does it."""
    out: dict[int, T.ToolCall] = {}
    for d in deltas:
        for tc, i in zip(d.tool_calls, d.tool_indexes, strict=True):
            c = out.setdefault(i, T.ToolCall())
            c.id = c.id or tc.id
            c.name = c.name or tc.name
            c.arguments_json += tc.arguments_json
    return out


def cost(model: str, usage: Usage | None) -> int:
    assert usage is not None
    return cost_of(CATALOG.get(model).price, usage).total_nusd


# -- OpenAI ---------------------------------------------------------------------------


async def test_openai_cached_prompt_is_inside_prompt_tokens(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/openai/v1/chat/completions", json_reply("openai_chat_cached.json"))
    p = providers(upstream, pre).providers["openai"]
    answer = await p.complete(request("gpt-4o", msg(T.ROLE_SYSTEM, "Be brief."),
                                      msg(T.ROLE_USER, "reverse a list"),
                                      sampling=T.SamplingParams(temperature=0.2)), 5.0)
    (seen,) = upstream.requests(pre)
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.body == {"model": "gpt-4o", "max_completion_tokens": 256, "temperature": 0.2,
                         "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "reverse a list"}]}
    assert answer.message.content[0].text.startswith("def reverse")
    assert answer.finish_reason == T.FINISH_REASON_STOP
    assert answer.usage == Usage(input_tokens=2006, cached_input_tokens=1920, output_tokens=300)
    # gpt-4o: 86 uncached x $2.50/M + 1920 cached x $1.25/M + 300 out x $10/M
    #       = 215,000 + 2,400,000 + 3,000,000 nusd
    assert cost("gpt-4o", answer.usage) == 5_615_000


async def test_openai_stream_usage_chunk_has_empty_choices(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/openai/v1/chat/completions", sse_reply("openai_stream_usage.sse"))
    p = providers(upstream, pre).providers["openai"]
    deltas, end = await collect(p, request("gpt-4o-mini"))
    (seen,) = upstream.requests(pre)
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}
    assert "".join(d.text for d in deltas) == "Hello world"
    assert end.finish_reason == T.FINISH_REASON_STOP
    assert end.usage == Usage(input_tokens=1500, cached_input_tokens=1024, output_tokens=40)
    # gpt-4o-mini: 476 x $0.15/M + 1024 x $0.075/M + 40 x $0.60/M = 71,400 + 76,800 + 24,000
    assert cost("gpt-4o-mini", end.usage) == 172_200


async def test_openai_tool_calls_and_reasoning_tokens(upstream: Upstream) -> None:
    pre = prefix()
    path = f"{pre}/openai/v1/chat/completions"
    upstream.script(path, json_reply("openai_chat_tool_calls.json"),
                    sse_reply("openai_stream_tool_calls.sse"))
    p = providers(upstream, pre).providers["openai"]
    req = request("o4-mini", tools=True, sampling=T.SamplingParams(
        tool_choice=T.ToolChoice(mode=T.TOOL_CHOICE_MODE_REQUIRED)))
    answer = await p.complete(req, 5.0)
    body = upstream.requests(pre)[0].body
    assert body["tools"] == [{"type": "function", "function": {
        "name": "read_file", "description": "Read a file of the workspace",
        "parameters": json.loads(READ_FILE.parameters_json_schema)}}]
    assert body["tool_choice"] == "required"
    assert answer.finish_reason == T.FINISH_REASON_TOOL_CALLS
    (call,) = answer.message.tool_calls
    assert (call.id, call.name, json.loads(call.arguments_json)) == (
        "call_abc123", "read_file", {"path": "src/app.py"})
    assert answer.usage == Usage(input_tokens=82, output_tokens=217, reasoning_tokens=192)
    # o4-mini: 82 x $1.10/M + 217 x $4.40/M (reasoning is output) = 90,200 + 954,800
    assert cost("o4-mini", answer.usage) == 1_045_000

    deltas, end = await collect(p, req)
    calls_ = assembled_calls(deltas)
    assert list(calls_) == [0]
    assert calls_[0].id == "call_DdmO9pD3xa9XTPNJ32zg2hcA" and calls_[0].name == "read_file"
    assert json.loads(calls_[0].arguments_json) == {"path": "a.py"}
    assert end.finish_reason == T.FINISH_REASON_TOOL_CALLS
    assert end.usage == Usage(input_tokens=90, output_tokens=18)


async def test_openai_compatible_deepseek_and_openrouter_cache_fields() -> None:
    from tokenrt_router.providers.openai_compat import usage
    u = usage({"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 768,
               "prompt_cache_miss_tokens": 232})
    assert u == Usage(input_tokens=1000, cached_input_tokens=768, output_tokens=10)
    # deepseek-chat: 232 x $0.28/M + 768 x $0.028/M + 10 x $0.42/M = 64,960 + 21,504 + 4,200
    assert cost("deepseek-chat", u) == 90_664
    # OpenRouter's documented usage: cache writes are inside prompt_tokens too
    u = usage({"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
               "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100,
                                         "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0}, "cost": 0.95})
    assert u == Usage(input_tokens=194, cache_write_input_tokens=100, output_tokens=2)
    # a Claude model through OpenRouter: 94 x $3/M + 100 x $3.75/M + 2 x $15/M
    assert cost("claude-sonnet-4-5", u) == 282_000 + 375_000 + 30_000


# -- Anthropic ------------------------------------------------------------------------


TOOL_TURN = [
    msg(T.ROLE_SYSTEM, "You are a coding assistant."),
    msg(T.ROLE_USER, "What does src/app.py do?"),
    msg(T.ROLE_ASSISTANT, "Reading it.", tool_calls=[T.ToolCall(
        id="toolu_01", name="read_file", arguments_json='{"path": "src/app.py"}')]),
    msg(T.ROLE_TOOL, "print('hi')", tool_call_id="toolu_01"),
    msg(T.ROLE_USER, "And now?"),
]


async def test_anthropic_request_tools_and_cache_reads_and_writes(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/anthropic/v1/messages", json_reply("anthropic_message_tool_use.json"))
    p = providers(upstream, pre).providers["anthropic"]
    answer = await p.complete(request("claude-sonnet-4-5", *TOOL_TURN, tools=True, sampling=T.SamplingParams(
        stop_sequences=["END"], tool_choice=T.ToolChoice(mode=T.TOOL_CHOICE_MODE_AUTO))), 5.0)
    (seen,) = upstream.requests(pre)
    assert seen.headers["x-api-key"] == KEY and seen.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-sonnet-4-5", "max_tokens": 256,
        "system": "You are a coding assistant.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What does src/app.py do?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_01", "name": "read_file",
                 "input": {"path": "src/app.py"}}]},
            # the tool result and the next user turn merge into one user turn
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "print('hi')"},
                {"type": "text", "text": "And now?"}]}],
        "tools": [{"name": "read_file", "description": "Read a file of the workspace",
                   "input_schema": json.loads(READ_FILE.parameters_json_schema)}],
        "tool_choice": {"type": "auto"}, "stop_sequences": ["END"]}
    assert answer.message.content[0].text == "I'll read the file first."
    (call,) = answer.message.tool_calls
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.name == "read_file"
    assert json.loads(call.arguments_json) == {"path": "src/app.py"}
    assert answer.finish_reason == T.FINISH_REASON_TOOL_CALLS
    # input_tokens (21) excludes the cache: the total is 21 + 1500 written + 3000 read
    assert answer.usage == Usage(input_tokens=4521, cached_input_tokens=3000,
                                 cache_write_input_tokens=1500, output_tokens=95)
    # claude-sonnet-4-5: 21 x $3/M + 1500 x $3.75/M + 3000 x $0.30/M + 95 x $15/M
    #                  = 63,000 + 5,625,000 + 900,000 + 1,425,000 nusd
    assert cost("claude-sonnet-4-5", answer.usage) == 8_013_000


async def test_anthropic_stream_events(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/anthropic/v1/messages", sse_reply("anthropic_stream.sse"))
    p = providers(upstream, pre).providers["anthropic"]
    deltas, end = await collect(p, request("claude-sonnet-4-5", tools=True))
    assert upstream.requests(pre)[0].body["stream"] is True
    assert "".join(d.text for d in deltas) == "Okay, let me check the file."
    calls_ = assembled_calls(deltas)
    assert list(calls_) == [0]  # the tool call is the first call, whatever its block index
    assert calls_[0].id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls_[0].name == "read_file"
    assert json.loads(calls_[0].arguments_json) == {"path": "src/app.py"}
    assert end.finish_reason == T.FINISH_REASON_TOOL_CALLS
    # message_start's input counts, message_delta's cumulative output count
    assert end.usage == Usage(input_tokens=4012, cached_input_tokens=4000, output_tokens=60)
    # 12 x $3/M + 4000 x $0.30/M + 60 x $15/M = 36,000 + 1,200,000 + 900,000
    assert cost("claude-sonnet-4-5", end.usage) == 2_136_000


async def test_anthropic_error_event_before_output_is_retryable(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/anthropic/v1/messages", sse_reply("anthropic_stream_overloaded.sse"))
    p = providers(upstream, pre).providers["anthropic"]
    with pytest.raises(ProviderError) as err:
        await collect(p, request("claude-sonnet-4-5"))
    assert err.value.kind is Failure.SERVER and err.value.kind.retryable
    assert "overloaded_error: Overloaded" in str(err.value)


# -- Gemini ---------------------------------------------------------------------------


async def test_gemini_function_call_signature_and_thoughts(upstream: Upstream) -> None:
    pre = prefix()
    path = f"{pre}/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    upstream.script(path, json_reply("gemini_generate_function_call.json"),
                    json_reply("gemini_generate_function_call.json"))
    p = providers(upstream, pre).providers["gemini"]
    answer = await p.complete(request("gemini-2.5-flash", *TOOL_TURN, tools=True,
                                      sampling=T.SamplingParams(temperature=0.0, tool_choice=T.ToolChoice(
                                          mode=T.TOOL_CHOICE_MODE_TOOL, tool_name="read_file"))), 5.0)
    (seen,) = upstream.requests(pre)
    assert seen.headers["x-goog-api-key"] == KEY and KEY not in seen.path + seen.query
    assert seen.body == {
        "systemInstruction": {"parts": [{"text": "You are a coding assistant."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What does src/app.py do?"}]},
            {"role": "model", "parts": [{"text": "Reading it."}, {"functionCall": {
                "name": "read_file", "args": {"path": "src/app.py"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "read_file", "response": {"result": "print('hi')"}}},
                {"text": "And now?"}]}],
        "tools": [{"functionDeclarations": [{
            "name": "read_file", "description": "Read a file of the workspace",
            "parametersJsonSchema": json.loads(READ_FILE.parameters_json_schema)}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY",
                                                 "allowedFunctionNames": ["read_file"]}},
        "generationConfig": {"maxOutputTokens": 256, "temperature": 0.0}}
    assert answer.message.content[0].text == "Reading the file."
    (call,) = answer.message.tool_calls
    assert call.name == "read_file" and json.loads(call.arguments_json) == {"path": "src/app.py"}
    assert answer.finish_reason == T.FINISH_REASON_TOOL_CALLS
    # cachedContentTokenCount is inside promptTokenCount; thoughts are billed as output
    assert answer.usage == Usage(input_tokens=5000, cached_input_tokens=4096,
                                 output_tokens=420, reasoning_tokens=300)
    # gemini-2.5-flash: 904 x $0.30/M + 4096 x $0.03/M + 420 x $2.50/M
    #                 = 271,200 + 122,880 + 1,050,000 nusd
    assert cost("gemini-2.5-flash", answer.usage) == 1_444_080

    # The thought signature goes back with the call (Gemini 3 refuses the turn without it).
    follow = request("gemini-2.5-flash", msg(T.ROLE_USER, "q"),
                     msg(T.ROLE_ASSISTANT, tool_calls=[call]),
                     msg(T.ROLE_TOOL, '{"text": "ok"}', tool_call_id=call.id), tools=True)
    await p.complete(follow, 5.0)
    contents = upstream.requests(pre)[1].body["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "read_file",
                                                      "args": {"path": "src/app.py"}},
                                     "thoughtSignature": "CiQB0e2Kb7Jz1xU0dWsGk2hAbC"}]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "read_file",
                                                          "response": {"text": "ok"}}}]


async def test_gemini_stream_sse(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
                    sse_reply("gemini_stream.sse"))
    p = providers(upstream, pre).providers["gemini"]
    deltas, end = await collect(p, request("gemini-2.5-pro"))
    (seen,) = upstream.requests(pre)
    assert seen.query == "alt=sse"
    assert "".join(d.text for d in deltas) == "The function reverses a list."
    assert end.finish_reason == T.FINISH_REASON_STOP
    assert end.usage == Usage(input_tokens=3000, cached_input_tokens=2048, output_tokens=50)
    # gemini-2.5-pro: 952 x $1.25/M + 2048 x $0.125/M + 50 x $10/M
    #               = 1,190,000 + 256,000 + 500,000 nusd
    assert cost("gemini-2.5-pro", end.usage) == 1_946_000


# -- errors, Retry-After, keys --------------------------------------------------------


async def test_errors_are_classified_with_retry_after(upstream: Upstream) -> None:
    pre = prefix()
    built = providers(upstream, pre)
    oa, an, ge = (built.providers[n] for n in ("openai", "anthropic", "gemini"))
    chat, messages = f"{pre}/openai/v1/chat/completions", f"{pre}/anthropic/v1/messages"
    flash = f"{pre}/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    upstream.script(chat, json_reply("openai_429.json", 429, **{"Retry-After": "2"}),
                    json_reply("openai_429.json", 429, **{"retry-after-ms": "1500"}),
                    json_reply("openai_400.json", 400), json_reply("openai_401.json", 401))
    upstream.script(messages, json_reply("anthropic_529.json", 529),
                    json_reply("anthropic_429.json", 429, **{"retry-after": "7"}),
                    json_reply("anthropic_401.json", 401))
    upstream.script(flash, json_reply("gemini_429.json", 429),
                    json_reply("gemini_400_key.json", 400))

    async def fail(p: Provider, model: str) -> ProviderError:
        with pytest.raises(ProviderError) as err:
            await p.complete(request(model), 5.0)
        return err.value

    e = await fail(oa, "gpt-4o")
    assert (e.kind, e.status, e.retry_after) == (Failure.RATE_LIMITED, 429, 2.0)
    assert "Please try again in 2.212s" in str(e)
    assert (await fail(oa, "gpt-4o")).retry_after == 1.5
    e = await fail(oa, "gpt-4o")
    assert e.kind is Failure.BAD_REQUEST and "tool_call_id" in str(e)
    e = await fail(oa, "gpt-4o")
    assert e.kind is Failure.REFUSED and "Incorrect API key provided: [redacted]" in str(e)
    e = await fail(an, "claude-sonnet-4-5")
    assert (e.kind, e.status) == (Failure.SERVER, 529)
    e = await fail(an, "claude-sonnet-4-5")
    assert (e.kind, e.retry_after) == (Failure.RATE_LIMITED, 7.0)
    assert "rate_limit_error" in str(e)
    e = await fail(an, "claude-sonnet-4-5")
    assert e.kind is Failure.REFUSED and KEY not in str(e)
    e = await fail(ge, "gemini-2.5-flash")
    # RESOURCE_EXHAUSTED's RetryInfo.retryDelay ("1s") is the Retry-After
    assert (e.kind, e.retry_after) == (Failure.RATE_LIMITED, 1.0)
    assert "RESOURCE_EXHAUSTED" in str(e)
    e = await fail(ge, "gemini-2.5-flash")
    assert e.kind is Failure.REFUSED  # a bad key is not the caller's bad request
    for p in (oa, an, ge):
        assert KEY not in repr(p)


async def test_keys_from_files_and_env_never_shown(upstream: Upstream, tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic.key"
    key_file.write_text(KEY + "\n")
    pre = prefix()
    upstream.script(f"{pre}/anthropic/v1/messages", json_reply("anthropic_message_tool_use.json"))
    with structlog.testing.capture_logs() as logs:
        settings = load_settings({
            "TOKENRT_PROVIDER_ANTHROPIC_BASE_URL": f"{upstream.url}{pre}/anthropic/v1",
            "TOKENRT_PROVIDER_ANTHROPIC_KEY_FILE": str(key_file),
            "TOKENRT_PROVIDER_GEMINI_KEY_ENV": "MY_GEMINI_KEY"})
        got = registry.for_router(settings, structlog.get_logger(),
                                  env={"OPENAI_API_KEY": " ", "GOOGLE_API_KEY": KEY})
    # the file's key (newline stripped) is sent; a blank variable or one not named
    # (GOOGLE_API_KEY when MY_GEMINI_KEY is the source) configures nothing
    assert set(got) == {"simulator", "anthropic"}
    await got["anthropic"].complete(request("claude-haiku-4-5"), 5.0)
    assert upstream.requests(pre)[0].headers["x-api-key"] == KEY
    skipped = {e["deployment"]: e["reason"] for e in logs
               if e["event"] == "router.deployment_not_configured"}
    assert skipped == {"openai": "$OPENAI_API_KEY not set", "gemini": "$MY_GEMINI_KEY not set"}
    assert KEY not in repr(logs) and KEY not in repr(got)


# -- deployments: fallback, cool-down, retries ----------------------------------------


def deployments_file(tmp_path: Path, upstream: Upstream, pre: str, body: str) -> str:
    path = tmp_path / "deployments.yaml"
    path.write_text(body.replace("{URL}", f"{upstream.url}{pre}"))
    return str(path)


async def test_fallback_across_deployments_and_cool_down(upstream: Upstream,
                                                         tmp_path: Path) -> None:
    pre = prefix()
    file = deployments_file(tmp_path, upstream, pre, """
deployments:
  - name: openai-primary
    protocol: openai
    base_url: "{URL}/primary/v1"
    api_key_env: PRIMARY_KEY
  - name: openai-backup
    protocol: openai
    base_url: "{URL}/backup/v1"
    api_key_env: [BACKUP_KEY]
    headers: {X-Title: tokenrt}
""")
    built = providers(upstream, pre, {"TOKENRT_PROVIDER_DEPLOYMENTS_FILE": file,
                                      "TOKENRT_PROVIDER_COOLDOWN_FAILURES": "2"},
                      env={"PRIMARY_KEY": "k-primary", "BACKUP_KEY": "k-backup"})
    assert built.configured["openai"] == ["openai-primary", "openai-backup"]
    p = built.providers["openai"]
    upstream.script(f"{pre}/primary/v1/chat/completions",
                    Reply(503, '{"error": {"message": "upstream overloaded"}}'),
                    Reply(500, '{"error": {"message": "boom"}}'))
    upstream.script(f"{pre}/backup/v1/chat/completions",
                    *[json_reply("openai_chat_cached.json") for _ in range(3)])
    for _ in range(3):
        answer = await p.complete(request("gpt-4o"), 5.0)
        assert answer.usage is not None and answer.usage.input_tokens == 2006
    primary = upstream.requests(f"{pre}/primary")
    backup = upstream.requests(f"{pre}/backup")
    # two failures in a row cool the primary down: the third request goes to the backup only
    assert len(primary) == 2 and len(backup) == 3
    assert primary[0].headers["Authorization"] == "Bearer k-primary"
    assert backup[0].headers["Authorization"] == "Bearer k-backup"
    assert backup[0].headers["X-Title"] == "tokenrt"


async def test_stream_falls_back_before_first_chunk_and_retry_after_cools(
        upstream: Upstream, tmp_path: Path) -> None:
    pre = prefix()
    file = deployments_file(tmp_path, upstream, pre, """
deployments:
  - {name: claude-a, protocol: anthropic, base_url: "{URL}/a/v1", api_key_env: A_KEY}
  - {name: claude-b, protocol: anthropic, base_url: "{URL}/b/v1", api_key_env: B_KEY}
""")
    built = providers(upstream, pre, {"TOKENRT_PROVIDER_DEPLOYMENTS_FILE": file},
                      env={"A_KEY": "a", "B_KEY": "b", "ANTHROPIC_API_KEY": KEY})
    assert built.configured["anthropic"] == ["anthropic", "claude-a", "claude-b"]
    p = built.providers["anthropic"]
    upstream.script(f"{pre}/anthropic/v1/messages",
                    json_reply("anthropic_429.json", 429, **{"retry-after": "30"}))
    upstream.script(f"{pre}/a/v1/messages", sse_reply("anthropic_stream_overloaded.sse"))
    upstream.script(f"{pre}/b/v1/messages", sse_reply("anthropic_stream.sse"),
                    json_reply("anthropic_message_tool_use.json"))
    deltas, end = await collect(p, request("claude-sonnet-4-5"))
    assert "".join(d.text for d in deltas) == "Okay, let me check the file."
    assert cost("claude-sonnet-4-5", end.usage) == 2_136_000
    # the 429's Retry-After cooled "anthropic" down for 30 s: the next call skips it
    await p.complete(request("claude-sonnet-4-5"), 5.0)
    assert len(upstream.requests(f"{pre}/anthropic")) == 1
    assert len(upstream.requests(f"{pre}/b")) == 2


async def test_calls_wait_the_retry_after_then_succeed(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/gemini/v1beta/models/gemini-2.5-flash:generateContent",
                    json_reply("gemini_429.json", 429, **{"Retry-After": "0.3"}),
                    json_reply("gemini_generate_function_call.json"))
    p = providers(upstream, pre).providers["gemini"]
    entry = CATALOG.get("gemini-2.5-flash")
    route = calls.Route(entry, p, 256)
    outcome = calls.Outcome()
    t0 = time.monotonic()
    answer, _ = await calls.complete([route], lambda r: request("gemini-2.5-flash"),
                                     calls.Policy(5.0, 2, 5.0), Breaker(), outcome)
    assert time.monotonic() - t0 >= 0.3  # the header wins over RetryInfo's 1s, and is honoured
    assert time.monotonic() - t0 < 1.0
    assert outcome.attempts == 2 and isinstance(answer, Answer)
    assert cost("gemini-2.5-flash", answer.usage) == 1_444_080


async def test_bad_request_does_not_cost_the_model_its_health(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/openai/v1/chat/completions",
                    *[json_reply("openai_400.json", 400) for _ in range(6)])
    p = providers(upstream, pre).providers["openai"]
    breaker = Breaker(threshold=5)
    route = calls.Route(CATALOG.get("gpt-4o"), p, 256)
    for _ in range(6):
        with pytest.raises(ProviderError):
            await calls.complete([route], lambda r: request("gpt-4o"),
                                 calls.Policy(5.0, 2, 5.0), breaker, calls.Outcome())
    assert breaker.unhealthy() == {}  # a caller's bad requests never open the circuit
    assert len(upstream.requests(pre)) == 6  # and are not retried


async def test_unserved_model_and_malformed_deployments(upstream: Upstream,
                                                        tmp_path: Path) -> None:
    pre = prefix()
    file = deployments_file(tmp_path, upstream, pre, """
deployments:
  - name: ollama
    protocol: openai_compatible
    base_url: "{URL}/ollama/v1"
    models: ["llama-*", "meta-llama/*"]
    model_ids: {"meta-llama/Llama-3.3-70B-Instruct-Turbo": "llama3.3:70b"}
""")
    built = providers(upstream, pre, {"TOKENRT_PROVIDER_DEPLOYMENTS_FILE": file})
    p = built.providers["openai_compatible"]
    upstream.script(f"{pre}/ollama/v1/chat/completions", json_reply("openai_chat_cached.json"))
    await p.complete(request(CATALOG.resolve("llama-3.3-70b").provider_model_id), 5.0)
    (seen,) = upstream.requests(pre)
    assert seen.body["model"] == "llama3.3:70b" and "max_tokens" in seen.body
    assert "Authorization" not in seen.headers  # a keyless local server
    with pytest.raises(ProviderError) as err:
        await p.complete(request("deepseek-chat"), 5.0)
    assert err.value.kind is Failure.REFUSED and "no openai_compatible deployment" in str(err.value)

    for body, needle in (("deployments: {}", "`deployments` list"),
                         ("deployments: [{name: x, protocol: grpc, base_url: 'http://h'}]",
                          "protocol 'grpc'"),
                         ("deployments: [{name: x, protocol: openai, base_url: ftp://h}]",
                          "base_url"),
                         ("deployments: [{name: x, protocol: openai, base_url: 'http://h', "
                          "api_key: sk-1}]", "unknown field(s) api_key")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(DeploymentError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            load_specs(str(bad))


async def test_closing_a_stream_early_releases_the_connection(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/openai/v1/chat/completions", sse_reply("openai_stream_usage.sse"),
                    json_reply("openai_chat_cached.json"))
    p = providers(upstream, pre).providers["openai"]
    gen = p.stream(request("gpt-4o-mini"), 5.0)
    first = await gen.__anext__()  # type: ignore[attr-defined]
    assert isinstance(first, Delta)
    await gen.aclose()  # type: ignore[attr-defined]
    answer = await asyncio.wait_for(p.complete(request("gpt-4o"), 5.0), 5)
    assert answer.finish_reason == T.FINISH_REASON_STOP


async def test_deployment_timeouts(upstream: Upstream, tmp_path: Path) -> None:
    pre = prefix()
    file = deployments_file(tmp_path, upstream, pre, """
deployments:
  - {name: slow, protocol: gemini, base_url: "{URL}/slow/v1beta", timeout_seconds: 0.3}
""")
    p = providers(upstream, pre, {"TOKENRT_PROVIDER_DEPLOYMENTS_FILE": file},
                  env={}).providers["gemini"]
    base = f"{pre}/slow/v1beta/models/gemini-2.5-pro"
    upstream.script(f"{base}:generateContent",
                    Reply(200, wire("gemini_generate_function_call.json"), delay=2))
    slow_sse = sse_reply("gemini_stream.sse")
    slow_sse.delay = 2  # the first event comes at once, the second after 2 s
    upstream.script(f"{base}:streamGenerateContent", slow_sse)
    t0 = time.monotonic()
    with pytest.raises(ProviderError) as err:
        await p.complete(request("gemini-2.5-pro"), 60.0)
    assert err.value.kind is Failure.TIMEOUT and time.monotonic() - t0 < 1.5
    with pytest.raises(ProviderError) as err:
        await collect(p, request("gemini-2.5-pro"))  # the read timeout is per chunk
    assert err.value.kind is Failure.TIMEOUT and "no chunk within 0.3s" in str(err.value)


# -- usage mapping never breaks the cost math -----------------------------------------

COUNTS = st.one_of(st.integers(-5, 10**7), st.none(), st.text(max_size=3), st.floats(0, 1e6),
                   st.sampled_from([float("nan"), float("inf"), True, [1], {"a": 1}]))


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={k: COUNTS for k in (
    "prompt_tokens", "completion_tokens", "prompt_cache_hit_tokens")}),
       st.fixed_dictionaries({}, optional={k: COUNTS for k in (
           "cached_tokens", "cache_write_tokens")}),
       st.fixed_dictionaries({}, optional={"reasoning_tokens": COUNTS}),
       st.fixed_dictionaries({}, optional={k: COUNTS for k in (
           "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
           "output_tokens", "promptTokenCount", "cachedContentTokenCount",
           "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount")}))
def test_any_reported_usage_maps_to_a_consistent_usage(
        oa: dict[str, Any], pd: dict[str, Any], cd: dict[str, Any], raw: dict[str, Any]) -> None:
    """Whatever a provider reports (odd, missing, inconsistent counts), the mapped Usage
    passes the pricing checks, so a served answer is always costed, never an error."""
    from tokenrt_router.providers import anthropic, gemini, openai_compat
    mapped = [openai_compat.usage({**oa, "prompt_tokens_details": pd,
                                   "completion_tokens_details": cd}),
              anthropic.usage(raw), gemini.usage(raw)]
    for u in mapped:
        assert u is not None
        u.check()
        assert cost_of(CATALOG.get("claude-sonnet-4-5").price, u).total_nusd >= 0
    a = mapped[1]
    assert a is not None
    # Anthropic's total is never below what was read from or written to the cache
    assert a.input_tokens >= a.cached_input_tokens + a.cache_write_input_tokens


async def test_refused_model_falls_back_to_another_provider(upstream: Upstream) -> None:
    pre = prefix()
    upstream.script(f"{pre}/openai/v1/chat/completions", json_reply("openai_401.json", 401))
    upstream.script(f"{pre}/anthropic/v1/messages", json_reply("anthropic_message_tool_use.json"))
    built = providers(upstream, pre)
    routes = [calls.Route(CATALOG.get("gpt-4o"), built.providers["openai"], 256),
              calls.Route(CATALOG.get("claude-sonnet-4-5"), built.providers["anthropic"], 256)]
    outcome = calls.Outcome()
    answer, route = await calls.complete(
        routes, lambda r: request(r.entry.name), calls.Policy(5.0, 2, 5.0), Breaker(), outcome)
    # a refusal is not retried on the same model: one attempt each, then the fallback
    assert route.entry.name == "claude-sonnet-4-5" and outcome.attempts == 2
    assert "refused (401)" in outcome.errors[0] and KEY not in outcome.errors[0]
    assert cost("claude-sonnet-4-5", answer.usage) == 8_013_000
