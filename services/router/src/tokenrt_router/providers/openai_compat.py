"""OpenAI Chat Completions adapter for OpenAI and any OpenAI-compatible base URL.

The request always carries an explicit max output; streams ask for the usage chunk
(`stream_options.include_usage`, a last chunk with empty `choices`). HTTP, timeouts and
error classification are `http.HttpAdapter`'s.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from tokenrt.v1 import common_pb2
from tokenrt_pricing import Usage
from tokenrt_router.providers.base import (
    Answer,
    Delta,
    Failure,
    ProviderError,
    ProviderRequest,
    StreamEnd,
)
from tokenrt_router.providers.http import HttpAdapter, number
from tokenrt_router.providers.secrets import Secret

T = common_pb2
ROLES = {T.ROLE_SYSTEM: "system", T.ROLE_USER: "user", T.ROLE_ASSISTANT: "assistant",
         T.ROLE_TOOL: "tool", T.ROLE_DEVELOPER: "developer"}
FINISH = {"stop": T.FINISH_REASON_STOP, "length": T.FINISH_REASON_LENGTH,
          "tool_calls": T.FINISH_REASON_TOOL_CALLS, "function_call": T.FINISH_REASON_TOOL_CALLS,
          "content_filter": T.FINISH_REASON_CONTENT_FILTER}
DETAIL = {T.IMAGE_DETAIL_LOW: "low", T.IMAGE_DETAIL_HIGH: "high", T.IMAGE_DETAIL_AUTO: "auto"}
EFFORT = {T.REASONING_EFFORT_MINIMAL: "minimal", T.REASONING_EFFORT_LOW: "low",
          T.REASONING_EFFORT_MEDIUM: "medium", T.REASONING_EFFORT_HIGH: "high"}


class OpenAICompatible(HttpAdapter):
    """OpenAI Chat Completions at `base_url` (…/v1): OpenAI itself (`max_tokens_field=
    "max_completion_tokens"`), the simulator, vLLM, Ollama, llama.cpp, DeepSeek,
    OpenRouter."""

    def __init__(self, name: str, base_url: str, api_key: Secret | str | None = None,
                 max_tokens_field: str = "max_tokens", pool: int = 256,
                 headers: Mapping[str, str] | None = None,
                 connect_timeout: float = 10.0) -> None:
        secret = Secret(api_key, name) if isinstance(api_key, str) and api_key else (
            api_key if isinstance(api_key, Secret) else None)
        auth = {"Authorization": f"Bearer {secret.reveal()}"} if secret else {}
        super().__init__(name, base_url, {**(headers or {}), **auth}, secret,
                         connect_timeout, pool)
        self._url = self.base_url + "/chat/completions"
        self._max_field = max_tokens_field

    def body(self, req: ProviderRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model_id,
                                "messages": [_message(m) for m in req.messages],
                                self._max_field: req.max_output}
        if req.tools:
            body["tools"] = [_tool(t) for t in req.tools]
        _sampling(body, req.sampling)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, req: ProviderRequest, timeout: float) -> Answer:  # noqa: ASYNC109
        payload = await self.post_json(self._url, self.body(req, False), timeout)
        try:
            choice = payload["choices"][0]
            msg = choice["message"]
            out = T.Message(role=T.ROLE_ASSISTANT)
            if msg.get("content"):
                out.content.add(text=msg["content"])
            for call in msg.get("tool_calls") or []:
                fn = call["function"]
                out.tool_calls.add(id=call.get("id", ""), name=fn["name"],
                                   arguments_json=fn.get("arguments") or "")
            return Answer(out, FINISH.get(choice.get("finish_reason") or "stop",
                                          T.FINISH_REASON_STOP), usage(payload.get("usage")))
        except (KeyError, TypeError, IndexError, AttributeError):
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the answer is not a chat "
                                "completion") from None

    async def stream(self, req: ProviderRequest,
                     timeout: float) -> AsyncIterator[Delta | StreamEnd]:  # noqa: ASYNC109
        finish, use = T.FINISH_REASON_STOP, None
        async with aclosing(self.post_sse(self._url, self.body(req, True), timeout)) as events:
            async for event, chunk in events:
                if event == "done":
                    yield StreamEnd(finish, use)
                    return
                if not isinstance(chunk, dict):
                    raise ProviderError(Failure.MALFORMED, f"{self.name}: a stream chunk is not "
                                        "an object")
                if isinstance(chunk.get("error"), dict):  # an error sent inside the stream
                    raise self.status_error(_int(chunk["error"].get("code"), 500),
                                            json.dumps(chunk))
                if chunk.get("usage"):
                    use = usage(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    d = choice.get("delta") or {}
                    delta = Delta(text=d.get("content") or "")
                    for call in d.get("tool_calls") or []:
                        fn = call.get("function") or {}
                        delta.tool_calls.append(T.ToolCall(
                            id=call.get("id") or "", name=fn.get("name") or "",
                            arguments_json=fn.get("arguments") or ""))
                        delta.tool_indexes.append(int(call.get("index", 0)))
                    if delta.text or delta.tool_calls:
                        yield delta
                    if choice.get("finish_reason"):
                        finish = FINISH.get(choice["finish_reason"], T.FINISH_REASON_STOP)
        raise ProviderError(Failure.MALFORMED, f"{self.name}: the stream ended without [DONE]")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def usage(raw: Any) -> Usage | None:
    """OpenAI's usage is already tokenrt's convention: prompt_tokens includes the cached
    prompt tokens, completion_tokens includes the reasoning tokens. DeepSeek reports its
    cache hits as prompt_cache_hit_tokens (inside prompt_tokens too); OpenRouter adds
    prompt_tokens_details.cache_write_tokens (inside prompt_tokens)."""
    if not isinstance(raw, dict):
        return None
    pd = raw.get("prompt_tokens_details")
    pd = pd if isinstance(pd, dict) else {}
    cd = raw.get("completion_tokens_details")
    cd = cd if isinstance(cd, dict) else {}
    prompt = number(raw, "prompt_tokens")
    cached = number(pd, "cached_tokens") or number(raw, "prompt_cache_hit_tokens")
    written = min(number(pd, "cache_write_tokens"), prompt - min(cached, prompt))
    output = number(raw, "completion_tokens")
    return Usage(input_tokens=prompt, cached_input_tokens=min(cached, prompt),
                 cache_write_input_tokens=written, output_tokens=output,
                 reasoning_tokens=min(number(cd, "reasoning_tokens"), output))


def _message(m: common_pb2.Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": ROLES.get(m.role, "user")}
    parts = list(m.content)
    if all(p.WhichOneof("part") == "text" for p in parts):
        out["content"] = "".join(p.text for p in parts)
    else:
        items: list[dict[str, Any]] = []
        for p in parts:
            if p.WhichOneof("part") == "text":
                items.append({"type": "text", "text": p.text})
            else:
                img = p.image
                url = img.url if img.WhichOneof("source") == "url" else (
                    f"data:{img.media_type or 'image/png'};base64,"
                    + base64.b64encode(img.data).decode())
                image: dict[str, Any] = {"url": url}
                if img.detail in DETAIL:
                    image["detail"] = DETAIL[img.detail]
                items.append({"type": "image_url", "image_url": image})
        out["content"] = items
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments_json}}
                             for c in m.tool_calls]
        if not parts:
            out["content"] = None
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def _tool(t: common_pb2.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name,
                          "parameters": json.loads(t.parameters_json_schema or "{}")}
    if t.description:
        fn["description"] = t.description
    if t.HasField("strict"):
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def _sampling(body: dict[str, Any], s: common_pb2.SamplingParams) -> None:
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if s.HasField(name):
            body[name] = getattr(s, name)
    if s.stop_sequences:
        body["stop"] = list(s.stop_sequences)
    if s.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = s.parallel_tool_calls
    if s.reasoning_effort in EFFORT:
        body["reasoning_effort"] = EFFORT[s.reasoning_effort]
    rf = s.response_format
    if rf.type == T.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    elif rf.type == T.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        schema: dict[str, Any] = {"name": rf.schema_name or "schema",
                                  "schema": json.loads(rf.json_schema or "{}")}
        if rf.HasField("strict"):
            schema["strict"] = rf.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    tc = s.tool_choice
    if tc.mode == T.TOOL_CHOICE_MODE_AUTO:
        body["tool_choice"] = "auto"
    elif tc.mode == T.TOOL_CHOICE_MODE_NONE:
        body["tool_choice"] = "none"
    elif tc.mode == T.TOOL_CHOICE_MODE_REQUIRED:
        body["tool_choice"] = "required"
    elif tc.mode == T.TOOL_CHOICE_MODE_TOOL:
        body["tool_choice"] = {"type": "function", "function": {"name": tc.tool_name}}
