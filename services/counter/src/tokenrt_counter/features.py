"""Script features of a text: how many characters of each class it has, the estimator's
inputs. Each class is counted by one C-level regex pass (no Python loop per character).

Code: text inside ``` fences, or a whole text that looks like code (many lines, and a
high share of the symbols code is made of). Classes partition the characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
                  r"\U00020000-\U0002fa1f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")
_DIGIT = re.compile(r"[0-9]")
_SPACE = re.compile(r"\s")
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_CODE_SYMBOLS = re.compile(r"[{}()\[\];=<>_:.,'\"#/*+\-|&!]")


@dataclass(frozen=True)
class Features:
    latin: int = 0
    cjk: int = 0
    code: int = 0
    digit: int = 0
    whitespace: int = 0
    other: int = 0
    messages: int = 0
    images: int = 0

    def __add__(self, other: Features) -> Features:
        return Features(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def vector(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]


NAMES = tuple(f.name for f in fields(Features))


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(text) - len(pattern.sub("", text))


def _looks_like_code(text: str) -> bool:
    if text.count("\n") < 3:
        return False
    return _count(_CODE_SYMBOLS, text) > 0.12 * len(text)


def of_text(text: str) -> Features:
    if not text:
        return Features()
    if "```" in text:
        code_parts = _FENCE.findall(text)
        prose = _FENCE.sub(" ", text)
        code = sum(len(p) for p in code_parts)
        base = _prose(prose)
        return Features(base.latin, base.cjk, base.code + code, base.digit,
                        base.whitespace - (len(code_parts)), base.other)
    if _looks_like_code(text):
        space = _count(_SPACE, text)
        return Features(code=len(text) - space, whitespace=space)
    return _prose(text)


def _prose(text: str) -> Features:
    latin = _count(_LATIN, text)
    cjk = _count(_CJK, text)
    digit = _count(_DIGIT, text)
    space = _count(_SPACE, text)
    return Features(latin, cjk, 0, digit, space, len(text) - latin - cjk - digit - space)
