"""OpenAI Chat Completions adapter for any OpenAI-compatible base URL (the simulator
first; issue 9 adds the real OpenAI, Anthropic and Gemini adapters next to it).

One aiohttp session per adapter with a keep-alive connection pool. The request always
carries an explicit max output. Errors are classified for the retry policy: 429 (with
Retry-After), 5xx, timeouts and unparsable bodies are retryable; other 4xx are not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

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

T = common_pb2
ROLES = {T.ROLE_SYSTEM: "system", T.ROLE_USER: "user", T.ROLE_ASSISTANT: "assistant",
         T.ROLE_TOOL: "tool", T.ROLE_DEVELOPER: "developer"}
FINISH = {"stop": T.FINISH_REASON_STOP, "length": T.FINISH_REASON_LENGTH,
          "tool_calls": T.FINISH_REASON_TOOL_CALLS, "function_call": T.FINISH_REASON_TOOL_CALLS,
          "content_filter": T.FINISH_REASON_CONTENT_FILTER}
DETAIL = {T.IMAGE_DETAIL_LOW: "low", T.IMAGE_DETAIL_HIGH: "high", T.IMAGE_DETAIL_AUTO: "auto"}
EFFORT = {T.REASONING_EFFORT_MINIMAL: "minimal", T.REASONING_EFFORT_LOW: "low",
          T.REASONING_EFFORT_MEDIUM: "medium", T.REASONING_EFFORT_HIGH: "high"}


class OpenAICompatible:
    def __init__(self, name: str, base_url: str, api_key: str = "",
                 max_tokens_field: str = "max_tokens", pool: int = 256) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._max_field = max_tokens_field
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, keepalive_timeout=60),
                headers=self._headers, skip_auto_headers=("User-Agent",))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

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
        data = json.dumps(self.body(req, False))
        try:
            async with self._client().post(
                    self._url, data=data, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                text = await r.text()
                if r.status != 200:
                    raise _status_error(r.status, text, r.headers.get("Retry-After"))
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, f"no answer within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(Failure.UNREACHABLE, f"cannot reach {self.name}: "
                                f"{type(exc).__name__}") from None
        try:
            payload = json.loads(text)
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
                                          T.FINISH_REASON_STOP), _usage(payload.get("usage")))
        except (ValueError, KeyError, TypeError, IndexError):
            raise ProviderError(Failure.MALFORMED, "the provider's answer is not a chat "
                                "completion") from None

    async def stream(self, req: ProviderRequest,
                     timeout: float) -> AsyncIterator[Delta | StreamEnd]:  # noqa: ASYNC109
        data = json.dumps(self.body(req, True))
        finish, usage = T.FINISH_REASON_STOP, None
        try:
            async with self._client().post(
                    self._url, data=data,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                                  sock_read=timeout)) as r:
                if r.status != 200:
                    raise _status_error(r.status, await r.text(), r.headers.get("Retry-After"))
                async for raw in r.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        yield StreamEnd(finish, usage)
                        return
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        raise ProviderError(Failure.MALFORMED, "a stream chunk is not JSON") \
                            from None
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
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
        except TimeoutError:
            raise ProviderError(Failure.TIMEOUT, f"no chunk within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(Failure.UNREACHABLE, f"stream from {self.name} broke: "
                                f"{type(exc).__name__}") from None
        raise ProviderError(Failure.MALFORMED, "the stream ended without [DONE]")


def _status_error(status: int, text: str, retry_after: str | None) -> ProviderError:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:200]
    after = None
    if retry_after:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    if status == 429:
        return ProviderError(Failure.RATE_LIMITED, f"rate limited: {message}", status, after)
    if status >= 500:
        return ProviderError(Failure.SERVER, f"provider error {status}: {message}", status, after)
    return ProviderError(Failure.BAD_REQUEST, f"provider refused ({status}): {message}", status)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    pd = raw.get("prompt_tokens_details") or {}
    cd = raw.get("completion_tokens_details") or {}
    return Usage(input_tokens=int(raw.get("prompt_tokens") or 0),
                 cached_input_tokens=int(pd.get("cached_tokens") or 0),
                 output_tokens=int(raw.get("completion_tokens") or 0),
                 reasoning_tokens=int(cd.get("reasoning_tokens") or 0))


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
