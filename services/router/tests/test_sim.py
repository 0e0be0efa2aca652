"""The simulator's wire format, token counts and injected faults, on a real process."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
import tiktoken

MSGS = [{"role": "system", "content": "You are a coding assistant."},
        {"role": "user", "content": "Write a Python function that reverses a list."}]


def cookbook_count(messages: list[dict[str, str]]) -> int:
    enc = tiktoken.get_encoding("o200k_base")
    return 3 + sum(3 + sum(len(enc.encode(v)) for v in m.values()) for m in messages)


async def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as s, \
            s.post(url + "/v1/chat/completions", json=body, headers=headers or {},
                   timeout=aiohttp.ClientTimeout(total=10)) as r:
        return r.status, dict(r.headers), await r.text()


async def test_json_answer_shape_and_exact_prompt_count(sim_url: str) -> None:
    status, _, text = await post(sim_url, {"model": "gpt-4o-mini", "messages": MSGS})
    assert status == 200
    body = json.loads(text)
    assert body["object"] == "chat.completion"
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and "simulator" in msg["content"]
    u = body["usage"]
    assert u["prompt_tokens"] == cookbook_count(MSGS)
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    enc = tiktoken.get_encoding("o200k_base")
    assert u["completion_tokens"] == len(enc.encode(msg["content"]))
    assert u["prompt_tokens_details"]["cached_tokens"] == 0
    assert u["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_deterministic_and_max_tokens_respected(sim_url: str) -> None:
    a = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": MSGS}))[2])
    b = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": MSGS}))[2])
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    c = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": MSGS,
                                         "max_completion_tokens": 5}))[2])
    assert c["usage"]["completion_tokens"] == 5
    assert c["choices"][0]["finish_reason"] == "length"


async def test_stream_with_usage_matches_json(sim_url: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": MSGS, "stream": True,
            "stream_options": {"include_usage": True}}
    status, headers, text = await post(sim_url, body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert all(c["usage"] is None for c in chunks[:-1])
    full = json.loads((await post(sim_url, {"model": "gpt-4o-mini", "messages": MSGS}))[2])
    assert content == full["choices"][0]["message"]["content"]
    assert usage["completion_tokens"] == full["usage"]["completion_tokens"]
    assert [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


async def test_stream_without_include_usage_has_no_usage(sim_url: str) -> None:
    _, _, text = await post(sim_url, {"model": "gpt-4o-mini", "messages": MSGS, "stream": True})
    assert '"usage"' not in text and text.rstrip().endswith("data: [DONE]")


async def test_prompt_cache_reports_cached_tokens_on_repeat(sim_url: str) -> None:
    long = [{"role": "system", "content": "rules " * 1500}, {"role": "user", "content": "q1"}]
    first = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": long}))[2])
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    again = long[:1] + [{"role": "user", "content": "another question"}]
    second = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": again}))[2])
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached % 128 == 0 and cached <= second["usage"]["prompt_tokens"]


async def test_reasoning_model_reports_reasoning_tokens(sim_url: str) -> None:
    body = json.loads((await post(sim_url, {"model": "o3-mini", "messages": MSGS,
                                            "max_completion_tokens": 200}))[2])
    u = body["usage"]
    r = u["completion_tokens_details"]["reasoning_tokens"]
    assert 0 < r < u["completion_tokens"] <= 200


async def test_tool_call_when_required(sim_url: str) -> None:
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {}}}]
    body = json.loads((await post(sim_url, {"model": "gpt-4o", "messages": MSGS, "tools": tools,
                                            "tool_choice": "required"}))[2])
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "read_file"


@pytest.mark.parametrize("fault,status", [("429", 429), ("500", 500), ("503", 503)])
async def test_injected_http_errors(sim_url: str, fault: str, status: int) -> None:
    code, headers, text = await post(sim_url, {"model": "gpt-4o", "messages": MSGS},
                                     {"x-sim-fault": fault, "x-sim-retry-after": "2"})
    assert code == status
    assert "message" in json.loads(text)["error"]
    if status == 429:
        assert headers["Retry-After"] == "2"


async def test_model_suffix_and_admin_faults(sim_url: str) -> None:
    code, _, _ = await post(sim_url, {"model": "gpt-4o@fault=500", "messages": MSGS})
    assert code == 500
    async with aiohttp.ClientSession() as s:
        await s.post(sim_url + "/sim/faults", json={"model": "gpt-4.1", "fault": "429",
                                                    "count": 2})
    codes = [(await post(sim_url, {"model": "gpt-4.1", "messages": MSGS}))[0] for _ in range(3)]
    assert codes == [429, 429, 200]


async def test_malformed_and_timeout(sim_url: str) -> None:
    code, _, text = await post(sim_url, {"model": "gpt-4o", "messages": MSGS},
                               {"x-sim-fault": "malformed"})
    assert code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(asyncio.TimeoutError):
        async with aiohttp.ClientSession() as s:
            await s.post(sim_url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": MSGS},
                         headers={"x-sim-fault": "timeout"}, timeout=aiohttp.ClientTimeout(total=0.5))


async def test_latency_and_ttft_and_tps(sim_url: str) -> None:
    t = time.monotonic()
    await post(sim_url, {"model": "gpt-4o", "messages": MSGS}, {"x-sim-latency-ms": "200"})
    assert time.monotonic() - t >= 0.2
    t = time.monotonic()
    await post(sim_url, {"model": "gpt-4o", "messages": MSGS, "stream": True,
                         "max_tokens": 20}, {"x-sim-ttft-ms": "100", "x-sim-tps": "100"})
    assert time.monotonic() - t >= 0.1 + 0.19


async def test_bad_request_is_400(sim_url: str) -> None:
    code, _, text = await post(sim_url, {"messages": MSGS})
    assert code == 400 and "model" in json.loads(text)["error"]["message"]
