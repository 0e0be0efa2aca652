"""How `tokenrt demo` shows a run: one table of requests, one line per capability, the
ledger's figures and a tokens-per-hour chart."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from tokenrt_cli.charts import bar_chart, percent, usd
from tokenrt_cli.demo import Summary

STATUS_STYLE = {"ok": "green", "cache_hit": "cyan", "denied": "red", "error": "red"}


def requests_table(s: Summary) -> Table:
    t = Table(title="Requests sent through the router", title_justify="left")
    for col, just in (("#", "right"), ("step", "left"), ("user", "left"), ("model", "left"),
                      ("in", "right"), ("out", "right"), ("cost", "right"),
                      ("outcome", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, r in enumerate(s.requests, 1):
        model = r.served_model or r.requested_model
        if r.degraded_from:
            model = f"{model} (from {r.degraded_from})"
        outcome = r.status.replace("_", " ")
        if r.cache_hit:
            outcome += f", saved {usd(r.cache_saved_cost_nusd)}"
        if r.streamed:
            outcome += ", streamed"
        if r.status == "denied":
            outcome = f"denied ({r.note})"
        t.add_row(str(i), r.step, r.user, model, str(r.input_tokens), str(r.output_tokens),
                  usd(r.cost_nusd), f"[{STATUS_STYLE.get(r.status, '')}]{outcome}[/]")
    return t


def capabilities_table(s: Summary) -> Table:
    t = Table(title="What each capability did", title_justify="left", show_lines=False)
    t.add_column("capability", style="bold")
    t.add_column("what happened")
    e = s.exact
    if e:
        mark = "[green]equal[/]" if e.get("matches") else "[red]differ[/]"
        t.add_row("exact tokens", f"counted {e['counted_input_tokens']} input tokens before "
                  f"the call ({e['exactness']}); the provider reported "
                  f"{e['reported_input_tokens']}: {mark}")
    c = s.cache
    if c:
        t.add_row("response cache", f"hit: {c['saved_tokens']} tokens and "
                  f"{usd(c['saved_cost_nusd'])} not spent" if c.get("hit")
                  else "[red]no hit[/]")
    w = s.warning
    t.add_row("budget warning", f"{w['user']}: {w['level']} at {percent(w['utilization_bp'])} "
              f"of {w['limit']} {w['metric']} a day" if w else "[red]none[/]")
    d = s.degrade
    t.add_row("degrade", f"{d['user']} asked for {d['requested_model']}; over a "
              f"{usd(d['limit_nusd'])} degrade limit it was served by {d['served_model']}"
              if d.get("degraded_from") else "[red]no degrade[/]")
    n = s.denial
    t.add_row("denial", f"{n['user']}'s request {n['after_requests']}: {n['code']} "
              f"{n['reason']}: {n['message']}" if n else "[red]no denial[/]")
    z = s.compression
    t.add_row("compression", f"{z['original_tokens']} → {z['compressed_tokens']} tokens "
              f"(target {z['target_tokens']}), ratio {percent(z['ratio_bp'])}, "
              f"{z['strategy']}, {usd(z['saved_cost_nusd'])} saved" if z
              else "[red]not compressed[/]")
    for sel in s.selection:
        t.add_row("selection", f"“{sel['prompt'][:48]}” → {sel['model']}: {sel['reason']}")
    return t


def ledger_group(s: Summary) -> Group:
    led = s.ledger
    total, sent = led.get("total", {}), s.sent
    ok = all(total.get(k) == sent.get(k) for k in ("requests", "input_tokens",
                                                   "output_tokens", "cost_nusd"))
    head = (f"ledger: {total.get('requests', 0)} requests, {total.get('input_tokens', 0)} in + "
            f"{total.get('output_tokens', 0)} out tokens, {usd(total.get('cost_nusd', 0))} — "
            + ("[green]equal to what the demo sent[/]" if ok else
               f"[red]the demo sent {sent.get('requests')} requests, "
               f"{usd(sent.get('cost_nusd', 0))}[/]"))
    models = bar_chart("cost per model", [(r["model"], r["cost_nusd"])
                                          for r in led.get("by_model", [])], usd)
    users = bar_chart("cost per user", [(r["user"], r["cost_nusd"])
                                        for r in led.get("by_user", [])], usd, style="magenta")
    hours = bar_chart("tokens per hour (every organization, last 12 h)",
                      [(datetime.fromisoformat(h["hour"]).strftime("%H:00"), h["tokens"])
                       for h in led.get("tokens_per_hour", [])], str, style="green")
    return Group(head, "", models, "", users, "", hours)


def render(console: Console, s: Summary) -> None:
    console.print(requests_table(s))
    console.print(capabilities_table(s))
    console.print(Panel(ledger_group(s), title="ledger report", title_align="left"))
    where = f"organization {s.org}" + (" (made for this run)" if s.fresh_org else "")
    console.print(f"run {s.run_id} in {where}, project {s.project}, provider {s.provider}, "
                  f"{s.seconds:.1f} s")
