"""An upper bound of a prompt's input tokens, made without the counter (pure).

The router plans and reserves with it while the counter counts (pipeline.py, "speculative
reserve"). It follows the counter's own rules (tokenrt_counter.core) for the models it
counts exactly with a tiktoken encoding: a byte-level BPE token covers at least one byte,
so a text's tokens are at most its UTF-8 bytes; each message adds OpenAI's framing (3
tokens, 1 more for a name), the reply is primed with 3, a tool call's name and arguments
add 3. Where the counter uses a formula or a calibrated estimate (images, tool
definitions, models without a public tokenizer) there is no bound here: None.
"""

from __future__ import annotations

from tokenrt.v1 import common_pb2, router_pb2
from tokenrt_counter.core import REPLY_PRIMING, ROLES, TOKENS_PER_MESSAGE, TOKENS_PER_NAME
from tokenrt_counter.tokenizers import TIKTOKEN
from tokenrt_pricing.model import ModelEntry


def input_bound(req: router_pb2.CompleteRequest, entry: ModelEntry) -> int | None:
    """At least the counter's `input_tokens` for `req` on `entry`; None when the counter's
    rules for it are not a byte count (then only the counter knows)."""
    if entry.tokenizer not in TIKTOKEN or req.tools:
        return None
    total = REPLY_PRIMING
    schema = req.sampling.response_format
    if schema.json_schema:
        total += _bytes(schema.json_schema) + _bytes(schema.schema_name)
    for m in req.messages:
        n = _message_bound(m)
        if n is None:
            return None
        total += n
    return total


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
