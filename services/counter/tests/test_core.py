"""The pure counting core: exact agreement with tiktoken, chunking, cache, framing, images."""

from __future__ import annotations

import base64
import json
import struct

import pytest
import tiktoken
from counter_corpus import CODE_FILE, JARGON, TEXTS, WEATHER, WEATHER_TOOL, msg, png
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenrt_pricing
from tokenrt.v1 import common_pb2 as c
from tokenrt_counter import chunks, images
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.features import of_text
from tokenrt_counter.tokenizers import Tokenizers

CATALOG = tokenrt_pricing.load()
U, A, T = c.ROLE_USER, c.ROLE_ASSISTANT, c.ROLE_TOOL
TOKENIZERS = Tokenizers()
ENCODINGS = ["o200k_base", "cl100k_base"]


def tiktoken_count(encoding: str, text: str) -> int:
    return len(tiktoken.get_encoding(encoding).encode(text, disallowed_special=()))


def small_chunk_counter() -> Counter:
    # Tiny chunks so that every test text is cut, cached and summed.
    return Counter(TOKENIZERS, CountCache(1 << 20), chunk_chars=64)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", [*TEXTS, CODE_FILE], ids=range(len(TEXTS) + 1))
def test_counts_equal_tiktoken_on_the_corpus(encoding: str, text: str) -> None:
    counter = small_chunk_counter()
    encoder = TOKENIZERS.exact(encoding)
    assert encoder is not None
    want = tiktoken_count(encoding, text)
    assert counter.count_exact(encoder, text) == want
    assert counter.count_exact(encoder, text) == want  # again, from the cache


def test_special_token_lookalikes_count_as_text() -> None:
    encoder = TOKENIZERS.exact("o200k_base")
    assert encoder is not None
    # As one special token it would be 1; as typed text it is several ordinary tokens.
    assert encoder.count("<|endoftext|>") == 7


def test_lone_surrogates_count_as_replacement_characters() -> None:
    counter = small_chunk_counter()
    encoder = TOKENIZERS.exact("o200k_base")
    assert encoder is not None
    text = "abc\ud800def" + "\udfff" * 300
    assert counter.count_exact(encoder, text) == tiktoken_count(
        "o200k_base", text.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd"))


line = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(line, min_size=1, max_size=60), st.sampled_from(ENCODINGS))
def test_chunked_counts_equal_tiktoken_on_random_text(lines: list[str], encoding: str) -> None:
    text = "\n".join(lines)
    counter = small_chunk_counter()
    encoder = TOKENIZERS.exact(encoding)
    assert encoder is not None
    assert sum(encoder.count(p) for p in chunks.split(text, 16)) == tiktoken_count(encoding,
                                                                                  text)
    assert counter.count_exact(encoder, text) == tiktoken_count(encoding, text)


def test_a_repeated_chunk_costs_a_lookup_not_a_bpe_pass() -> None:
    class Spy:
        name = "o200k_base"

        def __init__(self) -> None:
            self.calls = 0
            self.inner = TOKENIZERS.exact("o200k_base")

        def count(self, text: str) -> int:
            self.calls += 1
            return self.inner.count(text)  # type: ignore[union-attr]

    counter = Counter(TOKENIZERS, CountCache(1 << 20), chunk_chars=1024)
    spy = Spy()
    first = counter.count_exact(spy, CODE_FILE)
    calls = spy.calls
    assert calls > 1
    assert counter.count_exact(spy, CODE_FILE) == first
    assert spy.calls == calls  # every chunk was a cache hit
    edited = CODE_FILE + "\nprint('one more line')\n"
    assert counter.count_exact(spy, edited) == tiktoken_count("o200k_base", edited)
    assert spy.calls == calls + 1  # only the changed last chunk was counted


