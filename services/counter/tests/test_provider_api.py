"""Exact counts through the providers' count-tokens APIs: a real counter process calls a
local HTTP server that speaks Anthropic's `POST /v1/messages/count_tokens` and Gemini's
`POST /v1beta/models/{model}:countTokens` as documented (headers, bodies, answers, error
bodies). Checks the bodies sent, the exact answers, the content-addressed cache, the
fall-back to the estimate (4xx, 5xx, slow, bad key) within the timeout, the cool-down,
and that the key never reaches the log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import structlog
from aiohttp import web
from counter_fixtures import start_counter, stop

from tokenrt.v1 import common_pb2 as c
from tokenrt.v1 import counter_pb2 as pb
from tokenrt.v1 import counter_pb2_grpc
from tokenrt_common import provider_wire as wire
from tokenrt_common.settings import load_settings
from tokenrt_counter.provider_api import endpoints
from tokenrt_testkit.procs import ServiceProcess

KEY = "sk-ant-count-7f3e-DO-NOT-LEAK"
GKEY = "AIza-count-51c2-DO-NOT-LEAK"
ESTIMATED = (c.COUNT_SOURCE_HEURISTIC, c.COUNT_SOURCE_CALIBRATED_ESTIMATE)


@dataclass
class Provider:
    """Anthropic and Gemini count-tokens endpoints. `mode[path]` scripts the answers:
    "ok" (the count below), "slow", or an HTTP status with the provider's error body."""

    url: str = ""
    seen: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    mode: dict[str, str] = field(default_factory=dict)
    anthropic_tokens: int = 4321
    gemini_tokens: int = 1234

    def calls(self, kind: str) -> list[Any]:
        return [body for path, _, body in self.seen if kind in path]

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.seen.append((request.path, dict(request.headers), body))
        anthropic = request.path.endswith("/messages/count_tokens")
        mode = self.mode.get("anthropic" if anthropic else "gemini", "ok")
        if mode == "slow":
            await asyncio.sleep(5)
        if mode.isdigit():
            status = int(mode)
            if anthropic:  # Anthropic's error shape; a 401 echoes the key it got
                err = {"type": "error", "error": {"type": "invalid_request_error",
                                                  "message": "invalid x-api-key: "
                                                  + request.headers.get("x-api-key", "")}}
            else:
                err = {"error": {"code": status, "message": "API key not valid. "
                                 + request.headers.get("x-goog-api-key", ""),
                                 "status": "INVALID_ARGUMENT"}}
            return web.json_response(err, status=status)
        if anthropic:
            if request.headers.get("x-api-key") != KEY or not request.headers.get(
                    "anthropic-version"):
                return web.json_response({"type": "error", "error": {
                    "type": "authentication_error", "message": "bad key"}}, status=401)
            return web.json_response({"input_tokens": self.anthropic_tokens})
        if request.headers.get("x-goog-api-key") != GKEY:
            return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                "message": "API_KEY_INVALID"}}, status=400)
        return web.json_response({"totalTokens": self.gemini_tokens,
                                  "promptTokensDetails": [{"modality": "TEXT",
                                                           "tokenCount": self.gemini_tokens}]})


@pytest_asyncio.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", p.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    p.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield p
    await runner.cleanup()


def counter_env(p: Provider, tmp: Path, timeout_ms: int) -> dict[str, str]:
    key_file = tmp / "anthropic.key"
    key_file.write_text(KEY + "\n")
    return {"TOKENRT_COUNTER_PROVIDER_COUNT": "anthropic,gemini",
            "TOKENRT_COUNTER_PROVIDER_COUNT_TIMEOUT_MS": str(timeout_ms),
            "TOKENRT_PROVIDER_ANTHROPIC_BASE_URL": f"{p.url}/anthropic/v1",
            "TOKENRT_PROVIDER_ANTHROPIC_KEY_FILE": str(key_file),
            "TOKENRT_PROVIDER_GEMINI_BASE_URL": f"{p.url}/gemini/v1beta",
            "TOKENRT_PROVIDER_GEMINI_KEY_ENV": "COUNT_TEST_GEMINI_KEY",
            "COUNT_TEST_GEMINI_KEY": GKEY}


