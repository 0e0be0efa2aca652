"""Exact text tokenizers by catalog tokenizer id, loaded once and shared by threads.

tiktoken encodings (`o200k_base`, `cl100k_base`, ...) count exactly like the OpenAI API:
special-token lookalikes such as `<|endoftext|>` in user text are ordinary text
(`encode_ordinary`, the same as `encode(text, disallowed_special=())`), and lone
surrogates are replaced by U+FFFD as tiktoken itself does.
"""

from __future__ import annotations

import threading
from typing import Protocol

import tiktoken

# Encodings whose pre-tokenizer never joins a newline to a following ASCII letter or digit,
# so a text may be cut after "\n" before [A-Za-z0-9] without changing its token count.
SPLITTABLE = frozenset({"o200k_base", "cl100k_base", "o200k_harmony"})


class Encoder(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class TiktokenEncoder:
    def __init__(self, name: str) -> None:
        self.name = name
        self._encoding = tiktoken.get_encoding(name)

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count_many(self, texts: list[str]) -> list[int]:
        encode = self._encoding.encode_ordinary
        return [len(encode(t)) for t in texts]


class UnknownTokenizer(LookupError):
    pass


class Tokenizers:
    """Loads each exact tokenizer once, on first use (loading o200k takes ~0.5 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, TiktokenEncoder] = {}

    def exact(self, tokenizer_id: str) -> TiktokenEncoder | None:
        """The exact encoder for an id, or None when the id names the estimator."""
        if tokenizer_id.startswith("estimate:"):
            return None
        encoder = self._loaded.get(tokenizer_id)
        if encoder is not None:
            return encoder
        with self._lock:
            if tokenizer_id not in self._loaded:
                try:
                    self._loaded[tokenizer_id] = TiktokenEncoder(tokenizer_id)
                except ValueError:
                    raise UnknownTokenizer(tokenizer_id) from None
            return self._loaded[tokenizer_id]
