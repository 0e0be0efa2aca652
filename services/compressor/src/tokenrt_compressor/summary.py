"""Summaries of dropped spans, behind one interface.

`Summarizer` is what the compressor needs: a text of at most `max_tokens` tokens standing
for a span of messages. The offline default, `Extractive`, is deterministic and free: it
lists who said what (first line of each message), the files and symbols the span showed,
and stops when the budget is spent. `routed.RouterSummarizer` asks a cheap model through
the router and falls back to this one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tokenrt.v1 import common_pb2
from tokenrt_compressor.code import copies
from tokenrt_compressor.graph import Slot, message_text

ROLE_NAMES = {common_pb2.ROLE_SYSTEM: "system", common_pb2.ROLE_USER: "user",
              common_pb2.ROLE_ASSISTANT: "assistant", common_pb2.ROLE_TOOL: "tool",
              common_pb2.ROLE_DEVELOPER: "developer"}
_DEFINED = re.compile(r"\b(?:def|class|function|func|fn|struct|interface)\s+([A-Za-z_]\w*)")
LINE_CHARS = 160


@dataclass(frozen=True)
class Summary:
    text: str
    # What producing it cost (zero for the extractive summariser and for a cached one).
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nusd: int = 0
    cached_input_tokens: int = 0
    # How it was made, when that is worth saying: "from the session cache", or why the
    # extractive summariser stood in for the model.
    note: str = ""


class Summarizer(Protocol):
    async def summarize(self, span: Sequence[common_pb2.Message], max_tokens: int) -> Summary:
        """A summary of `span` of at most `max_tokens` tokens of the target model."""
        ...


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        line = line.strip()
        if line and not line.startswith("```"):
            return line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"
    return ""


def extract(span: Sequence[common_pb2.Message], max_tokens: int,
            count: Callable[[str], int]) -> str:
    """The extractive summary text: facts first (files, symbols), then one line per message,
    cut to `max_tokens` by exact count."""
    files: list[str] = []
    for c in copies([Slot(tuple(range(len(span))), list(span), 0, False)]):
        if c.path and c.path not in files:
            files.append(c.path)
    symbols: list[str] = []
    lines: list[str] = []
    for m in span:
        text = message_text(m)
        for name in _DEFINED.findall(text):
            if name not in symbols:
                symbols.append(name)
        first = _first_line(text)
        if first:
            lines.append(f"- {ROLE_NAMES.get(m.role, 'message')}: {first}")
    head = []
    if files:
        head.append("Files shown: " + ", ".join(files[:40]))
    if symbols:
        head.append("Symbols defined: " + ", ".join(symbols[:60]))
    out: list[str] = []
    used = 0
    for line in head + lines:  # per-line counts (+1 for the newline) as the guide...
        used += count(line) + 1
        if used > max_tokens:
            break
        out.append(line)
    while out and count("\n".join(out)) > max_tokens:  # ...and the exact count decides
        out.pop()
    return "\n".join(out)


class Extractive:
    """The offline, deterministic summariser (no model call, no cost)."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count

    def summarize_now(self, span: Sequence[common_pb2.Message], max_tokens: int) -> Summary:
        return Summary(extract(span, max_tokens, self._count), model="extractive")

    async def summarize(self, span: Sequence[common_pb2.Message], max_tokens: int) -> Summary:
        return self.summarize_now(span, max_tokens)
