"""Counting through the counter's own library code (tokenrt_counter), in-process.

Why not a gRPC call to the counter: a compression needs the count of every message once,
and of every rewritten message (stubs, collapsed code, summaries) again, often many times
in one request; one round trip costs about 1 ms, so the <100 ms target would be spent on
round trips. The counter's `Counter` is pure and thread-safe, and its content-addressed
chunk cache makes a message seen before cost one hash. Same code, same numbers.

First-request speed: the counter counts o200k_base and cl100k_base with quicktok (token
ids equal to tiktoken's, several times less CPU). The messages of a request are counted
in one call to the counter where the count is exact (no tool calls, no images), one call
per message otherwise (to keep each one's bound).
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
    digests: list[str]  # graph.digest of each message, for core.compress to reuse


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

    def tokens_many(self, messages: Sequence[common_pb2.Message]) -> list[int]:
        """`tokens` of each message, those not memoised counted in one call."""
        keys = [("compressor.message", self.entry.name, digest(m)) for m in messages]
        out = [cast("int | None", self.counter.cache.get(k)) for k in keys]
        todo = [i for i, n in enumerate(out) if n is None]
        if todo:
            counted = self.counter.count_messages(self.entry, [messages[i] for i in todo], [])
            for i, (tokens, _) in zip(todo, counted.messages, strict=True):
                out[i] = tokens
                self.counter.cache.put(keys[i], tokens)
        return cast("list[int]", out)

    def text(self, text: str) -> int:
        return self.counter.count_text(self.entry, text)[0]

    def measure(self, messages: Sequence[common_pb2.Message],
                tools: Sequence[common_pb2.Tool]) -> Measured:
        """Per-message counts, memoised by message content in the counter's cache (a long
        context is re-sent every turn: only its new messages are counted), and the fixed
        part (tools, priming). Accuracy: exact when every part is; otherwise the error
        bound is the sum of the parts' bounds (at most one token per part above the
        counter's bound for the whole chat)."""
        check_messages(messages, tools)  # error fields index the whole request
        cache = self.counter.cache
        digests = [digest(m) for m in messages]
        keys = [("compressor.measure", self.entry.name, d) for d in digests]
        per = [0] * len(messages)
        parts: list[Accuracy] = []
        plain: list[int] = []
        single: list[int] = []
        for i, key in enumerate(keys):
            hit = cast("tuple[int, Accuracy] | None", cache.get(key))
            if hit is not None:
                per[i] = hit[0]
                parts.append(hit[1])
            elif messages[i].tool_calls or any(p.HasField("image") for p in messages[i].content):
                single.append(i)
            else:
                plain.append(i)
        if plain:  # one call; when it is exact, so is each of its messages
            batch = self.counter.count_messages(self.entry, [messages[i] for i in plain], [])
            if batch.accuracy.exact:
                for i, (tokens, _) in zip(plain, batch.messages, strict=True):
                    per[i] = tokens
                    cache.put(keys[i], (tokens, batch.accuracy))
                parts.append(batch.accuracy)
            else:
                single.extend(plain)
        for i in single:
            one = self.counter.count_messages(self.entry, [messages[i]], [])
            per[i] = one.messages[0][0]
            cache.put(keys[i], (per[i], one.accuracy))
            parts.append(one.accuracy)
        with_tools = self.counter.count_messages(self.entry, [messages[0]], tools)
        fixed = with_tools.tools_tokens + with_tools.overhead_tokens
        parts.append(with_tools.accuracy)  # the probe's share is counted twice: conservative
        total = sum(per) + fixed
        inexact = [a for a in parts if not a.exact]
        if not inexact:
            return Measured(per, fixed, parts[-1], digests)
        bound = sum(a.bound_tokens for a in inexact)
        return Measured(per, fixed, Accuracy(
            False, inexact[0].source, -(-bound * 10000 // max(total, 1)), bound,
            max(a.samples for a in inexact)), digests)

    def total(self, messages: Sequence[common_pb2.Message],
              tools: Sequence[common_pb2.Tool]) -> int:
        return self.counter.count_messages(self.entry, messages, tools).total
