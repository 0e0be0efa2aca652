"""OpenAI Chat Completions JSON ⇄ the router's messages (pure, no I/O).

Requests: an OpenAI `/v1/chat/completions` body becomes a CompleteRequest; a field of the
wrong type or out of range is a WireError naming it (HTTP 400, `param`). Fields that do
not change the answer and that tokenrt does not implement (metadata, store, user-facing
service tiers...) are ignored; fields that would change it and are not supported (`n` > 1,
`logprobs`, audio) are refused. Nothing in a body can name the organization or project:
the API key decides them.

Answers: a Completion becomes a `chat.completion` object; a stream's events become
`chat.completion.chunk` objects exactly as OpenAI sends them (a role chunk first, content
and tool-call deltas, a chunk with the finish reason, then with
`stream_options.include_usage` a usage chunk with empty `choices`, every other chunk
carrying `"usage": null`). Refusals become OpenAI's error object with the HTTP status.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from tokenrt.v1 import common_pb2, router_pb2
from tokenrt_router.refusal import Refusal

T = common_pb2
S = grpc.StatusCode
AUTO_MODELS = ("auto", "tokenrt/auto")
ROLES = {"system": T.ROLE_SYSTEM, "developer": T.ROLE_DEVELOPER, "user": T.ROLE_USER,
         "assistant": T.ROLE_ASSISTANT, "tool": T.ROLE_TOOL}
DETAILS = {"auto": T.IMAGE_DETAIL_AUTO, "low": T.IMAGE_DETAIL_LOW, "high": T.IMAGE_DETAIL_HIGH}
EFFORTS = {"minimal": T.REASONING_EFFORT_MINIMAL, "low": T.REASONING_EFFORT_LOW,
           "medium": T.REASONING_EFFORT_MEDIUM, "high": T.REASONING_EFFORT_HIGH}
FORMATS = {"text": T.RESPONSE_FORMAT_TYPE_TEXT, "json_object": T.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
           "json_schema": T.RESPONSE_FORMAT_TYPE_JSON_SCHEMA}
FINISH = {T.FINISH_REASON_STOP: "stop", T.FINISH_REASON_LENGTH: "length",
          T.FINISH_REASON_TOOL_CALLS: "tool_calls",
          T.FINISH_REASON_CONTENT_FILTER: "content_filter"}
# Request fields of the router's messages → the OpenAI parameter a client knows.
PARAMS = {"sampling.max_output_tokens": "max_tokens", "preferences": "model",
          "preferences.preferred_model": "model", "user_id": "user", "messages": "messages"}


class WireError(ValueError):
    """A request body field is wrong; `param` names it as the client wrote it."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass
class ChatCall:
    """A parsed `/v1/chat/completions` body."""

    request: router_pb2.CompleteRequest
    model: str
    stream: bool = False
    include_usage: bool = False


# -- requests ----------------------------------------------------------------------


def parse_chat(body: object) -> ChatCall:
    if not isinstance(body, dict):
        raise WireError(None, "the request body must be a JSON object")
    req = router_pb2.CompleteRequest()
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise WireError("model", "you must provide a model parameter (a model name, or "
                        "\"auto\" to let tokenrt choose)")
    if model not in AUTO_MODELS:
        req.preferences.preferred_model = model
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise WireError("messages", "messages must be a non-empty array of message objects")
    for i, m in enumerate(messages):
        req.messages.append(_message(m, f"messages[{i}]"))
    tools = _opt(body, "tools", list)
    for i, t in enumerate(tools or []):
        req.tools.append(_tool(t, f"tools[{i}]"))
    _sampling(body, req.sampling)
    user = _opt(body, "user", str)
    if user:
        req.user_id = user
    n = _opt(body, "n", int)
    if n is not None and n != 1:
        raise WireError("n", "only n = 1 is supported")
    if _opt(body, "logprobs", bool):
        raise WireError("logprobs", "logprobs are not supported")
    if body.get("audio") is not None or body.get("modalities") not in (None, ["text"]):
        raise WireError("modalities", "only text output is supported")
    _ignored(body)
    stream = bool(_opt(body, "stream", bool))
    options = _opt(body, "stream_options", dict)
    include_usage = False
    if options is not None:
        if not stream:
            raise WireError("stream_options", "stream_options is only allowed with stream: true")
        include_usage = bool(_opt(options, "include_usage", bool, "stream_options."))
    return ChatCall(req, model, stream, include_usage)


