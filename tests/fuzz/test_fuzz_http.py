"""Bad input to the router's OpenAI-compatible HTTP endpoint (/v1/chat/completions).

Bodies with the OpenAI field names holding values of any JSON type, messages and tools of
the wrong shape, bodies that are not JSON or not UTF-8, truncated JSON, and a body over
the size limit, sent with a valid key to a router of our own. Target: no 5xx, and every
error is OpenAI's error object `{"error": {"message", "type", "param", "code"}}` with a
message. The router is still SERVING afterwards.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest
from fuzz_procs import KeyedRouter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("TOKENRT_FUZZ_EXAMPLES", "12")) * 5
HTTP_FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck),
                     derandomize="TOKENRT_FUZZ_EXAMPLES" not in os.environ)

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=False), st.text(max_size=30),
                     st.sampled_from(["", "user", "sim/gpt-4o-mini", "gpt-4o", "auto",
                                      "function", "json_schema", "\x00", "😀" * 40]))
JSON = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
FIELDS = ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
          "stream", "stream_options", "stop", "n", "seed", "tools", "tool_choice",
          "response_format", "presence_penalty", "frequency_penalty", "user",
          "parallel_tool_calls", "reasoning_effort", "logprobs", "metadata"]
ROLES = st.sampled_from(["system", "user", "assistant", "tool", "developer", "robot", ""])
CONTENT = st.one_of(JSON, st.text(max_size=50), st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "?"]), "text": JSON,
     "image_url": JSON})))
MESSAGE = st.fixed_dictionaries({"role": st.one_of(ROLES, JSON)},
                                optional={"content": CONTENT, "tool_calls": JSON,
                                          "tool_call_id": JSON, "name": JSON})
VALID_ISH = st.fixed_dictionaries(
    {"model": st.sampled_from(["sim/gpt-4o-mini", "sim/gpt-4o"]),
     "messages": st.lists(MESSAGE, min_size=0, max_size=4)},
    optional={f: JSON for f in FIELDS if f not in ("model", "messages")})
BODIES = st.one_of(
    VALID_ISH.map(lambda b: json.dumps(b).encode()),
    st.dictionaries(st.sampled_from(FIELDS), JSON).map(lambda b: json.dumps(b).encode()),
    JSON.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=200),
    VALID_ISH.map(lambda b: json.dumps(b).encode()).flatmap(
        lambda raw: st.integers(0, max(0, len(raw) - 1)).map(lambda n: raw[:n])),
    st.sampled_from([b"", b"{", b'{"model": "sim/gpt-4o-mini", "messages": [}',
                     b'{"messages": "\xff\xfe"}', b"\xef\xbb\xbf{}", b"[]", b"null",
                     b'{"model": 1e999}', b'{"max_tokens": 99999999999999999999999}']),
)


def post(router: KeyedRouter, body: bytes, content_type: str = "application/json",
         timeout: float = 60) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        f"{router.http_base}/chat/completions", data=body, method="POST",
        headers={"Authorization": f"Bearer {router.key}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read(), reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def check(status: int, data: bytes, content_type: str, body: bytes) -> None:
    assert status < 500, f"{status} for {body[:200]!r}: {data[:300]!r}"
    if status < 400:
        return
    error: Any = json.loads(data).get("error")
    assert isinstance(error, dict), data
    assert isinstance(error.get("message"), str) and error["message"], data
    assert isinstance(error.get("type"), str) and error["type"], data
    assert "param" in error and "code" in error, data


@HTTP_FUZZ
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", ""]))
# Found by this test: an array or object where a name is expected.
@example(body=b'{"model": "sim/gpt-4o-mini", "messages": [{"role": []}]}',
         content_type="application/json")
@example(body=b'{"model": "sim/gpt-4o-mini", "messages": [{"role": "user", "content": "a"}],'
              b' "response_format": {"type": {}}}', content_type="application/json")
def test_chat_completions_refuses_bad_bodies_with_openai_errors(
    fuzz_router: KeyedRouter, body: bytes, content_type: str,
) -> None:
    check(*post(fuzz_router, body, content_type), body)


def test_a_body_over_the_limit_is_413_not_a_crash(fuzz_router: KeyedRouter) -> None:
    body = b'{"model": "sim/gpt-4o-mini", "messages": [{"role": "user", "content": "' + \
        b"a" * (17 * 1024 * 1024) + b'"}]}'
    status, data, _ = post(fuzz_router, body)
    assert status == 413, (status, data[:300])
    check(status, data, "", body[:100])
    status, _, _ = post(fuzz_router, json.dumps({
        "model": "sim/gpt-4o-mini", "max_tokens": 8,
        "messages": [{"role": "user", "content": "still there?"}]}).encode())
    assert status == 200


@pytest.mark.parametrize("path,method", [("/chat/completions", "GET"), ("/nope", "POST"),
                                         ("/models/%00", "GET"), ("/usage?since=-5x", "GET")])
def test_other_paths_and_methods_answer_4xx_openai_errors(
    fuzz_router: KeyedRouter, path: str, method: str,
) -> None:
    request = urllib.request.Request(f"{fuzz_router.http_base}{path}", method=method,
                                     headers={"Authorization": f"Bearer {fuzz_router.key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, data = reply.status, reply.read()
    except urllib.error.HTTPError as err:
        status, data = err.code, err.read()
    assert 400 <= status < 500, (status, data[:300])
    check(status, data, "", path.encode())
