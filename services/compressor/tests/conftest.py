"""Compressor test fixtures: tiktoken's offline files, the counter's library code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
sys.path.insert(0, str(Path(__file__).parent))  # compressor_chats (import mode is importlib)

import tokenrt_pricing  # noqa: E402
from tokenrt_compressor.counting import CounterMeter  # noqa: E402
from tokenrt_counter.chunks import CountCache  # noqa: E402
from tokenrt_counter.core import Counter  # noqa: E402
from tokenrt_counter.tokenizers import Tokenizers  # noqa: E402


@pytest.fixture(scope="session")
def meter() -> CounterMeter:
    catalog = tokenrt_pricing.load()
    return CounterMeter(Counter(Tokenizers(), CountCache(64 << 20)),
                        catalog.resolve("gpt-4o").entry)