# Accepted and not passed on: they change neither the answer nor what it costs.
IGNORED: dict[str, type] = {"metadata": dict, "store": bool, "service_tier": str}
# Would change the answer, and no provider adapter sends them: refused, not dropped.
UNSUPPORTED = ("logit_bias", "top_logprobs", "prediction", "functions", "function_call")


def _ignored(body: dict[str, Any]) -> None:
    for key, kind in IGNORED.items():
        _opt(body, key, kind)
    for key in UNSUPPORTED:
        if body.get(key) not in (None, {}, [], 0):
            raise WireError(key, f"{key} is not supported by tokenrt")


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...],
         where: str = "") -> Any:
    """obj[key] when present and not null, checked against `kind` (bool is no number)."""
    value = obj.get(key)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = {str: "a string", int: "an integer", bool: "a boolean", list: "an array",
                 dict: "an object"}
        want = "a number" if float in kinds else " or ".join(names[k] for k in kinds)
        raise WireError(where + key, f"{where}{key} must be {want}")
    return value


def _number(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = _opt(obj, key, (int, float))
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise WireError(key, f"{key} must be between {low:g} and {high:g}")
    return value


def _message(m: object, where: str) -> common_pb2.Message:
    if not isinstance(m, dict):
        raise WireError(where, f"{where} must be an object with a role and content")
    role = m.get("role")
    if role not in ROLES:
        raise WireError(f"{where}.role", f"{where}.role must be one of {', '.join(ROLES)}")
    msg = T.Message(role=ROLES[role])
    content = m.get("content")
    if isinstance(content, str):
        msg.content.add(text=content)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            msg.content.append(_part(part, f"{where}.content[{j}]"))
    elif content is not None or role != "assistant":
        raise WireError(f"{where}.content", f"{where}.content must be a string or an array "
                        "of content parts")
    name = _opt(m, "name", str, where + ".")
    if name:
        msg.name = name
    for k, call in enumerate(_opt(m, "tool_calls", list, where + ".") or []):
        msg.tool_calls.append(_tool_call(call, f"{where}.tool_calls[{k}]"))
    if role == "tool":
        call_id = _opt(m, "tool_call_id", str, where + ".")
        if not call_id:
            raise WireError(f"{where}.tool_call_id",
                            f"{where}.tool_call_id is required for role tool")
        msg.tool_call_id = call_id
    return msg


def _part(part: object, where: str) -> common_pb2.ContentPart:
    if not isinstance(part, dict):
        raise WireError(where, f"{where} must be a content part object")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise WireError(f"{where}.text", f"{where}.text must be a string")
        return T.ContentPart(text=text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            raise WireError(f"{where}.image_url.url", f"{where}.image_url.url must be a URL")
        detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
        if detail not in DETAILS:
            raise WireError(f"{where}.image_url.detail",
                            f"{where}.image_url.detail must be auto, low or high")
        return T.ContentPart(image=T.ImagePart(url=url, detail=DETAILS[detail]))
    raise WireError(f"{where}.type", f"{where}.type {kind!r} is not supported "
                    "(text and image_url are)")


def _tool_call(call: object, where: str) -> common_pb2.ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(fn, dict):
        raise WireError(where, f"{where} must be {{id, type: function, function: {{name, "
                        "arguments}}}")
    name = _opt(fn, "name", str, where + ".function.")
    args = _opt(fn, "arguments", str, where + ".function.")
    return T.ToolCall(id=_opt(call, "id", str, where + ".") or "", name=name or "",
                      arguments_json=args or "")


def _tool(t: object, where: str) -> common_pb2.Tool:
    fn = t.get("function") if isinstance(t, dict) else None
    if not isinstance(t, dict) or t.get("type", "function") != "function" or \
            not isinstance(fn, dict):
        raise WireError(where, f"{where} must be {{type: function, function: {{name, ...}}}}")
    name = _opt(fn, "name", str, where + ".function.")
    if not name:
        raise WireError(f"{where}.function.name", f"{where}.function.name is required")
    tool = T.Tool(name=name, description=_opt(fn, "description", str, where + ".function.")
                  or "")
    params = _opt(fn, "parameters", dict, where + ".function.")
    if params is not None:
        tool.parameters_json_schema = json.dumps(params)
    strict = _opt(fn, "strict", bool, where + ".function.")
    if strict is not None:
        tool.strict = strict
    return tool


def _sampling(body: dict[str, Any], s: common_pb2.SamplingParams) -> None:
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1),
                           ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)):
        value = _number(body, key, low, high)
        if value is not None:
            setattr(s, key, float(value))
    for key in ("max_completion_tokens", "max_tokens"):
        value = _opt(body, key, int)
        if value is not None:
            if not 0 < value < 2**31:
                raise WireError(key, f"{key} must be a positive integer below 2^31")
            s.max_output_tokens = value
            break
    stop = body.get("stop")
    if isinstance(stop, str):
        s.stop_sequences.append(stop)
    elif isinstance(stop, list) and all(isinstance(x, str) for x in stop) and len(stop) <= 4:
        s.stop_sequences.extend(stop)
    elif stop is not None:
        raise WireError("stop", "stop must be a string or an array of at most 4 strings")
    seed = _opt(body, "seed", int)
    if seed is not None:
        if not -(2**63) <= seed < 2**63:
            raise WireError("seed", "seed must fit in 64 bits")
        s.seed = seed
    parallel = _opt(body, "parallel_tool_calls", bool)
    if parallel is not None:
        s.parallel_tool_calls = parallel
    effort = _opt(body, "reasoning_effort", str)
    if effort is not None:
        if effort not in EFFORTS:
            raise WireError("reasoning_effort",
                            f"reasoning_effort must be one of {', '.join(EFFORTS)}")
        s.reasoning_effort = EFFORTS[effort]
    _tool_choice(body.get("tool_choice"), s.tool_choice)
    _response_format(_opt(body, "response_format", dict), s.response_format)