@pytest.fixture(scope="module")
def counted(provider: Provider, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("provider-count")
    proc = start_counter(tmp, **counter_env(provider, tmp, 2000))
    yield proc
    stop(proc)
    assert KEY not in proc.log.read_text() and GKEY not in proc.log.read_text()


def chat(question: str) -> list[c.Message]:
    return [c.Message(role=c.ROLE_SYSTEM, content=[c.ContentPart(text="You review code.")]),
            c.Message(role=c.ROLE_USER, content=[c.ContentPart(text="def f(x):\n    return x")]),
            c.Message(role=c.ROLE_USER, content=[c.ContentPart(text=question)])]


TOOL = c.Tool(name="lint", description="Lint a file",
              parameters_json_schema='{"type": "object", "properties": {"path": '
                                     '{"type": "string"}}}')


async def count(proc: ServiceProcess, model: str, question: str,
                tools: list[c.Tool] | None = None) -> pb.CountMessagesResponse:
    async with grpc.aio.insecure_channel(proc.address) as ch:
        stub = counter_pb2_grpc.CounterServiceStub(ch)
        reply: pb.CountMessagesResponse = await stub.CountMessages(pb.CountMessagesRequest(
            model=model, messages=chat(question), tools=tools or []), timeout=10)
        return reply


def assert_parts_sum(reply: pb.CountMessagesResponse) -> None:
    assert reply.input_tokens == (sum(m.tokens for m in reply.messages) + reply.tools_tokens
                                  + reply.overhead_tokens)


async def test_claude_counts_come_from_count_tokens(provider: Provider,
                                                    counted: ServiceProcess) -> None:
    before = len(provider.calls("count_tokens"))
    reply = await count(counted, "claude-sonnet-4-5", "Is f correct?", [TOOL])
    assert reply.input_tokens == provider.anthropic_tokens
    assert reply.accuracy.exactness == c.EXACTNESS_EXACT
    assert reply.accuracy.source == c.COUNT_SOURCE_PROVIDER_API
    assert reply.accuracy.error_bound_tokens == 0
    assert_parts_sum(reply)
    assert reply.features.message_count == 3  # still there for calibration
    sent = provider.calls("count_tokens")[before:]
    # The Messages body without max_tokens: exactly what the router would send.
    assert sent == [wire.anthropic_prompt("claude-sonnet-4-5", chat("Is f correct?"), [TOOL],
                                          c.SamplingParams())]
    headers = [h for path, h, _ in provider.seen if "count_tokens" in path][-1]
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"


async def test_gemini_counts_come_from_count_tokens(provider: Provider,
                                                    counted: ServiceProcess) -> None:
    reply = await count(counted, "gemini-2.5-flash", "Is f correct?")
    assert reply.input_tokens == provider.gemini_tokens
    assert reply.accuracy.source == c.COUNT_SOURCE_PROVIDER_API
    assert_parts_sum(reply)
    path, headers, body = provider.seen[-1]
    assert path == "/gemini/v1beta/models/gemini-2.5-flash:countTokens"
    assert headers["x-goog-api-key"] == GKEY
    assert body == {"generateContentRequest": {
        "model": "models/gemini-2.5-flash",
        **wire.gemini_prompt(chat("Is f correct?"), [], c.SamplingParams())}}


async def test_a_prompt_counted_before_is_not_sent_again(provider: Provider,
                                                         counted: ServiceProcess) -> None:
    first = await count(counted, "claude-sonnet-4-5", "Cached?")
    calls = len(provider.seen)
    provider.anthropic_tokens += 1  # a second call would answer differently
    again = await count(counted, "claude-sonnet-4-5", "Cached?")
    assert len(provider.seen) == calls and again.input_tokens == first.input_tokens
    other = await count(counted, "claude-sonnet-4-5", "Not cached?")
    assert len(provider.seen) == calls + 1 and other.input_tokens == provider.anthropic_tokens
    # OpenAI models are counted locally, never through a provider.
    local = await count(counted, "gpt-4o", "Local?")
    assert local.accuracy.source == c.COUNT_SOURCE_TIKTOKEN and len(provider.seen) == calls + 1


async def test_failures_fall_back_to_the_estimate_within_the_timeout(
        provider: Provider, tmp_path: Path) -> None:
    proc = start_counter(tmp_path, name="faulty", **counter_env(provider, tmp_path, 400))
    try:
        # A request the provider refuses (400): the estimate; not the provider's fault, so
        # the next request still asks it.
        provider.mode["anthropic"] = "400"
        n = len(provider.calls("count_tokens"))
        for q in ("refused 1", "refused 2"):
            reply = await count(proc, "claude-sonnet-4-5", q)
            assert reply.accuracy.source in ESTIMATED and reply.input_tokens > 0
            assert_parts_sum(reply)
        assert len(provider.calls("count_tokens")) == n + 2
        # Slow: answered by the estimate once the 400 ms budget is spent, then the provider
        # cools down and the next request does not wait for it.
        provider.mode["anthropic"] = "slow"
        t0 = time.monotonic()
        reply = await count(proc, "claude-sonnet-4-5", "slow")
        assert reply.accuracy.source in ESTIMATED and time.monotonic() - t0 < 3
        n = len(provider.calls("count_tokens"))
        provider.mode["anthropic"] = "ok"
        t0 = time.monotonic()
        reply = await count(proc, "claude-sonnet-4-5", "cooling")
        assert reply.accuracy.source in ESTIMATED and time.monotonic() - t0 < 1
        assert len(provider.calls("count_tokens")) == n
        # A 5xx from Gemini: the estimate (Gemini was not cooling: it was asked).
        n = len(provider.calls("countTokens"))
        provider.mode["gemini"] = "500"
        reply = await count(proc, "gemini-2.5-flash", "down")
        assert reply.accuracy.source in ESTIMATED
        assert len(provider.calls("countTokens")) == n + 1
    finally:
        provider.mode.clear()
        stop(proc)
    log = proc.log.read_text()
    assert "counter.provider_count_failed" in log
    assert KEY not in log and GKEY not in log


async def test_401_echoing_the_key_is_never_logged(provider: Provider, tmp_path: Path) -> None:
    proc = start_counter(tmp_path, name="badkey", **counter_env(provider, tmp_path, 1000))
    try:
        provider.mode["anthropic"] = "401"
        reply = await count(proc, "claude-sonnet-4-5", "bad key")
        assert reply.accuracy.source in ESTIMATED
        assert provider.seen[-1][1]["x-api-key"] == KEY  # it was sent, and echoed back
    finally:
        provider.mode.clear()
        stop(proc)
    log = proc.log.read_text()
    assert '"status": 401' in log or "status=401" in log
    assert KEY not in log


def test_a_provider_without_a_key_is_not_enabled(tmp_path: Path) -> None:
    s = load_settings({"TOKENRT_COUNTER_PROVIDER_COUNT": "anthropic,gemini",
                       "TOKENRT_PROVIDER_GEMINI_KEY_ENV": "NO_SUCH_KEY",
                       "TOKENRT_PROVIDER_ANTHROPIC_KEY_ENV": "SOME_KEY"})
    with structlog.testing.capture_logs() as logs:
        found = endpoints(s, {"SOME_KEY": KEY}, structlog.get_logger())
    assert set(found) == {"anthropic"}
    assert [e["provider"] for e in logs if e["event"] == "counter.provider_count_disabled"] == [
        "gemini"]
    assert KEY not in repr(logs) and KEY not in repr(found)
    with pytest.raises(Exception, match="TOKENRT_COUNTER_PROVIDER_COUNT"):
        load_settings({"TOKENRT_COUNTER_PROVIDER_COUNT": "openai"})


async def test_by_reference_needs_the_content_for_a_provider_count(
        provider: Provider, counted: ServiceProcess) -> None:
    """A provider count needs the content: a message sent by digest alone is reported
    unknown even when this counter has seen it, and ByReference resends it, so the answer
    is still the provider's exact count."""
    from tokenrt_counter.client import ByReference, message_digest

    messages = chat("By reference?")
    async with grpc.aio.insecure_channel(counted.address) as ch:
        stub = counter_pb2_grpc.CounterServiceStub(ch)
        first = await stub.CountMessages(pb.CountMessagesRequest(
            model="claude-sonnet-4-5", messages=messages), timeout=10)
        got = await stub.CountMessages(pb.CountMessagesRequest(
            model="claude-sonnet-4-5", messages=[messages[0], c.Message(), messages[2]],
            message_digests=[b"", message_digest(messages[1]), b""]), timeout=10)
        assert list(got.unknown_messages) == [1] and got.input_tokens == 0
        helper = ByReference(stub, min_bytes=1)
        request = pb.CountMessagesRequest(model="claude-sonnet-4-5", messages=messages)
        assert await helper.count_messages(request, rpc_timeout=10) == first
        assert await helper.count_messages(request, rpc_timeout=10) == first
        assert helper.resent == 3  # the second time every message went by digest, in vain
        assert first.accuracy.source == c.COUNT_SOURCE_PROVIDER_API
        for _ in range(2):  # in vain three times in a row: references pause for the model
            assert await helper.count_messages(request, rpc_timeout=10) == first
        assert helper.resent == 9
        assert helper.by_reference(request) is request
        assert await helper.count_messages(request, rpc_timeout=10) == first
        assert helper.resent == 9
