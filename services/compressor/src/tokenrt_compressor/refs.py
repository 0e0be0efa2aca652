"""References: the file paths, identifiers and symbols a question names, and how strongly
an earlier message defines or shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/])")
_TICKED = re.compile(r"`([^`\n]{2,80})`")
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\()?")
# A definition: one of these words right before the name, or the name assigned at the
# start of a line.
_DEFINED_BY = re.compile(r"\b(?:def|class|function|fn|func|struct|interface|type|enum|const|"
                         r"let|var|trait|impl|module)\s+$")
_ASSIGNED = re.compile(r"\s*(?::[^=\n]*)?=(?!=)")
# File extensions that make `x.y` a path rather than `object.attribute`.
_EXTENSIONS = frozenset(
    "py pyi js jsx ts tsx mjs cjs go rs java kt kts c h cc cpp hpp cs rb php swift scala m sql "
    "sh bash zsh ps1 md rst txt json yaml yml toml ini cfg conf xml html css scss vue svelte "
    "proto graphql lock env dockerfile makefile gradle lua r jl ex exs erl hs ml clj dart".split())


@dataclass(frozen=True)
class Reference:
    term: str
    kind: str  # "path" or "symbol"


def _is_identifier(word: str, call: bool) -> bool:
    if len(word) < 3:
        return False
    if call or "." in word or "_" in word.strip("_"):
        return True
    return any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)


def extract(question: str) -> list[Reference]:
    """References named in a question: paths (and their file names), identifiers in code
    style (snake_case, camelCase, dotted, called `f(`) and anything in backticks."""
    found: dict[str, Reference] = {}

    def add_symbol(name: str) -> None:
        if name not in found and len(name.rsplit(".", 1)[-1]) >= 3:
            found[name] = Reference(name, "symbol")

    for m in _PATH.finditer(question):
        path = m.group(1)
        ext = path.rsplit(".", 1)[-1].lower()
        if ext not in _EXTENSIONS:
            continue
        found.setdefault(path, Reference(path, "path"))
        base = path.rsplit("/", 1)[-1]
        found.setdefault(base, Reference(base, "path"))
    for m in _TICKED.finditer(question):
        inner = m.group(1).strip().rstrip("()")
        if inner in found:
            continue
        if re.fullmatch(r"[A-Za-z_][\w.]*", inner):
            add_symbol(inner)
    for m in _WORD.finditer(question):
        word = m.group(0).rstrip("(")
        if word in found or any(word in r.term for r in found.values() if r.kind == "path"):
            continue
        if _is_identifier(word, bool(m.group(1))):
            add_symbol(word)
    return list(found.values())


def score(text: str, refs: list[Reference], tool_unit: bool) -> tuple[int, int]:
    """(strong, weak) reference hits of a unit's text: a definition of a symbol, or a path
    shown with code (a fenced block or a tool exchange), is strong; a mention is weak."""
    strong = weak = 0
    has_code = tool_unit or "```" in text
    for ref in refs:
        last = ref.term.rsplit(".", 1)[-1] if ref.kind == "symbol" else ref.term
        if last not in text:
            continue
        if ref.kind == "path":
            if has_code:
                strong += 1
            else:
                weak += 1
        elif defines(text, last):
            strong += 1
        else:
            weak += 1
    return strong, weak


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def defines(text: str, name: str) -> bool:
    """Whether `text` defines `name` (`def name`, `class name`, `name = ...` at a line's
    start...): a scan of its occurrences, not a regex over the whole text."""
    start = 0
    while (i := text.find(name, start)) >= 0:
        end = i + len(name)
        start = end
        if (i and _word_char(text[i - 1])) or (end < len(text) and _word_char(text[end])):
            continue
        if _DEFINED_BY.search(text, max(0, i - 12), i):
            return True
        line = text.rfind("\n", 0, i) + 1
        if not text[line:i].strip() and _ASSIGNED.match(text, end):
            return True
    return False
