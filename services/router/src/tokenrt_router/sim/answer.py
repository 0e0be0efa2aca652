"""The simulator's pure part: deterministic answers and realistic token counts.

Counts use the real model's tiktoken encoding and the OpenAI chat framing (3 tokens per
message, 1 per name, 3 to prime the reply), so the router's counter agrees with the
simulator exactly for OpenAI-shaped models.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import tiktoken

from tokenrt_pricing import catalog as pricing_catalog
from tokenrt_pricing.model import ModelNotFound

WORDS = ("the", "function", "returns", "a", "value", "for", "each", "input", "and", "then",
         "we", "update", "state", "so", "tests", "pass", "with", "care", "code", "line")
CACHE_BLOCK = 128
CACHE_MIN = 1024
DEFAULT_ANSWER_TOKENS = 48
# Filler words per digest byte: 80 words, more tokens than the longest answer
# (DEFAULT_ANSWER_TOKENS + 31) needs, so nothing is encoded only to be cut off.
ANSWER_WORDS_PER_BYTE = 5


@dataclass(frozen=True)
class Answer:
    text: str
    # Answer tokens one by one as text pieces (what a stream sends).
    pieces: tuple[str, ...]
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    finish_reason: str
    tool_call: dict[str, Any] | None = None


class Answerer:
    """Builds answers; remembers prompt prefixes to simulate provider prompt caching."""

    def __init__(self, max_prefixes: int = 20_000) -> None:
        self._catalog = pricing_catalog.load()
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._prefixes: OrderedDict[bytes, None] = OrderedDict()
        self._max_prefixes = max_prefixes
        self._counts: OrderedDict[str, int] = OrderedDict()
        # Text of each token id (bounded by the vocabulary of the encodings in use).
        self._pieces: dict[tuple[str, int], str] = {}

    def encoding(self, model: str) -> tiktoken.Encoding:
        name = "o200k_base"
        try:
            tok = self._catalog.resolve(model).entry.tokenizer
            if not tok.startswith(("estimate:", "hf:", "bpe:")):
                name = tok
        except ModelNotFound:
            pass
        enc = self._encodings.get(name)
        if enc is None:
            enc = self._encodings[name] = tiktoken.get_encoding(name)
        return enc

    def _piece(self, enc: tiktoken.Encoding, token: int) -> str:
        key = (enc.name, token)
        text = self._pieces.get(key)
        if text is None:
            text = self._pieces[key] = enc.decode([token])
        return text

    def _count(self, enc: tiktoken.Encoding, text: str) -> int:
        key = enc.name + "\0" + text
        n = self._counts.get(key)
        if n is None:
            n = len(enc.encode(text, disallowed_special=()))
            self._counts[key] = n
            if len(self._counts) > 50_000:
                self._counts.popitem(last=False)
        return n

    def prompt_tokens(self, enc: tiktoken.Encoding, messages: list[dict[str, Any]],
                      tools: list[Any]) -> tuple[int, list[int]]:
        """Total prompt tokens and the running total after each message."""
        total, running = 3, []
        for m in messages:
            total += 3
            total += self._count(enc, str(m.get("role", "")))
            total += self._count(enc, _content_text(m.get("content")))
            if m.get("name"):
                total += 1 + self._count(enc, str(m["name"]))
            for call in m.get("tool_calls") or []:
                total += self._count(enc, json.dumps(call, sort_keys=True))
            running.append(total)
        if tools:
            total += self._count(enc, json.dumps(tools, sort_keys=True))
        return total, running

    def answer(self, body: dict[str, Any]) -> Answer:
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        enc = self.encoding(model)
        prompt, running = self.prompt_tokens(enc, messages, body.get("tools") or [])
        cached = self._cached(messages, running, prompt)
        digest = hashlib.blake2b(json.dumps(messages, sort_keys=True).encode(),
                                 digest_size=16).digest()
        limit = _max_tokens(body)
        want = DEFAULT_ANSWER_TOKENS + digest[0] % 32
        last_user = next((_content_text(m.get("content")) for m in reversed(messages)
                          if m.get("role") == "user"), "")
        filler = " ".join(WORDS[b % len(WORDS)] for b in digest * ANSWER_WORDS_PER_BYTE)
        text = (f"[tokenrt simulator · {model}] Simulated answer to: "
                f"{last_user[:60]!r}. " + filler)
        tokens = enc.encode(text, disallowed_special=())
        finish = "stop"
        if len(tokens) > want:
            tokens = tokens[:want]
        if len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        pieces = tuple(self._piece(enc, t) for t in tokens)
        tool_call = None
        choice = body.get("tool_choice")
        tools = body.get("tools") or []
        if tools and (choice == "required" or isinstance(choice, dict)):
            fn = (choice["function"]["name"] if isinstance(choice, dict)
                  else tools[0]["function"]["name"])
            tool_call = {"id": "call_" + digest.hex()[:24], "type": "function",
                         "function": {"name": fn, "arguments": '{"simulated": true}'}}
            finish = "tool_calls"
        completion = len(tokens) + (self._count(enc, json.dumps(tool_call)) if tool_call else 0)
        reasoning = 0
        if _reasons(model):
            reasoning = min(64, max(limit - completion, 0))
            completion += reasoning
        return Answer("".join(pieces), pieces, prompt, cached, completion, reasoning,
                      finish, tool_call)

    def _cached(self, messages: list[dict[str, Any]], running: list[int], prompt: int) -> int:
        """Like OpenAI: the longest previously seen message prefix of ≥ 1024 tokens,
        in 128-token blocks, counts as cached."""
        h = hashlib.blake2b(digest_size=16)
        cached = 0
        for m, upto in zip(messages, running, strict=True):
            h.update(json.dumps(m, sort_keys=True).encode())
            key = h.digest()
            if key in self._prefixes:
                self._prefixes.move_to_end(key)
                if upto >= CACHE_MIN:
                    cached = upto
            else:
                self._prefixes[key] = None
                if len(self._prefixes) > self._max_prefixes:
                    self._prefixes.popitem(last=False)
        cached = min(cached, prompt)
        return (cached // CACHE_BLOCK) * CACHE_BLOCK if cached >= CACHE_MIN else 0


def _reasons(model: str) -> bool:
    base = model.rsplit("/", 1)[-1]
    return base[:1] == "o" and base[1:2].isdigit()


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        v = body.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return 4096


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)
