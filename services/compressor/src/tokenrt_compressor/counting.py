"""Counting through the counter's own library code (tokenrt_counter), in-process.

Why not a gRPC call to the counter: a compression needs the count of every message once,
and of every rewritten message (stubs, collapsed code, summaries) again, often many times
in one request; one round trip costs about 1 ms, so the <100 ms target would be spent on
round trips. The counter's `Counter` is pure and thread-safe, and its content-addressed
chunk cache makes a message seen before cost one hash. Same code, same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenrt.v1 import common_pb2
from tokenrt_counter.core import Accuracy, Counter
from tokenrt_pricing import ModelEntry


@dataclass
class Measured:
    per_message: list[int]
    fixed: int  # tool definitions + reply priming (+ response format)
    accuracy: Accuracy


class CounterMeter:
    """A core.Meter for one model."""

    def __init__(self, counter: Counter, entry: ModelEntry) -> None:
        self.counter = counter
        self.entry = entry

    def tokens(self, message: common_pb2.Message) -> int:
        return self.counter.count_messages(self.entry, [message], []).messages[0][0]

    def text(self, text: str) -> int:
        return self.counter.count_text(self.entry, text)[0]

    def measure(self, messages: Sequence[common_pb2.Message],
                tools: Sequence[common_pb2.Tool]) -> Measured:
        result = self.counter.count_messages(self.entry, messages, tools)
        return Measured([t for t, _ in result.messages],
                        result.tools_tokens + result.overhead_tokens, result.accuracy)

    def total(self, messages: Sequence[common_pb2.Message],
              tools: Sequence[common_pb2.Tool]) -> int:
        return self.counter.count_messages(self.entry, messages, tools).total
