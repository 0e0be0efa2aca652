"""`tokenrt top`: a live view of the usage topic — requests per second, spend per minute,
per model and status — and the budget levels of the organizations that are busy.

Events come from a plain NATS subscription to `<usage prefix>.>` (or one org / project),
so `top` sees what is published from the moment it starts and never disturbs the ledger's
durable consumer. Budget levels are polled from the budget service (Status) every
`BUDGET_POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
import nats
from rich.console import Group
from rich.table import Table
from rich.text import Text

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, events_pb2
from tokenrt_cli.charts import bar, percent, usd
from tokenrt_cli.report import limit_dict
from tokenrt_usage.subjects import usage_filter

RATE_WINDOW_SECONDS = 10
SPEND_WINDOW_SECONDS = 60
BUDGET_POLL_SECONDS = 2.0
MAX_BUDGET_ORGS = 5
SPARK = "▁▂▃▄▅▆▇█"
STATUS = {v: k.removeprefix("USAGE_STATUS_").lower()
          for k, v in events_pb2.UsageStatus.items()}


@dataclass
class Seen:
    at: float  # monotonic seconds when it arrived
    org: str
    model: str
    cost_nusd: int
    tokens: int
    status: str


@dataclass
class TopState:
    """What `top` has seen: recent events, totals since start, budget levels."""

    started: float = field(default_factory=time.monotonic)
    recent: deque[Seen] = field(default_factory=deque)
    events: int = 0
    cost_nusd: int = 0
    tokens: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    spend_by_model: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_org: Counter[str] = field(default_factory=Counter)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    budget_error: str = ""

    def add(self, e: events_pb2.UsageEvent, now: float) -> None:
        tokens = e.usage.input_tokens + e.usage.output_tokens
        status = STATUS.get(e.status, "unknown")
        model = e.served_model or e.requested_model or "(none)"
        self.recent.append(Seen(now, e.org_id, model, e.cost_nusd, tokens, status))
        self.events += 1
        self.cost_nusd += e.cost_nusd
        self.tokens += tokens
        self.by_model[model] += 1
        self.spend_by_model[model] += e.cost_nusd
        self.by_status[status] += 1
        self.by_org[e.org_id] += 1

    def trim(self, now: float) -> None:
        while self.recent and now - self.recent[0].at > SPEND_WINDOW_SECONDS:
            self.recent.popleft()

    def rate(self, now: float) -> Decimal:
        """Requests per second over the last RATE_WINDOW_SECONDS (or since start)."""
        span = min(RATE_WINDOW_SECONDS, max(now - self.started, 1.0))
        n = sum(1 for s in self.recent if now - s.at <= span)
        return (Decimal(n) / Decimal(str(round(span, 3)))).quantize(Decimal("0.1"))

    def spend_per_minute(self, now: float) -> int:
        return sum(s.cost_nusd for s in self.recent if now - s.at <= SPEND_WINDOW_SECONDS)

    def per_second(self, now: float) -> list[int]:
        """Requests in each of the last 60 seconds, oldest first."""
        counts = [0] * SPEND_WINDOW_SECONDS
        for s in self.recent:
            age = int(now - s.at)
            if 0 <= age < SPEND_WINDOW_SECONDS:
                counts[SPEND_WINDOW_SECONDS - 1 - age] += 1
        return counts

    def to_json(self, now: float) -> dict[str, Any]:
        return {"seconds": round(now - self.started, 1), "events": self.events,
                "tokens": self.tokens, "cost_nusd": self.cost_nusd,
                "requests_per_second": str(self.rate(now)),
                "spend_per_minute_nusd": self.spend_per_minute(now),
                "by_model": dict(self.by_model), "spend_by_model": dict(self.spend_by_model),
                "by_status": dict(self.by_status), "by_org": dict(self.by_org),
                "budgets": self.budgets}


def sparkline(values: list[int]) -> str:
    peak = max(values, default=0)
    if peak <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, v * (len(SPARK) - 1) // peak)] for v in values)


def view(state: TopState, subject: str, now: float) -> Group:
    head = Text.from_markup(
        f"[bold]tokenrt top[/] on {subject} — {state.events:,} events in "
        f"{now - state.started:.0f} s | [bold]{state.rate(now)}[/] req/s | "
        f"spend [bold]{usd(state.spend_per_minute(now))}[/]/min | total "
        f"{usd(state.cost_nusd)}, {state.tokens:,} tokens")
    spark = Text(f"req/s, last 60 s  {sparkline(state.per_second(now))}", style="green")
    models = Table(title="models (since start)", title_justify="left", box=None)
    for col in ("model", "requests", "spend"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for model, n in state.by_model.most_common(8):
        models.add_row(model, f"{n:,}", usd(state.spend_by_model[model]))
    statuses = "  ".join(f"{k} {v:,}" for k, v in state.by_status.most_common())
    budgets = Table(title="budget levels", title_justify="left", box=None)
    for col in ("scope", "rule", "used", "", "level"):
        budgets.add_column(col)
    for b in state.budgets[:8]:
        budgets.add_row(b["scope"], f"{b['metric']}/{b['period']} {b['action']}",
                        f"{b['used'] + b['reserved']:,} of {b['limit']:,}",
                        bar(min(b["utilization_bp"], 10_000), 10_000, 16).ljust(16),
                        f"{b['level']} {percent(b['utilization_bp'])}")
    extra = [Text(state.budget_error, style="red")] if state.budget_error else []
    return Group(head, spark, Text(f"statuses: {statuses or '-'}"), models, budgets, *extra)


async def poll_budgets(stub: budget_pb2_grpc.BudgetServiceStub, state: TopState,
                       org: str) -> None:
    orgs = [org] if org else [o for o, _ in state.by_org.most_common(MAX_BUDGET_ORGS)]
    if not orgs:
        return
    try:
        answers = await asyncio.gather(*(stub.Status(budget_pb2.StatusRequest(
            scope=common_pb2.Scope(kind=common_pb2.SCOPE_KIND_ORG, org_id=o),
            include_descendants=True), timeout=5) for o in orgs))
    except grpc.aio.AioRpcError as exc:
        state.budget_error = f"budget service: {exc.code().name}: {exc.details()}"
        return
    state.budget_error = ""
    levels = [limit_dict(s, "") for a in answers for s in a.limits]
    state.budgets = sorted(levels, key=lambda b: -b["utilization_bp"])


async def subscribe(nats_url: str, prefix: str, org: str, project: str, state: TopState,
                    connect_seconds: float) -> tuple[Any, str]:
    nc = await nats.connect(nats_url, connect_timeout=connect_seconds,
                            max_reconnect_attempts=-1)
    subject = usage_filter(prefix, org, project)

    async def on(msg: Any) -> None:
        try:
            event = events_pb2.UsageEvent.FromString(msg.data)
        except Exception:
            return  # not an event; the ledger dead-letters it
        state.add(event, time.monotonic())

    await nc.subscribe(subject, cb=on)
    await nc.flush()
    return nc, subject