def test_a_repeated_message_costs_a_lookup_and_keeps_every_answer() -> None:
    """IDE requests resend the same messages: a message seen before is one serialisation,
    one hash and one lookup (no text is read or counted), and every answer stays the one
    a fresh counter gives: per model (the image formula differs), per message index in
    errors, and for an estimated model under its current fit."""
    counter = Counter(TOKENIZERS, CountCache(1 << 22))
    files = [msg(U, f"# file {i}\n{CODE_FILE}") for i in range(3)]
    image = c.Message(role=U, content=[c.ContentPart(image=c.ImagePart(
        data=png(1024, 1024), media_type="image/png", detail=c.IMAGE_DETAIL_HIGH))])
    chat = [*files, image, msg(U, "why?")]
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4", "claude-sonnet-4-5"):
        entry = CATALOG.resolve(model).entry
        fresh = Counter(TOKENIZERS, CountCache(1 << 22)).count_messages(entry, chat, [])
        assert counter.count_messages(entry, chat, []) == fresh
        counted = counter.cache.misses
        again = counter.count_messages(entry, [*chat[:-1], msg(U, "and now?")], [])
        # one miss: the new question; the files and the image were looked up
        assert counter.cache.misses == counted + 1
        assert again.messages[:-1] == fresh.messages[:-1]
    mini = counter.count_messages(CATALOG.resolve("gpt-4o-mini").entry, [image], [])
    assert mini.messages[0][1] == 2833 + 4 * 5667  # not gpt-4o's 765 from the cache
    with pytest.raises(MessageError) as err:
        counter.count_messages(CATALOG.resolve("gpt-4o").entry,
                               [*files, c.Message(role=U, content=[c.ContentPart()])], [])
    assert err.value.field == "messages[3].content[0]"


def test_cache_is_memory_bounded() -> None:
    cache = CountCache(max_bytes=100 * chunks.ENTRY_BYTES)
    for i in range(1000):
        cache.put(("o200k_base", i), i)
    assert len(cache) == 100
    assert cache.get(("o200k_base", 999)) == 999
    assert cache.get(("o200k_base", 0)) is None


@pytest.mark.parametrize(("model", "jargon", "weather"), [
    ("gpt-3.5-turbo", 129, 105), ("gpt-4", 129, 105), ("gpt-4-0613", 129, 105),
    ("gpt-4o", 124, 101), ("gpt-4o-mini", 124, 101), ("gpt-4o-2024-08-06", 124, 101),
])
def test_framing_matches_the_cookbook(model: str, jargon: int, weather: int) -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    entry = CATALOG.resolve(model).entry
    got = counter.count_messages(entry, JARGON, [])
    assert got.total == jargon and got.accuracy.exact
    assert got.overhead_tokens == 3 and got.tools_tokens == 0
    tooled = counter.count_messages(entry, WEATHER, [WEATHER_TOOL])
    assert tooled.total == weather and tooled.accuracy.exact


def test_nested_tool_schemas_and_tool_calls_are_estimates() -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    entry = CATALOG.resolve("gpt-4o").entry
    nested = c.Tool(name="f", parameters_json_schema=json.dumps(
        {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "object"}}}}))
    got = counter.count_messages(entry, WEATHER, [nested])
    assert not got.accuracy.exact and got.accuracy.bound_tokens > 0
    call = c.Message(role=A, tool_calls=[c.ToolCall(id="call_1", name="get_current_weather",
                                                    arguments_json='{"location": "Paris"}')])
    result = c.Message(role=T, tool_call_id="call_1", content=[c.ContentPart(text="18C")])
    got = counter.count_messages(entry, [*WEATHER, call, result], [WEATHER_TOOL])
    assert not got.accuracy.exact
    assert got.total == sum(t for t, _ in got.messages) + got.tools_tokens + 3


