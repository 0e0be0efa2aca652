"""The router's input bound is never below the counter's count (the counter's own code)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt.v1 import common_pb2, counter_pb2, router_pb2
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.tokenizers import Tokenizers
from tokenrt_pricing.catalog import load
from tokenrt_router.bound import MessageCounts, digests, input_bound

os.environ.setdefault("TIKTOKEN_CACHE_DIR", "/work/shared/tiktoken")
T = common_pb2
CATALOG = load()
# chunk_chars small: long texts are counted in pieces, as the service does.
COUNTER = Counter(Tokenizers(), CountCache(1 << 24), chunk_chars=64)
ROLES = [T.ROLE_SYSTEM, T.ROLE_USER, T.ROLE_ASSISTANT, T.ROLE_TOOL, T.ROLE_DEVELOPER]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400) | st.sampled_from(
    ["", " ", "aaaa" * 200, "def f(x):\n    return x * 2\n" * 20, "日本語のテキスト" * 30,
     "<|endoftext|><|fim_prefix|>", "🙂" * 50])


@st.composite
def messages(draw: st.DrawFn) -> list[common_pb2.Message]:
    out = []
    for _ in range(draw(st.integers(1, 5))):
        m = T.Message(role=draw(st.sampled_from(ROLES)),
                      content=[T.ContentPart(text=t) for t in draw(st.lists(TEXT, max_size=3))])
        if draw(st.booleans()):
            m.name = draw(st.text("abcxyz_-", min_size=1, max_size=20))
        if draw(st.booleans()):
            m.tool_call_id = draw(TEXT)
        for _ in range(draw(st.integers(0, 2))):
            m.tool_calls.add(id="c1", name=draw(st.text("abc_", min_size=1, max_size=10)),
                             arguments_json=draw(TEXT))
        out.append(m)
    return out


@settings(max_examples=300, deadline=None)
@given(msgs=messages(), model=st.sampled_from(["sim/gpt-4o-mini", "gpt-4o", "gpt-4.1",
                                                "gpt-3.5-turbo"]),
       schema=st.sampled_from(["", '{"type": "object", "properties": {"a": {"type": "string"}}}']))
def test_the_bound_is_at_least_the_counters_count(msgs: list[common_pb2.Message], model: str,
                                                   schema: str) -> None:
    entry = CATALOG.resolve(model).entry
    req = router_pb2.CompleteRequest(messages=msgs)
    if schema:
        req.sampling.response_format.type = T.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
        req.sampling.response_format.json_schema = schema
        req.sampling.response_format.schema_name = "answer"
    bound = input_bound(req, entry)
    try:
        counted = COUNTER.count_messages(entry, msgs, [], req.sampling).total
    except MessageError:  # a malformed chat: the counter refuses it, nothing is reserved
        return
    assert bound is not None and bound >= counted


def test_no_bound_where_the_counter_uses_a_formula_or_an_estimate() -> None:
    text = T.Message(role=T.ROLE_USER, content=[T.ContentPart(text="hi")])
    image = T.Message(role=T.ROLE_USER, content=[T.ContentPart(
        image=T.ImagePart(url="https://example.com/a.png"))])
    gpt = CATALOG.resolve("gpt-4o").entry
    assert input_bound(router_pb2.CompleteRequest(messages=[text]), gpt) == 3 + 3 + 4 + 2
    assert input_bound(router_pb2.CompleteRequest(messages=[text, image]), gpt) is None
    assert input_bound(router_pb2.CompleteRequest(
        messages=[text], tools=[T.Tool(name="f")]), gpt) is None
    estimated = next(e for e in CATALOG.entries() if e.tokenizer.startswith("estimate:"))
    assert input_bound(router_pb2.CompleteRequest(messages=[text]), estimated) is None


def _response(msgs: list[common_pb2.Message], entry) -> counter_pb2.CountMessagesResponse:  # type: ignore[no-untyped-def]
    counted = COUNTER.count_messages(entry, msgs, [])
    return counter_pb2.CountMessagesResponse(
        input_tokens=counted.total,
        messages=[counter_pb2.MessageTokens(index=i, tokens=t, image_tokens=img)
                  for i, (t, img) in enumerate(counted.messages)])


def test_large_messages_counted_before_are_bounded_by_their_count() -> None:
    """An IDE's request: the same files every time, then a new question; after one count
    the files are bounded exactly and only the question by its bytes."""
    entry = CATALOG.resolve("sim/gpt-4o-mini").entry
    files = [T.Message(role=T.ROLE_USER, content=[T.ContentPart(
        text=f"# file {f}.py\n" + "def handler(request):\n    return request.json()\n" * 40)])
        for f in range(5)]
    image = T.Message(role=T.ROLE_USER, content=[T.ContentPart(text="see " + "x" * 600),
                                                 T.ContentPart(image=T.ImagePart(
                                                     url="https://example.com/a.png",
                                                     width_px=512, height_px=512))])
    first = [*files, image, T.Message(role=T.ROLE_USER, content=[T.ContentPart(text="why?")])]
    counts = MessageCounts()
    assert input_bound(router_pb2.CompleteRequest(messages=first), entry) is None  # an image
    counts.learn(entry.name, digests(first), _response(first, entry))

    question = "And what does handler return when the body is empty? " * 3
    second = [*files, image, T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=question)])]
    req = router_pb2.CompleteRequest(messages=second)
    bound = input_bound(req, entry, counts, digests(second))
    exact = COUNTER.count_messages(entry, second, []).total
    assert bound is not None and exact <= bound <= exact + len(question) + 3 + 4
    # Another model's counts are not used.
    other = CATALOG.resolve("sim/gpt-4o").entry
    assert input_bound(req, other, counts, digests(second)) is None


@settings(max_examples=100, deadline=None)
@given(msgs=messages(), model=st.sampled_from(["gpt-4o", "claude-sonnet-4", "gemini-2.5-pro"]),
       n_images=st.integers(0, 2), with_tools=st.booleans())
def test_what_is_held_without_the_counter_is_at_least_its_count(
        msgs: list[common_pb2.Message], model: str, n_images: int, with_tools: bool) -> None:
    """With the counter down the router holds `without_counter`: never below what the
    counter would have said, also with images of unknown size, tools, estimated models."""
    from tokenrt_router.bound import without_counter
    entry = CATALOG.resolve(model).entry
    msgs[-1].content.extend(T.ContentPart(image=T.ImagePart(url=f"https://example.com/{i}.png"))
                            for i in range(n_images))
    tools = [T.Tool(name="read_file", description="Read a file of the workspace.",
                    parameters_json_schema='{"type": "object", "properties": {"path": '
                                    '{"type": "string"}}}')] if with_tools else []
    req = router_pb2.CompleteRequest(messages=msgs, tools=tools)
    try:
        counted = COUNTER.count_messages(entry, msgs, tools, req.sampling).total
    except MessageError:
        return
    assert without_counter(req, entry) >= counted
