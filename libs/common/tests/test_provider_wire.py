"""The shared Anthropic / Gemini prompt conversion (the router's adapters and the counter's
count-tokens calls send these bodies; the router's wire tests check them end to end)."""

from __future__ import annotations

import pytest

from tokenrt.v1 import common_pb2 as c
from tokenrt_common import provider_wire as wire


def chat() -> list[c.Message]:
    return [c.Message(role=c.ROLE_SYSTEM, content=[c.ContentPart(text="Be brief.")]),
            c.Message(role=c.ROLE_USER, content=[c.ContentPart(text="Weather in Paris?")]),
            c.Message(role=c.ROLE_ASSISTANT, tool_calls=[c.ToolCall(
                id="call_1", name="weather", arguments_json='{"city": "Paris"}')]),
            c.Message(role=c.ROLE_TOOL, tool_call_id="call_1", content=[
                c.ContentPart(text='{"celsius": 21}')])]


TOOL = c.Tool(name="weather", description="Current weather",
              parameters_json_schema='{"type": "object", "properties": {"city": '
                                     '{"type": "string"}}}')


def test_anthropic_prompt_is_the_count_tokens_body() -> None:
    sampling = c.SamplingParams(tool_choice=c.ToolChoice(mode=c.TOOL_CHOICE_MODE_REQUIRED),
                                temperature=0.2)
    body = wire.anthropic_prompt("claude-sonnet-4-5", chat(), [TOOL], sampling)
    assert body == {
        "model": "claude-sonnet-4-5", "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1",
                                               "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": '{"celsius": 21}'}]}],
        "tools": [{"name": "weather", "description": "Current weather",
                   "input_schema": {"type": "object",
                                    "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any"}}  # no max_tokens, no sampling: count_tokens refuses them


def test_gemini_prompt() -> None:
    body = wire.gemini_prompt(chat(), [TOOL], c.SamplingParams())
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [t["role"] for t in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"] == [{"functionResponse": {
        "name": "weather", "response": {"celsius": 21}}}]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert "toolConfig" not in body and "generationConfig" not in body


def test_tool_arguments_that_are_not_json_are_the_callers_fault() -> None:
    bad = [c.Message(role=c.ROLE_ASSISTANT, tool_calls=[c.ToolCall(
        id="x", name="f", arguments_json="{not json")])]
    for convert in (wire.anthropic_messages, wire.gemini_contents):
        with pytest.raises(wire.WireError, match="arguments_json is not JSON"):
            convert(bad)
