"""The compressor's fast counting is the counter's counting: quicktok against tiktoken, and
one batched count against one count per message."""

from __future__ import annotations

import random

import pytest
from compressor_chats import ASSISTANT, TOOL, USER, call, ide_conversation, text
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenrt_pricing
from tokenrt.v1 import common_pb2
from tokenrt_compressor.counting import CounterMeter, QuickTokenizers
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.tokenizers import Tokenizers

ENCODINGS = ("o200k_base", "cl100k_base")
QUICK = QuickTokenizers()
REFERENCE = Tokenizers()
TRICKY = ["", " ", "\n\n\n", "<|endoftext|> and <|im_start|>", "héllo 世界 🎉\r\n\tdef f():",
          "lone \ud800 surrogate", "\udfff\ud83d", "x" * 5000, "١٢٣ ٤٥ 12345678901234567890",
          "    \n  \t\n" * 50, "Ｆｕｌｌ ｗｉｄｔｈ", "ñ" * 300 + "\u0301" * 7]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_quicktok_counts_what_tiktoken_counts(encoding: str) -> None:
    quick, reference = QUICK.exact(encoding), REFERENCE.exact(encoding)
    assert quick is not None and reference is not None
    chat, _ = ide_conversation(random.Random(5), files=20, turns=40, lines=30, asked=3)
    corpus = TRICKY + [p.text for m in chat for p in m.content] + [
        c.arguments_json for m in chat for c in m.tool_calls]
    assert [quick.count(t) for t in corpus] == [reference.count(t) for t in corpus]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_quicktok_counts_random_text_as_tiktoken(value: str) -> None:
    for encoding in ENCODINGS:
        quick, reference = QUICK.exact(encoding), REFERENCE.exact(encoding)
        assert quick is not None and reference is not None
        assert quick.count(value) == reference.count(value), encoding


def test_batched_measure_is_the_per_message_count(meter: CounterMeter) -> None:
    chat, _ = ide_conversation(random.Random(6), files=10, turns=30, lines=30, asked=2)
    chat.insert(3, common_pb2.Message(role=USER, content=[
        common_pb2.ContentPart(text="see"),
        common_pb2.ContentPart(image=common_pb2.ImagePart(url="https://x/a.png", width_px=512,
                                                          height_px=512))]))
    fast = CounterMeter(Counter(QUICK, CountCache(16 << 20)), meter.entry)
    for _ in range(2):  # cold, then from the memo
        measured = fast.measure(chat, [])
        assert measured.per_message == [
            meter.counter.count_messages(meter.entry, [m], []).messages[0][0] for m in chat]
        reference = meter.measure(chat, [])
        assert (measured.fixed, measured.accuracy) == (reference.fixed, reference.accuracy)
        assert not measured.accuracy.exact  # tool calls: the counter's bound is kept
        assert measured.digests == reference.digests


def test_measure_names_the_bad_message_by_its_index(meter: CounterMeter) -> None:
    chat = [text(USER, "a"), text(ASSISTANT, "b"), common_pb2.Message(role=TOOL),
            common_pb2.Message(role=ASSISTANT, tool_calls=[call("c1", "read", {})])]
    with pytest.raises(MessageError) as info:
        meter.measure(chat, [])
    assert info.value.field == "messages[2].tool_call_id"


def test_catalog_models_on_quicktok_encodings_are_exact() -> None:
    catalog = tokenrt_pricing.load()
    entry = catalog.resolve("gpt-4o").entry
    counted = Counter(QUICK, CountCache(1 << 20)).count_messages(entry, [text(USER, "hi")], [])
    assert counted.accuracy.exact and counted.accuracy.source == "tiktoken"
