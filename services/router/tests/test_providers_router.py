"""The real providers through a router process: OpenAI, Anthropic and Gemini deployments
whose base URLs point at a local HTTP server speaking their wire formats. The Completion's
usage and cost come from each provider's own usage fields, cached reads and writes
included, and no provider key reaches an answer or a log line."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc

from .conftest import ROUTER_KEY, start_router
from .test_providers import KEY, Upstream, json_reply, sse_reply
from .test_providers import upstream as upstream  # noqa: F401  (the fixture)

T = common_pb2
AUTH = (("authorization", f"Bearer {ROUTER_KEY}"),)
PRE = "/router-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def router(stack, upstream: Upstream,  # type: ignore[no-untyped-def]
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    state = tmp_path_factory.mktemp("router-providers")
    base = upstream.url + PRE
    proc, address, _ = start_router(
        stack.env, state, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-prov-{uuid.uuid4().hex[:6]}/p",
        TOKENRT_ROUTER_HTTP_ADDR="", TOKENRT_ROUTER_PROVIDER_RETRIES="0",
        TOKENRT_PROVIDER_OPENAI_BASE_URL=f"{base}/openai/v1",
        TOKENRT_PROVIDER_ANTHROPIC_BASE_URL=f"{base}/anthropic/v1",
        TOKENRT_PROVIDER_GEMINI_BASE_URL=f"{base}/gemini/v1beta",
        OPENAI_API_KEY=KEY, ANTHROPIC_API_KEY=KEY, GEMINI_API_KEY=KEY)
    yield address, state / "router.log"
    proc.terminate()
    proc.wait(20)


def ask(model: str) -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        messages=[T.Message(role=T.ROLE_USER,
                            content=[T.ContentPart(text="reverse a list " + uuid.uuid4().hex)])],
        sampling=T.SamplingParams(max_output_tokens=256),
        preferences=router_pb2.RoutingPreferences(forced_model=model))


async def test_router_costs_each_providers_usage(router, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    address, log = router
    upstream.script(f"{PRE}/openai/v1/chat/completions", json_reply("openai_chat_cached.json"))
    upstream.script(f"{PRE}/anthropic/v1/messages", json_reply("anthropic_message_tool_use.json"),
                    sse_reply("anthropic_stream.sse"), json_reply("anthropic_401.json", 401))
    upstream.script(f"{PRE}/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent",
                    sse_reply("gemini_stream.sse"))
    async with grpc.aio.insecure_channel(address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        oa = (await stub.Complete(ask("openai/gpt-4o"), metadata=AUTH, timeout=30)).completion
        an = (await stub.Complete(ask("claude-sonnet-4-5"), metadata=AUTH, timeout=30)).completion
        streamed = [r async for r in stub.StreamComplete(
            router_pb2.StreamCompleteRequest(request=ask("claude-sonnet-4-5")),
            metadata=AUTH, timeout=30)]
        ge = [r async for r in stub.StreamComplete(
            router_pb2.StreamCompleteRequest(request=ask("gemini-2.5-pro")), metadata=AUTH,
            timeout=30)]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Complete(ask("claude-sonnet-4-5"), metadata=AUTH, timeout=30)

    assert (oa.provider, oa.served_model, oa.cost_nusd) == (T.PROVIDER_OPENAI, "gpt-4o", 5_615_000)
    assert (oa.usage.input_tokens, oa.usage.cached_input_tokens) == (2006, 1920)
    assert oa.usage_source == T.USAGE_SOURCE_PROVIDER_REPORTED

    assert an.provider == T.PROVIDER_ANTHROPIC and an.cost_nusd == 8_013_000
    assert (an.usage.input_tokens, an.usage.cached_input_tokens,
            an.usage.cache_write_input_tokens) == (4521, 3000, 1500)
    assert an.finish_reason == T.FINISH_REASON_TOOL_CALLS
    assert an.message.tool_calls[0].name == "read_file"

    done = streamed[-1].done
    assert done.cost_nusd == 2_136_000 and done.finish_reason == T.FINISH_REASON_TOOL_CALLS
    assert "".join(r.delta.text for r in streamed if r.HasField("delta")) == \
        "Okay, let me check the file."
    assert ge[-1].done.cost_nusd == 1_946_000 and ge[-1].done.provider == T.PROVIDER_GEMINI

    # the provider echoed our key in its 401: neither the status nor the log shows it
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "[redacted]" in (refused.value.details() or "")
    assert KEY not in (refused.value.details() or "")
    text = log.read_text()
    assert "router.provider_configured" in text and KEY not in text
