"""The compressor's batched counting: one batched count equals one count per message
(the quicktok-against-tiktoken checks live in the counter's tests)."""

from __future__ import annotations

import random

import pytest
from compressor_chats import ASSISTANT, TOOL, USER, call, ide_conversation, text

import tokenrt_pricing
from tokenrt.v1 import common_pb2
from tokenrt_compressor.counting import CounterMeter
from tokenrt_counter.chunks import CountCache
from tokenrt_counter.core import Counter, MessageError
from tokenrt_counter.tokenizers import Tokenizers

TOKENIZERS = Tokenizers()


def test_batched_measure_is_the_per_message_count(meter: CounterMeter) -> None:
    chat, _ = ide_conversation(random.Random(6), files=10, turns=30, lines=30, asked=2)
    chat.insert(3, common_pb2.Message(role=USER, content=[
        common_pb2.ContentPart(text="see"),
        common_pb2.ContentPart(image=common_pb2.ImagePart(url="https://x/a.png", width_px=512,
                                                          height_px=512))]))
    fast = CounterMeter(Counter(TOKENIZERS, CountCache(16 << 20)), meter.entry)
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
    counted = Counter(TOKENIZERS, CountCache(1 << 20)).count_messages(entry, [text(USER, "hi")], [])
    assert counted.accuracy.exact and counted.accuracy.source == "tiktoken"