def _tool_choice(choice: object, out: common_pb2.ToolChoice) -> None:
    modes = {"auto": T.TOOL_CHOICE_MODE_AUTO, "none": T.TOOL_CHOICE_MODE_NONE,
             "required": T.TOOL_CHOICE_MODE_REQUIRED}
    if choice is None:
        return
    if isinstance(choice, str) and choice in modes:
        out.mode = modes[choice]
        return
    fn = choice.get("function") if isinstance(choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise WireError("tool_choice", "tool_choice must be auto, none, required or "
                        "{type: function, function: {name}}")
    out.mode = T.TOOL_CHOICE_MODE_TOOL
    out.tool_name = name


def _response_format(fmt: dict[str, Any] | None, out: common_pb2.ResponseFormat) -> None:
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind not in FORMATS:
        raise WireError("response_format.type",
                        f"response_format.type must be one of {', '.join(FORMATS)}")
    out.type = FORMATS[kind]
    if kind == "json_schema":
        spec = _opt(fmt, "json_schema", dict, "response_format.")
        if not spec or not isinstance(spec.get("name"), str):
            raise WireError("response_format.json_schema",
                            "response_format.json_schema needs a name and a schema")
        out.schema_name = spec["name"]
        out.json_schema = json.dumps(spec.get("schema") or {})
        if isinstance(spec.get("strict"), bool):
            out.strict = spec["strict"]


# -- answers -----------------------------------------------------------------------


def completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id


def usage_json(u: common_pb2.Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def _tool_calls_json(calls: Any) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_json}} for c in calls]


def completion_json(c: router_pb2.Completion, created: int) -> dict[str, Any]:
    text = "".join(p.text for p in c.message.content)
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if c.message.tool_calls:
        message["tool_calls"] = _tool_calls_json(c.message.tool_calls)
    return {"id": completion_id(c.request_id), "object": "chat.completion", "created": created,
            "model": c.served_model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH.get(c.finish_reason, "stop")}],
            "usage": usage_json(c.usage), "system_fingerprint": None}


