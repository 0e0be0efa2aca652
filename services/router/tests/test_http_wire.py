"""OpenAI JSON ⇄ the router's messages, pure: request parsing and error mapping."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2

from tokenrt.v1 import common_pb2, router_pb2
from tokenrt_router import http_wire as wire
from tokenrt_router.refusal import Refusal

T = common_pb2


def test_a_full_request_translates_field_by_field() -> None:
    call = wire.parse_chat({
        "model": "sim/gpt-4o", "stream": True, "stream_options": {"include_usage": True},
        "temperature": 0.2, "top_p": 1, "max_completion_tokens": 99, "max_tokens": 5,
        "stop": ["\n\n"], "seed": 7, "user": "ada", "reasoning_effort": "low",
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": 1}}}],
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "see"},
                                         {"type": "image_url",
                                          "image_url": {"url": "https://x/y.png",
                                                        "detail": "low"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        "metadata": {"org_id": "evil"}, "org_id": "evil"})
    r = call.request
    assert call.stream and call.include_usage and call.model == "sim/gpt-4o"
    assert r.preferences.preferred_model == "sim/gpt-4o" and r.user_id == "ada"
    assert r.sampling.max_output_tokens == 99 and r.sampling.seed == 7
    assert r.sampling.temperature == pytest.approx(0.2) and list(r.sampling.stop_sequences) == ["\n\n"]
    assert r.sampling.reasoning_effort == T.REASONING_EFFORT_LOW
    assert r.sampling.tool_choice.mode == T.TOOL_CHOICE_MODE_TOOL
    assert r.sampling.response_format.schema_name == "x"
    assert r.tools[0].parameters_json_schema == '{"a": 1}'
    roles = [m.role for m in r.messages]
    assert roles == [T.ROLE_DEVELOPER, T.ROLE_USER, T.ROLE_ASSISTANT, T.ROLE_TOOL]
    assert r.messages[1].content[1].image.detail == T.IMAGE_DETAIL_LOW
    assert r.messages[2].tool_calls[0].id == "c1" and r.messages[3].tool_call_id == "c1"
    # Nothing of the tenant is in the request message at all.
    assert "evil" not in str(r)
    assert not wire.parse_chat({"model": "auto", "messages": [
        {"role": "user", "content": "x"}]}).request.preferences.preferred_model


@pytest.mark.parametrize("body,param", [
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": True},
     "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": float("nan")},
     "top_p"),
    ({"model": "", "messages": []}, "model"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 2**70}, "seed"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2**40},
     "max_tokens"),
    # Wrong JSON types of fields that are checked but not passed on, or not supported.
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "reasoning_effort": ["low"]}, "reasoning_effort"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": "x"},
     "metadata"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "store": "yes"}, "store"),
    # Parameters that would change the answer are refused, not silently dropped.
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"50256": -100}},
     "logit_bias"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "prediction": {"type": "content", "content": "x"}}, "prediction"),
])
def test_bad_fields_are_named(body: dict, param: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.parse_chat(body)
    assert info.value.param == param


def test_refusals_map_to_openai_statuses_and_retry_after() -> None:
    reset = timestamp_pb2.Timestamp(seconds=1_000_100)
    deny = Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, T.ERROR_REASON_BUDGET_EXCEEDED, "over",
                   T.ErrorDetail(reset_at=reset))
    e = wire.refusal_error(deny, now=1_000_000.5)
    assert e.status == 429 and e.headers["Retry-After"] == "100"
    assert e.body["error"] == {"message": "over", "type": "insufficient_quota", "param": None,
                               "code": "budget_exceeded"}
    throttle = wire.refusal_error(Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                          T.ERROR_REASON_BUDGET_THROTTLED, "slow down",
                                          T.ErrorDetail(retry_after_ms=2500)))
    assert throttle.headers["Retry-After"] == "3" and throttle.body["error"]["type"] == "requests"
    provider = wire.refusal_error(Refusal(grpc.StatusCode.UNAVAILABLE,
                                          T.ERROR_REASON_PROVIDER_TIMEOUT, "slow"))
    assert provider.status == 502 and provider.body["error"]["code"] == "provider_timeout"
    bad = wire.refusal_error(Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                                     T.ERROR_REASON_INVALID_ARGUMENT, "no",
                                     T.ErrorDetail(field="sampling.max_output_tokens")))
    assert bad.status == 400 and bad.body["error"]["param"] == "max_tokens"


def test_stream_events_become_openai_chunks() -> None:
    w = wire.ChunkWriter("rid", include_usage=True, created=5)
    R = router_pb2
    out = w.event(R.StreamCompleteResponse(start=R.CompletionStart(served_model="sim/m")))
    out += w.event(R.StreamCompleteResponse(delta=R.CompletionDelta(text="Hi")))
    out += w.event(R.StreamCompleteResponse(delta=R.CompletionDelta(tool_calls=[
        R.ToolCallDelta(index=0, id="c", name="f", arguments_json="{")])))
    out += w.event(R.StreamCompleteResponse(done=R.Completion(
        finish_reason=T.FINISH_REASON_TOOL_CALLS,
        usage=T.Usage(input_tokens=10, cached_input_tokens=4, output_tokens=3))))
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in out] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"},
        {"tool_calls": [{"index": 0, "id": "c", "type": "function",
                         "function": {"arguments": "{", "name": "f"}}]}, {}, None]
    assert out[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in out[:-1]) and out[-1]["usage"] == {
        "prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 0}}
    assert {c["id"] for c in out} == {"chatcmpl-rid"} and {c["model"] for c in out} == {"sim/m"}
    assert wire.sse(out[1]).startswith(b"data: {") and wire.sse(out[1]).endswith(b"}\n\n")
