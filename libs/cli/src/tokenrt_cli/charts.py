"""Terminal pieces shared by `tokenrt demo`, `report` and `top`: exact dollars, ratios and
horizontal bar charts drawn with block characters."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from decimal import Decimal

from rich.console import Console
from rich.table import Table
from rich.text import Text

NUSD_PER_USD = Decimal(1_000_000_000)
BLOCKS = " ▏▎▍▌▋▊▉█"


def usd(nusd: int) -> str:
    """Nano-USD as dollars, exactly (no float), with at least two decimals."""
    value = Decimal(nusd) / NUSD_PER_USD
    text = f"{value.normalize():f}"
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def percent(bp: int) -> str:
    """Basis points as a percentage with one decimal, exactly."""
    return f"{Decimal(bp) / 100:.1f}%"


def bar(value: int, peak: int, width: int) -> str:
    """A bar of `width` cells at `value / peak`, with eighth-cell resolution."""
    if peak <= 0 or value <= 0:
        return ""
    eighths = max(1, value * width * 8 // peak)
    full, rest = divmod(eighths, 8)
    return "█" * full + (BLOCKS[rest] if rest else "")


def bar_chart(title: str, rows: Sequence[tuple[str, int]],
              label: Callable[[int], str] = str, width: int = 40,
              style: str = "cyan") -> Table:
    """One row per (name, value): the name, a bar scaled to the largest value, the value."""
    chart = Table(title=title, show_header=False, box=None, pad_edge=False, title_justify="left")
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True)
    chart.add_column(justify="right", no_wrap=True)
    peak = max((v for _, v in rows), default=0)
    for name, value in rows:
        chart.add_row(name, Text(bar(value, peak, width).ljust(width), style=style),
                      label(value))
    return chart


def console(stderr: bool = False) -> Console:
    """A console 120 columns wide when not on a terminal (logs, pipes, CI), where rich would
    otherwise wrap every table at 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False,
                   width=None if stream.isatty() else 120)
