"""Anthropic Messages adapter (`POST {base}/messages`, `x-api-key`, `anthropic-version`).

The prompt (system, messages, tools, tool_choice) is converted by
tokenrt_common.provider_wire, which the counter shares for Anthropic's count_tokens.

Usage: Anthropic's `input_tokens` EXCLUDES the prompt-cache writes and reads, so tokenrt's
input total is input_tokens + cache_creation_input_tokens + cache_read_input_tokens, with
the writes as cache_write_input_tokens and the reads as cached_input_tokens (each priced by
the catalog's cache_write / cached_input). Thinking is inside output_tokens and not
reported apart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from tokenrt.v1 import common_pb2
from tokenrt_common import provider_wire as wire
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
DEFAULT_VERSION = "2023-06-01"
FINISH = {"end_turn": T.FINISH_REASON_STOP, "stop_sequence": T.FINISH_REASON_STOP,
          "pause_turn": T.FINISH_REASON_STOP, "max_tokens": T.FINISH_REASON_LENGTH,
          "model_context_window_exceeded": T.FINISH_REASON_LENGTH,
          "tool_use": T.FINISH_REASON_TOOL_CALLS, "refusal": T.FINISH_REASON_CONTENT_FILTER}
# Error types that come with HTTP 200 inside a stream, as the status they stand for.
STREAM_ERRORS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429,
                 "invalid_request_error": 400, "authentication_error": 401,
                 "permission_error": 403, "not_found_error": 404,
                 "request_too_large": 413, "timeout_error": 504}


class Anthropic(HttpAdapter):
    def __init__(self, name: str, base_url: str, api_key: Secret | None,
                 version: str = DEFAULT_VERSION, headers: Mapping[str, str] | None = None,
                 connect_timeout: float = 10.0, pool: int = 256) -> None:
        auth = {"x-api-key": api_key.reveal()} if api_key else {}
        super().__init__(name, base_url, {**(headers or {}), "anthropic-version": version,
                                          **auth}, api_key, connect_timeout, pool)
        self._url = self.base_url + "/messages"

    def error_detail(self, payload: Any) -> tuple[str, float | None]:
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            return f"{err.get('type', 'error')}: {err.get('message', '')}", None
        return "", None

    def body(self, req: ProviderRequest, stream: bool) -> dict[str, Any]:
        try:
            prompt = wire.anthropic_prompt(req.model_id, req.messages, req.tools, req.sampling)
        except wire.WireError as exc:
            raise ProviderError(Failure.BAD_REQUEST, str(exc)) from None
        body: dict[str, Any] = {"max_tokens": req.max_output, **prompt}
        _sampling(body, req.sampling)
        if stream:
            body["stream"] = True
        return body

    async def complete(self, req: ProviderRequest, timeout: float) -> Answer:  # noqa: ASYNC109
        payload = await self.post_json(self._url, self.body(req, False), timeout)
        try:
            out = T.Message(role=T.ROLE_ASSISTANT)
            text = "".join(b["text"] for b in payload["content"] if b["type"] == "text")
            if text:
                out.content.add(text=text)
            for b in payload["content"]:
                if b["type"] == "tool_use":
                    out.tool_calls.add(id=b["id"], name=b["name"],
                                       arguments_json=json.dumps(b.get("input") or {}))
            finish = FINISH.get(payload.get("stop_reason") or "end_turn", T.FINISH_REASON_STOP)
            return Answer(out, finish, usage(payload.get("usage")))
        except (KeyError, TypeError, AttributeError):
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the answer is not an "
                                "Anthropic message") from None

    async def stream(self, req: ProviderRequest,
                     timeout: float) -> AsyncIterator[Delta | StreamEnd]:  # noqa: ASYNC109
        raw_usage: dict[str, Any] = {}
        finish = T.FINISH_REASON_STOP
        tools: dict[int, int] = {}  # content block index -> tool call ordinal
        async with aclosing(self.post_sse(self._url, self.body(req, True), timeout)) as events:
            async for event, data in events:
                if not isinstance(data, dict):
                    raise ProviderError(Failure.MALFORMED, f"{self.name}: a stream event is not "
                                        "an object")
                kind = data.get("type") or event
                if kind == "message_start":
                    raw_usage.update((data.get("message") or {}).get("usage") or {})
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        n = tools.setdefault(int(data.get("index", 0)), len(tools))
                        yield Delta(tool_calls=[T.ToolCall(id=block.get("id") or "",
                                                           name=block.get("name") or "")],
                                    tool_indexes=[n])
                    elif block.get("type") == "text" and block.get("text"):
                        yield Delta(text=block["text"])
                elif kind == "content_block_delta":
                    d = data.get("delta") or {}
                    if d.get("type") == "text_delta" and d.get("text"):
                        yield Delta(text=d["text"])
                    elif d.get("type") == "input_json_delta" and d.get("partial_json"):
                        n = tools.setdefault(int(data.get("index", 0)), len(tools))
                        yield Delta(tool_calls=[T.ToolCall(arguments_json=d["partial_json"])],
                                    tool_indexes=[n])
                elif kind == "message_delta":
                    # The usage here is cumulative; it can repeat the input counts.
                    raw_usage.update({k: v for k, v in (data.get("usage") or {}).items()
                                      if v is not None})
                    reason = (data.get("delta") or {}).get("stop_reason")
                    if reason:
                        finish = FINISH.get(reason, T.FINISH_REASON_STOP)
                elif kind == "message_stop":
                    yield StreamEnd(finish, usage(raw_usage) if raw_usage else None)
                    return
                elif kind == "error":
                    err = data.get("error") or {}
                    raise self.status_error(STREAM_ERRORS.get(err.get("type", ""), 500),
                                            json.dumps(data))
                # ping, content_block_stop and unknown events carry nothing we need.
        raise ProviderError(Failure.MALFORMED, f"{self.name}: the stream ended without "
                            "message_stop")


def usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    written = number(raw, "cache_creation_input_tokens")
    read = number(raw, "cache_read_input_tokens")
    output = number(raw, "output_tokens")
    return Usage(input_tokens=number(raw, "input_tokens") + written + read,
                 cached_input_tokens=read, cache_write_input_tokens=written,
                 output_tokens=output)


def _sampling(body: dict[str, Any], s: common_pb2.SamplingParams) -> None:
    for name in ("temperature", "top_p"):
        if s.HasField(name):
            body[name] = getattr(s, name)
    if s.stop_sequences:
        body["stop_sequences"] = list(s.stop_sequences)
