"""Google Gemini adapter: `POST {base}/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`, key in `x-goog-api-key` (never in the URL).

The prompt (systemInstruction, contents, tools, toolConfig) is converted by
tokenrt_common.provider_wire, which the counter shares for Gemini's countTokens.
Gemini 3 returns a `thoughtSignature` with a function call that must be sent back with
it: it travels in the tool call's id (`gsig.<signature>`), which the caller echoes.

Usage (`usageMetadata`): promptTokenCount INCLUDES cachedContentTokenCount (like OpenAI's
cached_tokens); candidatesTokenCount EXCLUDES thoughtsTokenCount, which is billed as
output, so output = candidates + thoughts with thoughts as reasoning tokens;
toolUsePromptTokenCount (grounding / code execution prompts) is billed as input.
"""

from __future__ import annotations

import json
import re
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
SIGNED = wire.GEMINI_SIGNED
FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
            "IMAGE_SAFETY", "LANGUAGE"}
FINISH = {"STOP": T.FINISH_REASON_STOP, "MAX_TOKENS": T.FINISH_REASON_LENGTH,
          "MALFORMED_FUNCTION_CALL": T.FINISH_REASON_ERROR,
          "UNEXPECTED_TOOL_CALL": T.FINISH_REASON_ERROR,
          **{k: T.FINISH_REASON_CONTENT_FILTER for k in FILTERED}}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