@pytest.mark.parametrize(("messages", "tools", "field"), [
    ([], [], "messages"),
    ([c.Message(content=[c.ContentPart(text="x")])], [], "messages[0].role"),
    ([c.Message(role=T, content=[c.ContentPart(text="x")])], [], "messages[0].tool_call_id"),
    ([c.Message(role=U, content=[c.ContentPart(image=c.ImagePart(data=b"x"))])], [],
     "messages[0].content[0].image.media_type"),
    ([msg(U, "x")], [c.Tool(name="f", parameters_json_schema="{nope")],
     "tools[0].parameters_json_schema"),
    ([msg(U, "x")], [c.Tool(description="no name")], "tools[0].name"),
])
def test_malformed_chats_name_the_field(messages: list, tools: list, field: str) -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    with pytest.raises(MessageError) as err:
        counter.count_messages(CATALOG.resolve("gpt-4o").entry, messages, tools)
    assert err.value.field == field


def test_openai_image_formula_documented_examples() -> None:
    assert images.openai_tokens("gpt-4o", 1024, 1024, "high") == 765
    assert images.openai_tokens("gpt-4o", 2048, 4096, "high") == 1105
    assert images.openai_tokens("gpt-4o", 4096, 8192, "low") == 85
    assert images.openai_tokens("gpt-4o-mini", 1024, 1024, "high") == 2833 + 4 * 5667
    assert images.openai_tokens("gpt-4.1-mini", 1024, 1024, "high") == 1659  # 1024 * 1.62


def test_image_sizes_from_headers() -> None:
    assert images.size_from_bytes(png(640, 480)) == (640, 480)
    assert images.size_from_bytes(b"GIF89a" + struct.pack("<HH", 33, 17)) == (33, 17)
    jpeg = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"\x00\x00"
            + b"\xff\xc0" + struct.pack(">HBHH", 11, 8, 300, 500) + b"\x03")
    assert images.size_from_bytes(jpeg) == (500, 300)
    url = "data:image/png;base64," + base64.b64encode(png(512, 512)).decode()
    assert images.size_from_url(url) == (512, 512)
    assert images.size_from_url("https://example.com/cat.png") is None


def test_image_in_a_chat() -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    entry = CATALOG.resolve("gpt-4o").entry
    high = c.Message(role=U, content=[
        c.ContentPart(text="What is this?"),
        c.ContentPart(image=c.ImagePart(data=png(1024, 1024), media_type="image/png",
                                        detail=c.IMAGE_DETAIL_HIGH))])
    got = counter.count_messages(entry, [high], [])
    assert got.messages[0][1] == 765 and got.accuracy.exact
    unknown = c.Message(role=U, content=[c.ContentPart(image=c.ImagePart(
        url="https://example.com/x.png"))])
    got = counter.count_messages(entry, [unknown], [])
    assert not got.accuracy.exact and got.messages[0][1] == 85 + 8 * 170  # upper bound


def test_features_partition_the_characters() -> None:
    text = "Hello 世界 123 ```\nx = 1\n``` !"
    f = of_text(text)
    assert f.latin + f.cjk + f.code + f.digit + f.whitespace + f.other == len(text)
    assert f.cjk == 2 and f.digit == 3 and f.code > 0


# ---- packaged open tokenizers ---------------------------------------------------------

OPEN = ["hf:qwen/qwen3", "hf:meta-llama/llama-3", "hf:deepseek-ai/deepseek-v4"]


def test_qwen_agrees_with_a_second_independent_packaging() -> None:
    import quicktok  # ships its own conversion of the Qwen vocabulary

    reference = quicktok.get_encoding("qwen3")
    qwen = TOKENIZERS.exact("hf:qwen/qwen3")
    assert qwen is not None and qwen.source == "tokenizer"
    for text in [*TEXTS, CODE_FILE]:
        assert qwen.count(text) == len(reference.encode_ordinary(text)), text[:40]