@dataclass
class ChunkWriter:
    """Stream events → OpenAI chunk objects, one stream at a time."""

    request_id: str
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))
    model: str = ""

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None,
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": completion_id(self.request_id), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "system_fingerprint": None,
            "choices": [] if delta is None else [{"index": 0, "delta": delta,
                                                  "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            data["usage"] = usage
        return data

    def event(self, ev: router_pb2.StreamCompleteResponse) -> list[dict[str, Any]]:
        kind = ev.WhichOneof("event")
        if kind == "start":
            self.model = ev.start.served_model
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "delta":
            delta: dict[str, Any] = {}
            if ev.delta.text:
                delta["content"] = ev.delta.text
            if ev.delta.tool_calls:
                delta["tool_calls"] = [_tool_delta(t) for t in ev.delta.tool_calls]
            return [self._chunk(delta)] if delta else []
        if kind == "done":
            done = ev.done
            if done.finish_reason in (T.FINISH_REASON_ERROR, T.FINISH_REASON_CANCELLED):
                return []  # the refusal that follows ends the stream
            out = [self._chunk({}, FINISH.get(done.finish_reason, "stop"))]
            if self.include_usage:
                out.append(self._chunk(None, usage=usage_json(done.usage)))
            return out
        return []


def _tool_delta(t: router_pb2.ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": t.index}
    if t.id:
        out["id"] = t.id
        out["type"] = "function"
    fn: dict[str, Any] = {"arguments": t.arguments_json}
    if t.name:
        fn["name"] = t.name
    out["function"] = fn
    return out


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


# -- errors ------------------------------------------------------------------------

_STATUS = {S.INVALID_ARGUMENT: 400, S.FAILED_PRECONDITION: 400, S.OUT_OF_RANGE: 400,
           S.UNAUTHENTICATED: 401, S.PERMISSION_DENIED: 403, S.NOT_FOUND: 404,
           S.ALREADY_EXISTS: 409, S.RESOURCE_EXHAUSTED: 429, S.UNIMPLEMENTED: 501,
           S.UNAVAILABLE: 503, S.DEADLINE_EXCEEDED: 504}
_PROVIDER = (T.ERROR_REASON_PROVIDER_ERROR, T.ERROR_REASON_PROVIDER_RATE_LIMITED,
             T.ERROR_REASON_PROVIDER_TIMEOUT, T.ERROR_REASON_PROVIDER_UNAVAILABLE)
_CODES = {T.ERROR_REASON_API_KEY_INVALID: "invalid_api_key",
          T.ERROR_REASON_MODEL_NOT_FOUND: "model_not_found",
          T.ERROR_REASON_CONTEXT_TOO_LONG: "context_length_exceeded",
          T.ERROR_REASON_BUDGET_THROTTLED: "rate_limit_exceeded"}


@dataclass(frozen=True)
class HttpError:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def error(status: int, message: str, kind: str, param: str | None = None,
          code: str | None = None, headers: dict[str, str] | None = None) -> HttpError:
    return HttpError(status, {"error": {"message": message, "type": kind, "param": param,
                                        "code": code}}, headers or {})


def wire_error(e: WireError) -> HttpError:
    return error(400, e.message, "invalid_request_error", e.param, "invalid_request_error")


def refusal_error(r: Refusal, now: float | None = None) -> HttpError:
    """OpenAI's error object and status for a refusal: 400 / 401 / 403 / 404 / 429 with
    Retry-After / 502 when the provider failed / 503 when a dependency is down."""
    d = r.detail
    status = _STATUS.get(r.code, 500)
    if status == 503 and d.reason in _PROVIDER:
        status = 502
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
            404: "invalid_request_error", 409: "invalid_request_error"}.get(status, "server_error")
    if status == 429:
        kind = "insufficient_quota" if d.reason == T.ERROR_REASON_BUDGET_EXCEEDED else "requests"
    code = _CODES.get(d.reason) or T.ErrorReason.Name(d.reason).removeprefix(
        "ERROR_REASON_").lower()
    headers: dict[str, str] = {}
    wait = d.retry_after_ms / 1000
    if not wait and d.HasField("reset_at"):
        wait = d.reset_at.seconds + d.reset_at.nanos / 1e9 - (now or time.time())
    if status == 429 or (wait > 0 and status >= 500):
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    param = PARAMS.get(d.field, d.field) if d.field else None
    return error(status, r.message, kind, param, code if code != "unspecified" else None,
                 headers)
