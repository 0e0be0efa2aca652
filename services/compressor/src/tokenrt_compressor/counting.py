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
from typing import cast

from tokenrt.v1 import common_pb2
from tokenrt_compressor.graph import digest
from tokenrt_counter.core import Accuracy, Counter, check_messages
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
        """One rewritten message (a stub, collapsed code, a summary), memoised by content
        in the counter's cache: rewrites are deterministic, so the next request that
        makes the same one pays a hash."""
        key = ("compressor.message", self.entry.name, digest(message))
        hit = self.counter.cache.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        tokens = self.counter.count_messages(self.entry, [message], []).messages[0][0]
        self.counter.cache.put(key, tokens)
        return tokens

    def text(self, text: str) -> int:
        return self.counter.count_text(self.entry, text)[0]

    def measure(self, messages: Sequence[common_pb2.Message],
                tools: Sequence[common_pb2.Tool]) -> Measured:
        """Per-message counts, memoised by message content in the counter's cache (a long
        context is re-sent every turn: only its new messages are counted), and the fixed
        part (tools, priming). Accuracy: exact when every part is; otherwise the error
        bound is the sum of the parts' bounds (at most one token per part above the
        counter's bound for the whole chat)."""
        if not messages:
            check_messages(messages, tools)  # raises the counter's MessageError
        per: list[int] = []
        parts: list[Accuracy] = []
        for m in messages:
            key = ("compressor.measure", self.entry.name, digest(m))
            hit = cast("tuple[int, Accuracy] | None", self.counter.cache.get(key))
            if hit is None:
                one = self.counter.count_messages(self.entry, [m], [])
                hit = (one.messages[0][0], one.accuracy)
                self.counter.cache.put(key, hit)
            tokens, accuracy = hit
            per.append(tokens)
            parts.append(accuracy)
        probe = messages[0]
        with_tools = self.counter.count_messages(self.entry, [probe], tools)
        fixed = with_tools.tools_tokens + with_tools.overhead_tokens
        parts.append(with_tools.accuracy)  # the probe's share is counted twice: conservative
        total = sum(per) + fixed
        inexact = [a for a in parts if not a.exact]
        if not inexact:
            return Measured(per, fixed, parts[-1])
        bound = sum(a.bound_tokens for a in inexact)
        return Measured(per, fixed, Accuracy(
            False, inexact[0].source, -(-bound * 10000 // max(total, 1)), bound,
            max(a.samples for a in inexact)))

    def total(self, messages: Sequence[common_pb2.Message],
              tools: Sequence[common_pb2.Tool]) -> int:
        return self.counter.count_messages(self.entry, messages, tools).total