def test_llama3_known_ids_and_special_lookalikes() -> None:
    import quicktok

    llama = TOKENIZERS.exact("hf:meta-llama/llama-3")
    assert llama is not None
    assert quicktok.get_encoding("llama3").encode_ordinary("Hello world") == [9906, 1917]
    assert llama.count("Hello world") == 2
    assert llama.count("<|begin_of_text|>") > 1  # typed text, not the BOS token


def test_deepseek_special_lookalikes_count_as_text() -> None:
    deepseek = TOKENIZERS.exact("hf:deepseek-ai/deepseek-v4")
    assert deepseek is not None
    assert deepseek.count("<｜begin▁of▁sentence｜>") > 3
    assert deepseek.count("") == 0


@pytest.mark.parametrize("tokenizer", ["hf:qwen/qwen3", "hf:meta-llama/llama-3"])
def test_open_tokenizers_split_exactly(tokenizer: str) -> None:
    encoder = TOKENIZERS.exact(tokenizer)
    assert encoder is not None
    counter = small_chunk_counter()
    for text in [*TEXTS, CODE_FILE]:
        assert counter.count_exact(encoder, text) == encoder.count(text), text[:40]


@pytest.mark.parametrize("model", ["llama-3.3-70b", "qwen3-coder-480b", "deepseek-v4-pro"])
def test_open_models_count_text_exactly_and_framing_as_estimate(model: str) -> None:
    counter = Counter(TOKENIZERS, CountCache(1 << 20))
    entry = CATALOG.resolve(model).entry
    tokens, accuracy = counter.count_text(entry, "Hello, world!")
    assert accuracy.exact and accuracy.source == "tokenizer" and tokens > 0
    chat = counter.count_messages(entry, JARGON, [])
    assert not chat.accuracy.exact and chat.accuracy.source == "tokenizer"
    assert 0 < chat.accuracy.bound_tokens < chat.total


@settings(max_examples=100, deadline=None)
@given(st.lists(line, min_size=1, max_size=60),
       st.sampled_from(["hf:qwen/qwen3", "hf:meta-llama/llama-3"]))
def test_open_tokenizers_split_exactly_on_random_text(lines: list[str], tokenizer: str) -> None:
    encoder = TOKENIZERS.exact(tokenizer)
    assert encoder is not None
    text = "\n".join(lines)
    assert small_chunk_counter().count_exact(encoder, text) == encoder.count(text)


def cookbook_num_tokens(messages: list[dict[str, str]], encoding: str) -> int:
    """`num_tokens_from_messages` of OpenAI's cookbook, transcribed (gpt-4o / gpt-4 branch)."""
    enc = tiktoken.get_encoding(encoding)
    num_tokens = 0
    for message in messages:
        num_tokens += 3  # tokens_per_message
        for key, value in message.items():
            num_tokens += len(enc.encode(value, disallowed_special=()))
            if key == "name":
                num_tokens += 1  # tokens_per_name
    return num_tokens + 3  # every reply is primed with <|start|>assistant<|message|>


chat_st = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]),
                             st.text(max_size=300), st.one_of(st.just(""), line)),
                   min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(chat_st, st.sampled_from([("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")]))
def test_chat_framing_equals_the_cookbook_on_random_chats(chat: list, model: tuple) -> None:
    roles = {"system": c.ROLE_SYSTEM, "user": c.ROLE_USER, "assistant": c.ROLE_ASSISTANT}
    name_ok = [(r, t, n.replace("\x00", "")) for r, t, n in chat]
    messages = [c.Message(role=roles[r], content=[c.ContentPart(text=t)], name=n)
                for r, t, n in name_ok]
    reference = [{"role": r, "content": t, **({"name": n} if n else {})} for r, t, n in name_ok]
    got = Counter(TOKENIZERS, CountCache(1 << 20), chunk_chars=64).count_messages(
        CATALOG.resolve(model[0]).entry, messages, [])
    assert got.total == cookbook_num_tokens(reference, model[1])
    assert got.total == sum(t for t, _ in got.messages) + got.tools_tokens + got.overhead_tokens
