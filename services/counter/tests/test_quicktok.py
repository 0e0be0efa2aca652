"""o200k_base and cl100k_base are counted by quicktok: its counts must be tiktoken's own
(`encode_ordinary`) on anything, including special-token lookalikes and lone surrogates."""

from __future__ import annotations

import pytest
import tiktoken
from counter_corpus import TEXTS
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt_counter.tokenizers import Tokenizers

ENCODINGS = ("o200k_base", "cl100k_base")
OURS = Tokenizers()
TRICKY = ["", " ", "\n\n\n", "<|endoftext|> and <|im_start|>", "héllo 世界 🎉\r\n\tdef f():",
          "lone \ud800 surrogate", "\udfff\ud83d", "x" * 5000, "١٢٣ ٤٥ 12345678901234567890",
          "    \n  \t\n" * 50, "Ｆｕｌｌ ｗｉｄｔｈ", "ñ" * 300 + "\u0301" * 7]


def tiktoken_count(encoding: str, text: str) -> int:
    return len(tiktoken.get_encoding(encoding).encode_ordinary(text))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_quicktok_counts_what_tiktoken_counts(encoding: str) -> None:
    ours = OURS.exact(encoding)
    assert ours is not None and ours.source == "tiktoken"
    corpus = TRICKY + [t for t in TEXTS if t]
    assert [ours.count(t) for t in corpus] == [tiktoken_count(encoding, t) for t in corpus]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_quicktok_counts_random_text_as_tiktoken(value: str) -> None:
    for encoding in ENCODINGS:
        ours = OURS.exact(encoding)
        assert ours is not None
        assert ours.count(value) == tiktoken_count(encoding, value), encoding
