"""An upper bound of a prompt's input tokens, made without the counter (pure).

The router plans and reserves with it while the counter counts (pipeline.py, "speculative
reserve"). It follows the counter's own rules (tokenrt_counter.core) for the models it
counts exactly with a tiktoken encoding: a byte-level BPE token covers at least one byte,
so a text's tokens are at most its UTF-8 bytes; each message adds OpenAI's framing (3
tokens, 1 more for a name), the reply is primed with 3, a tool call's name and arguments
add 3. Where the counter uses a formula or a calibrated estimate (images, tool
definitions, models without a public tokenizer) there is no bound here: None.

A large message the counter has counted before (an IDE resends the same files with every
question) is bounded by that exact count instead (`MessageCounts`: the counter's
per-message answer, by model and the message's digest, the counter's own cache key), so
only the new text is bounded by its bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from tokenrt.v1 import common_pb2, counter_pb2, router_pb2
from tokenrt_counter import images
from tokenrt_counter.client import MIN_BYTES, message_digest
from tokenrt_counter.core import REPLY_PRIMING, ROLES, TOKENS_PER_MESSAGE, TOKENS_PER_NAME
from tokenrt_counter.tokenizers import TIKTOKEN
from tokenrt_pricing.model import ModelEntry

# (model, message digest) counts remembered (about 100 bytes each).
MAX_REMEMBERED = 50_000


class MessageCounts:
    """The counter's exact counts of large messages, by model and digest (an LRU)."""

    def __init__(self, max_items: int = MAX_REMEMBERED) -> None:
        self._counts: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._max = max_items

    def get(self, model: str, digest: bytes) -> int | None:
        n = self._counts.get((model, digest))
        if n is not None:
            self._counts.move_to_end((model, digest))
        return n

    def learn(self, model: str, digests: Sequence[bytes],
              count: counter_pb2.CountMessagesResponse) -> None:
        """Remember the per-message counts of `count`, the counter's answer for messages
        whose digests (`digests`, b"" for small ones) are given in order."""
        for m in count.messages:
            d = digests[m.index] if 0 <= m.index < len(digests) else b""
            if d:
                self._counts[(model, d)] = m.tokens
                self._counts.move_to_end((model, d))
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)


def digests(messages: Sequence[common_pb2.Message]) -> list[bytes]:
    """The counter's digest of each large message (b"" for the small ones, whose bytes
    bound them closely enough)."""
    return [message_digest(m) if m.ByteSize() >= MIN_BYTES else b"" for m in messages]


def bounded(req: router_pb2.CompleteRequest, entry: ModelEntry) -> bool:
    """Whether the counter counts `req` on `entry` by rules a byte count bounds (a tiktoken
    model, no tool definitions; images are known only from earlier counts)."""
    return entry.tokenizer in TIKTOKEN and not req.tools


def input_bound(req: router_pb2.CompleteRequest, entry: ModelEntry,
                counts: MessageCounts | None = None,
                message_digests: Sequence[bytes] = ()) -> int | None:
    """At least the counter's `input_tokens` for `req` on `entry`; None when the counter's
    rules for it are not a byte count (then only the counter knows). `counts` and the
    messages' `message_digests`: counts of messages the counter has counted before."""
    if not bounded(req, entry):
        return None
    total = REPLY_PRIMING
    schema = req.sampling.response_format
    if schema.json_schema:
        total += _bytes(schema.json_schema) + _bytes(schema.schema_name)
    for i, m in enumerate(req.messages):
        d = message_digests[i] if i < len(message_digests) else b""
        n = counts.get(entry.name, d) if counts is not None and d else None
        if n is None:
            n = _message_bound(m)
        if n is None:
            return None
        total += n
    return total


def without_counter(req: router_pb2.CompleteRequest, entry: ModelEntry,
                    counts: MessageCounts | None = None) -> int:
    """What to hold for `req`'s prompt when the counter cannot be asked: `input_bound`
    where it has one, else the request's bytes (a token covers at least one byte of text)
    and, for each image, the counter's estimate for an image of unknown size."""
    most = input_bound(req, entry, counts, digests(req.messages))
    if most is not None:
        return most
    image = images.cost(entry.vendor, entry.name, None, None, "high").tokens
    parts = sum(1 for m in req.messages for p in m.content if p.HasField("image"))
    return req.ByteSize() + 16 + parts * image


def _message_bound(m: common_pb2.Message) -> int | None:
    role = ROLES.get(m.role)
    if role is None:  # the counter refuses the request
        return None
    total = TOKENS_PER_MESSAGE + len(role)
    for part in m.content:
        if part.WhichOneof("part") != "text":
            return None
        total += _bytes(part.text)
    if m.name:
        total += _bytes(m.name) + TOKENS_PER_NAME
    total += _bytes(m.tool_call_id)
    for call in m.tool_calls:
        total += _bytes(call.name) + _bytes(call.arguments_json) + TOKENS_PER_MESSAGE
    return total


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())  # (isascii is O(1))
