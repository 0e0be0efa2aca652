"""`tokenrt report` in a terminal: totals, spend per project / model / user with bars, the
time series as a chart, and every budget's level."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tokenrt_cli.charts import bar, bar_chart, percent, usd

LEVEL_STYLE = {"ok": "green", "warning": "yellow", "critical": "dark_orange", "exceeded": "red"}


def amount(value: int, metric: str) -> str:
    return usd(value) if metric == "cost" else f"{value:,}"


def spend_table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col, just in (("", "left"), ("requests", "right"), ("tokens", "right"),
                      ("spend", "right"), ("", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    peak = max((r["cost_nusd"] for r in rows), default=0)
    for r in rows:
        t.add_row(r["name"], f"{r['requests']:,}", f"{r['tokens']:,}", usd(r["cost_nusd"]),
                  Text(bar(r["cost_nusd"], peak, 24), style="cyan"))
    if not rows:
        t.add_row("(no usage)", "", "", "", "")
    return t


def budgets_table(budgets: list[dict[str, Any]]) -> Table:
    t = Table(title="Budget levels (current period)", title_justify="left")
    for col, just in (("scope", "left"), ("rule", "left"), ("used + held", "right"),
                      ("of", "right"), ("", "left"), ("level", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for b in budgets:
        style = LEVEL_STYLE.get(b["level"], "")
        used = b["used"] + b["reserved"]
        t.add_row(b["scope"], f"{b['metric']}/{b['period']}, {b['action']}",
                  amount(used, b["metric"]), amount(b["limit"], b["metric"]),
                  Text(bar(min(b["utilization_bp"], 10_000), 10_000, 20).ljust(20), style=style),
                  Text(f"{b['level']} {percent(b['utilization_bp'])}", style=style))
    if not budgets:
        t.add_row("(no limits)", "", "", "", "", "")
    return t


def render(console: Console, r: dict[str, Any]) -> None:
    where = "/".join(x for x in (r["org"], r["project"]) if x) or "every organization"
    console.print(f"[bold]tokenrt report[/]: {where}, last {r['since']} "
                  f"({r['start'][:16]} → {r['end'][:16]} UTC)")
    t, c = r["total"], r["cache"]
    console.print(
        f"{t['requests']:,} requests ({t['denied_requests']} denied, "
        f"{t['degraded_requests']} degraded), {t['input_tokens']:,} in + "
        f"{t['output_tokens']:,} out tokens, spend [bold]{usd(t['cost_nusd'])}[/]\n"
        f"response cache: hit rate {percent(t['cache_hit_rate_bp'])} of answered requests, "
        f"saved {t['cache_saved_tokens']:,} tokens / {usd(t['cache_saved_cost_nusd'])} "
        f"(cache service: {c['hits']:,} hits, {c['misses']:,} misses, "
        f"{percent(c['hit_rate_bp'])}, {usd(c['saved_cost_nusd'])} saved)\n"
        f"compression: {t['compressed_requests']:,} requests, saved "
        f"{t['compression_saved_tokens']:,} tokens / {usd(t['compression_saved_cost_nusd'])}")
    console.print(spend_table("Spend per project", r["by_project"]))
    console.print(spend_table("Spend per model", r["by_model"]))
    console.print(spend_table("Spend per user (top)", r["by_user"]))
    fmt = "%m-%d" if r["granularity"] == "day" else "%m-%d %H:%M"
    console.print(bar_chart(f"Tokens per {r['granularity']}",
                            [(datetime.fromisoformat(s["bucket_start"]).strftime(fmt),
                              s["tokens"]) for s in r["series"]], lambda v: f"{v:,}",
                            style="green"))
    console.print(budgets_table(r["budgets"]))