class Gemini(HttpAdapter):
    def __init__(self, name: str, base_url: str, api_key: Secret | None,
                 headers: Mapping[str, str] | None = None, connect_timeout: float = 10.0,
                 pool: int = 256) -> None:
        auth = {"x-goog-api-key": api_key.reveal()} if api_key else {}
        super().__init__(name, base_url, {**(headers or {}), **auth}, api_key,
                         connect_timeout, pool)

    def error_detail(self, payload: Any) -> tuple[str, float | None]:
        """google.rpc.Status: {"error": {code, message, status, details: [RetryInfo...]}}
        (streamed errors sometimes come as a one-element list)."""
        if isinstance(payload, list) and payload:
            payload = payload[0]
        err = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(err, dict):
            return "", None
        delay = None
        for d in err.get("details") or []:
            if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
                m = _DURATION.match(str(d.get("retryDelay", "")))
                if m:
                    delay = float(m.group(1))
        status = f"{err['status']}: " if err.get("status") else ""
        return f"{status}{err.get('message', '')}", delay

    def status_error(self, status: int, text: str,
                     headers: Mapping[str, str] | None = None) -> ProviderError:
        # Gemini answers a bad key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): the
        # deployment refuses us, the caller's request is not at fault.
        if status == 400 and "API_KEY_INVALID" in text:
            status = 401
        return super().status_error(status, text, headers)

    def _url(self, model: str, stream: bool) -> str:
        model = model.removeprefix("models/")
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.base_url}/models/{model}:{verb}"

    def body(self, req: ProviderRequest) -> dict[str, Any]:
        try:
            body = wire.gemini_prompt(req.messages, req.tools, req.sampling)
        except wire.WireError as exc:
            raise ProviderError(Failure.BAD_REQUEST, str(exc)) from None
        body["generationConfig"] = _generation(req.sampling, req.max_output)
        return body

    async def complete(self, req: ProviderRequest, timeout: float) -> Answer:  # noqa: ASYNC109
        payload = await self.post_json(self._url(req.model_id, False), self.body(req), timeout)
        if not isinstance(payload, dict):
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the answer is not a "
                                "GenerateContentResponse")
        out = T.Message(role=T.ROLE_ASSISTANT)
        text, calls, finish = self._candidate(payload, 0)
        if text:
            out.content.add(text=text)
        out.tool_calls.extend(calls)
        if finish is None:
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the answer has no "
                                "finishReason")
        return Answer(out, finish, usage(payload.get("usageMetadata")))

    async def stream(self, req: ProviderRequest,
                     timeout: float) -> AsyncIterator[Delta | StreamEnd]:  # noqa: ASYNC109
        finish: int | None = None
        use: Usage | None = None
        n_calls = 0
        url = self._url(req.model_id, True)
        async with aclosing(self.post_sse(url, self.body(req), timeout)) as events:
            async for _, chunk in events:
                if not isinstance(chunk, dict):
                    raise ProviderError(Failure.MALFORMED, f"{self.name}: a stream chunk is not "
                                        "an object")
                if isinstance(chunk.get("error"), dict):
                    raise self.status_error(int(chunk["error"].get("code") or 500),
                                            json.dumps(chunk))
                if chunk.get("usageMetadata"):
                    use = usage(chunk["usageMetadata"])
                text, calls, reason = self._candidate(chunk, n_calls)
                if text or calls:
                    yield Delta(text=text, tool_calls=calls,
                                tool_indexes=list(range(n_calls, n_calls + len(calls))))
                    n_calls += len(calls)
                if reason is not None:
                    finish = reason
        if finish is None:
            raise ProviderError(Failure.MALFORMED, f"{self.name}: the stream ended without "
                                "a finishReason")
        if n_calls and finish == T.FINISH_REASON_STOP:
            finish = T.FINISH_REASON_TOOL_CALLS
        yield StreamEnd(finish, use)

    def _candidate(self, payload: dict[str, Any],
                   first_call: int) -> tuple[str, list[common_pb2.ToolCall], int | None]:
        """Text, function calls and finish reason of the first candidate (None: not
        finished yet). A prompt blocked before any candidate is a content-filter stop."""
        cands = payload.get("candidates")
        if not cands:
            if (payload.get("promptFeedback") or {}).get("blockReason"):
                return "", [], T.FINISH_REASON_CONTENT_FILTER
            return "", [], None
        try:
            cand = cands[0]
            parts = (cand.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts
                           if "text" in p and not p.get("thought"))
            calls: list[common_pb2.ToolCall] = []
            for p in parts:
                fc = p.get("functionCall")
                if fc is None:
                    continue
                sig = p.get("thoughtSignature")
                call_id = SIGNED + sig if sig else (fc.get("id") or
                                                    f"call_{first_call + len(calls)}")
                calls.append(T.ToolCall(id=call_id, name=fc["name"],
                                        arguments_json=json.dumps(fc.get("args") or {})))
            reason = cand.get("finishReason")
        except (KeyError, TypeError, AttributeError):
            raise ProviderError(Failure.MALFORMED, f"{self.name}: a candidate is not "
                                "Content") from None
        if reason is None:
            return text, calls, None
        finish = FINISH.get(reason, T.FINISH_REASON_STOP)
        if calls and finish == T.FINISH_REASON_STOP:
            finish = T.FINISH_REASON_TOOL_CALLS
        return text, calls, finish


def usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = number(raw, "promptTokenCount") + number(raw, "toolUsePromptTokenCount")
    thoughts = number(raw, "thoughtsTokenCount")
    return Usage(input_tokens=prompt,
                 cached_input_tokens=min(number(raw, "cachedContentTokenCount"), prompt),
                 output_tokens=number(raw, "candidatesTokenCount") + thoughts,
                 reasoning_tokens=thoughts)


def _generation(s: common_pb2.SamplingParams, max_output: int) -> dict[str, Any]:
    g: dict[str, Any] = {"maxOutputTokens": max_output}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"),
                         ("frequency_penalty", "frequencyPenalty")):
        if s.HasField(ours):
            g[theirs] = getattr(s, ours)
    if s.stop_sequences:
        g["stopSequences"] = list(s.stop_sequences)
    rf = s.response_format
    if rf.type == T.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        g["responseMimeType"] = "application/json"
    elif rf.type == T.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        g["responseMimeType"] = "application/json"
        g["responseJsonSchema"] = json.loads(rf.json_schema or "{}")
    return g
