"""References: the file paths, identifiers and symbols a question names, and how strongly
an earlier message defines or shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/])")
_TICKED = re.compile(r"`([^`\n]{2,80})`")
_WORD = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\()?")
_DEFINERS = ("def", "class", "function", "fn", "func", "struct", "interface", "type", "enum",
             "const", "let", "var", "async def", "trait", "impl", "module")
# File extensions that make `x.y` a path rather than `object.attribute`.
_EXTENSIONS = frozenset(
    "py pyi js jsx ts tsx mjs cjs go rs java kt kts c h cc cpp hpp cs rb php swift scala m sql "
    "sh bash zsh ps1 md rst txt json yaml yml toml ini cfg conf xml html css scss vue svelte "
    "proto graphql lock env dockerfile makefile gradle lua r jl ex exs erl hs ml clj dart".split())


@dataclass(frozen=True)
class Reference:
    term: str
    kind: str  # "path" or "symbol"
    # For a symbol: a regex finding its definition; for a path: None.
    definition: re.Pattern[str] | None


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
        last = name.rsplit(".", 1)[-1]
        if name in found or len(last) < 3:
            return
        pattern = re.compile(r"(?:\b(?:" + "|".join(_DEFINERS) + r")\s+" + re.escape(last)
                             + r"\b|^\s*" + re.escape(last) + r"\s*(?::[^=\n]*)?=[^=])",
                             re.MULTILINE)
        found[name] = Reference(name, "symbol", pattern)

    for m in _PATH.finditer(question):
        path = m.group(1)
        ext = path.rsplit(".", 1)[-1].lower()
        if ext not in _EXTENSIONS:
            continue
        found.setdefault(path, Reference(path, "path", None))
        base = path.rsplit("/", 1)[-1]
        found.setdefault(base, Reference(base, "path", None))
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
        elif ref.definition is not None and ref.definition.search(text):
            strong += 1
        else:
            weak += 1
    return strong, weak
