"""Chat requests in the Anthropic Messages and Google Gemini wire formats (pure: protobuf
in, JSON-ready dicts out, no I/O).

The router's adapters send these bodies to generate; the counter sends the same ones to
the providers' count-tokens endpoints, so a count is made on what the router would send.

Anthropic: system and developer messages become the top-level `system`; tool calls are
`tool_use` blocks in the assistant turn and tool results `tool_result` blocks in the next
user turn. Gemini: system and developer messages become `systemInstruction`; the
conversation is `contents` of `user` / `model` turns made of `parts`; tools are
`functionDeclarations`, a call is a `functionCall` part and a result a `functionResponse`
part named after the call. Gemini 3 returns a `thoughtSignature` with a function call that
must be sent back with it: it travels in the tool call's id (`gsig.<signature>`). Both APIs
want user and assistant/model turns to alternate, so consecutive turns of one role are
merged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from tokenrt.v1 import common_pb2

T = common_pb2
GEMINI_SIGNED = "gsig."


class WireError(ValueError):
    """The request cannot be expressed in the provider's format (the caller's fault)."""


# ---- shared -----------------------------------------------------------------------------


def text_of(m: common_pb2.Message) -> str:
    """The text parts of a message, joined."""
    return "".join(p.text for p in m.content if p.WhichOneof("part") == "text")


def tool_args(text: str, provider: str) -> dict[str, Any]:
    """A tool call's arguments_json as the object both APIs require."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise WireError(f"a tool call's arguments_json is not JSON; {provider} needs an "
                        "object") from None
    return value if isinstance(value, dict) else {"value": value}


def data_url(url: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL."""
    head, _, data = url.partition(",")
    return head.removeprefix("data:").split(";", 1)[0] or "image/png", data


def append_turn(turns: list[dict[str, Any]], role: str, key: str,
                items: list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one of the same role."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


# ---- Anthropic Messages -----------------------------------------------------------------


def anthropic_messages(msgs: Sequence[common_pb2.Message]
                       ) -> tuple[str, list[dict[str, Any]]]:
    """(system text, messages). Raises WireError."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in msgs:
        if m.role in (T.ROLE_SYSTEM, T.ROLE_DEVELOPER):
            system.append(text_of(m))
            continue
        if m.role == T.ROLE_TOOL:
            role = "user"
            blocks: list[dict[str, Any]] = [{"type": "tool_result",
                                             "tool_use_id": m.tool_call_id,
                                             "content": text_of(m)}]
        else:
            role = "assistant" if m.role == T.ROLE_ASSISTANT else "user"
            blocks = [anthropic_part(p) for p in m.content]
            blocks = [b for b in blocks if b.get("type") != "text" or b["text"]]
            for c in m.tool_calls:
                blocks.append({"type": "tool_use", "id": c.id, "name": c.name,
                               "input": tool_args(c.arguments_json, "Anthropic")})
        append_turn(out, role, "content", blocks)
    return "\n\n".join(s for s in system if s), out


def anthropic_part(p: common_pb2.ContentPart) -> dict[str, Any]:
    if p.WhichOneof("part") == "text":
        return {"type": "text", "text": p.text}
    img = p.image
    if img.WhichOneof("source") == "url" and not img.url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": img.url}}
    if img.WhichOneof("source") == "url":
        media, data = data_url(img.url)
        return {"type": "image", "source": {"type": "base64", "media_type": media,
                                            "data": data}}
    return {"type": "image", "source": {"type": "base64",
                                        "media_type": img.media_type or "image/png",
                                        "data": base64.b64encode(img.data).decode()}}


def anthropic_tool(t: common_pb2.Tool) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": t.name,
                            "input_schema": json.loads(t.parameters_json_schema or "{}")
                            or {"type": "object"}}
    if t.description:
        tool["description"] = t.description
    return tool


def anthropic_tool_choice(s: common_pb2.SamplingParams, tools: bool) -> dict[str, Any]:
    """`tool_choice`, or {} for the API's default."""
    tc = s.tool_choice
    choice: dict[str, Any] = {}
    if tc.mode == T.TOOL_CHOICE_MODE_AUTO:
        choice = {"type": "auto"}
    elif tc.mode == T.TOOL_CHOICE_MODE_NONE:
        choice = {"type": "none"}
    elif tc.mode == T.TOOL_CHOICE_MODE_REQUIRED:
        choice = {"type": "any"}
    elif tc.mode == T.TOOL_CHOICE_MODE_TOOL:
        choice = {"type": "tool", "name": tc.tool_name}
    if tools and s.HasField("parallel_tool_calls") and not s.parallel_tool_calls:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice if tools else {}


