"""Plain-text tables for people."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines)


def short_path(path: str | Path | None) -> str:
    """The path relative to the current folder when it lies under it."""
    if not path:
        return ""
    try:
        inside = Path(path).resolve().is_relative_to(Path.cwd())
        return os.path.relpath(path) if inside else str(path)
    except ValueError:
        return str(path)