def anthropic_prompt(model_id: str, msgs: Sequence[common_pb2.Message],
                     tools: Sequence[common_pb2.Tool],
                     sampling: common_pb2.SamplingParams) -> dict[str, Any]:
    """The prompt part of a Messages body (model, system, messages, tools, tool_choice):
    the whole body of `POST /v1/messages/count_tokens`. Raises WireError."""
    system, messages = anthropic_messages(msgs)
    body: dict[str, Any] = {"model": model_id, "messages": messages}
    if system:
        body["system"] = system
    if tools:
        body["tools"] = [anthropic_tool(t) for t in tools]
    choice = anthropic_tool_choice(sampling, bool(tools))
    if choice:
        body["tool_choice"] = choice
    return body


# ---- Gemini generateContent -------------------------------------------------------------


def gemini_contents(msgs: Sequence[common_pb2.Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, contents). Raises WireError."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name
    for m in msgs:
        if m.role in (T.ROLE_SYSTEM, T.ROLE_DEVELOPER):
            system.append(text_of(m))
            continue
        parts: list[dict[str, Any]]
        if m.role == T.ROLE_TOOL:
            role = "user"
            parts = [{"functionResponse": {
                "name": m.name or names.get(m.tool_call_id, ""),
                "response": gemini_response(text_of(m))}}]
        else:
            role = "model" if m.role == T.ROLE_ASSISTANT else "user"
            parts = [gemini_part(p) for p in m.content]
            parts = [p for p in parts if p.get("text", True)]
            for c in m.tool_calls:
                names[c.id] = c.name
                part: dict[str, Any] = {"functionCall": {
                    "name": c.name, "args": tool_args(c.arguments_json, "Gemini")}}
                if c.id.startswith(GEMINI_SIGNED):
                    part["thoughtSignature"] = c.id[len(GEMINI_SIGNED):]
                parts.append(part)
        append_turn(out, role, "parts", parts)
    return "\n\n".join(s for s in system if s), out


def gemini_response(text: str) -> dict[str, Any]:
    """functionResponse.response must be an object: a JSON object result as is, anything
    else under "result"."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def gemini_part(p: common_pb2.ContentPart) -> dict[str, Any]:
    if p.WhichOneof("part") == "text":
        return {"text": p.text}
    img = p.image
    if img.WhichOneof("source") == "url" and img.url.startswith("data:"):
        media, data = data_url(img.url)
        return {"inlineData": {"mimeType": media, "data": data}}
    if img.WhichOneof("source") == "url":
        return {"fileData": {"mimeType": img.media_type or "image/jpeg", "fileUri": img.url}}
    return {"inlineData": {"mimeType": img.media_type or "image/png",
                           "data": base64.b64encode(img.data).decode()}}


def gemini_function(t: common_pb2.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name}
    if t.description:
        fn["description"] = t.description
    schema = json.loads(t.parameters_json_schema or "{}")
    if schema:
        fn["parametersJsonSchema"] = schema
    return fn


def gemini_tool_config(tc: common_pb2.ToolChoice) -> dict[str, Any]:
    if tc.mode == T.TOOL_CHOICE_MODE_AUTO:
        return {"mode": "AUTO"}
    if tc.mode == T.TOOL_CHOICE_MODE_NONE:
        return {"mode": "NONE"}
    if tc.mode == T.TOOL_CHOICE_MODE_REQUIRED:
        return {"mode": "ANY"}
    if tc.mode == T.TOOL_CHOICE_MODE_TOOL:
        return {"mode": "ANY", "allowedFunctionNames": [tc.tool_name]}
    return {}


def gemini_prompt(msgs: Sequence[common_pb2.Message], tools: Sequence[common_pb2.Tool],
                  sampling: common_pb2.SamplingParams) -> dict[str, Any]:
    """The prompt part of a generateContent body (contents, systemInstruction, tools,
    toolConfig); the router adds generationConfig. Raises WireError."""
    system, contents = gemini_contents(msgs)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if tools:
        body["tools"] = [{"functionDeclarations": [gemini_function(t) for t in tools]}]
        config = gemini_tool_config(sampling.tool_choice)
        if config:
            body["toolConfig"] = {"functionCallingConfig": config}
    return body
