"""`tokenrt report`: spend per project, model and user, budget levels, cache hit rate and
savings, compression savings, over a time range.

Figures come from the services, never recomputed: the ledger's GetReport (totals,
breakdowns, time series), the budget service's ListLimits + Status (levels of the current
period), the cache service's Stats (hits and savings since its counters began).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    cache_pb2,
    cache_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
)
from tokenrt_cli.charts import percent, usd
from tokenrt_common.client import open_channel
from tokenrt_common.settings import Settings
from tokenrt_ledger.cli import scope_text
from tokenrt_ledger.core import parse_duration

T = common_pb2
MAX_LIMIT_PAGES = 20
STATUS_CONCURRENCY = 16  # Status calls in flight at once (one per organization)
TOP_N = 10
CALL_TIMEOUT = 30.0


class ReportError(ValueError):
    """Bad arguments; the message names the option."""


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def time_range(since: str, now: datetime) -> tuple[datetime, datetime]:
    try:
        back = parse_duration(since)
    except ValueError:
        raise ReportError(f"--since: {since!r} is not a duration like 90m, 24h or 7d") from None
    return now - back, now


def totals_dict(t: ledger_pb2.UsageTotals) -> dict[str, int]:
    return {
        "requests": t.requests, "ok_requests": t.ok_requests,
        "cache_hit_requests": t.cache_hit_requests, "denied_requests": t.denied_requests,
        "throttled_requests": t.throttled_requests, "error_requests": t.error_requests,
        "degraded_requests": t.degraded_requests, "input_tokens": t.usage.input_tokens,
        "cached_input_tokens": t.usage.cached_input_tokens,
        "output_tokens": t.usage.output_tokens,
        "tokens": t.usage.input_tokens + t.usage.output_tokens, "cost_nusd": t.cost_nusd,
        "cache_saved_tokens": t.cache_saved_tokens,
        "cache_saved_cost_nusd": t.cache_saved_cost_nusd,
        "cache_hit_rate_bp": t.cache_hit_rate_bp, "compressed_requests": t.compressed_requests,
        "compression_saved_tokens": t.compression_saved_tokens,
        "compression_saved_cost_nusd": t.compression_saved_cost_nusd,
        "success_rate_bp": t.success_rate_bp, "avg_latency_ms": t.avg_latency_ms}


def _row(r: ledger_pb2.UsageRow, *keys: str) -> dict[str, Any]:
    """The row's keys, a display `name` (its non-empty keys joined by /) and its figures."""
    out: dict[str, Any] = {k: getattr(r, k) for k in keys}
    out["name"] = "/".join(str(v) for v in out.values() if v) or "(none)"
    t = totals_dict(r.totals)
    out.update({k: t[k] for k in ("requests", "input_tokens", "output_tokens", "tokens",
                                  "cost_nusd", "cache_saved_cost_nusd",
                                  "compression_saved_tokens")})
    out["cost_usd"] = usd(t["cost_nusd"])  # exact, for labels (charts never format money)
    return out


def ledger_part(rep: ledger_pb2.GetReportResponse) -> dict[str, Any]:
    series = []
    for r in rep.series:
        row = _row(r)
        row["bucket_start"] = r.bucket_start.ToDatetime(tzinfo=UTC).isoformat()
        series.append(row)
    return {"total": totals_dict(rep.total),
            "by_project": [_row(r, "org_id", "project_id") for r in rep.by_project],
            "by_model": [_row(r, "model") for r in rep.by_model],
            "by_user": [_row(r, "org_id", "project_id", "user_id") for r in rep.by_user],
            "series": series}


def limit_dict(s: common_pb2.LimitState, name: str) -> dict[str, Any]:
    return {"limit_id": s.limit_id, "name": name, "scope": scope_text(s.scope),
            "metric": _name(T.LimitMetric, s.metric, "LIMIT_METRIC_"),
            "period": _name(T.LimitPeriod, s.period, "LIMIT_PERIOD_"),
            "action": _name(T.LimitAction, s.action, "LIMIT_ACTION_"),
            "used": s.used, "reserved": s.reserved, "limit": s.limit, "remaining": s.remaining,
            "utilization_bp": s.utilization_bp, "utilization": percent(s.utilization_bp),
            "level": _name(T.BudgetLevel, s.level, "BUDGET_LEVEL_")}


async def budget_part(stub: budget_pb2_grpc.BudgetServiceStub, org: str,
                      project: str) -> list[dict[str, Any]]:
    """Every limit in the filter's reach with its current level, fullest first."""
    names: dict[str, str] = {}
    orgs: set[str] = set()
    token = ""
    for _ in range(MAX_LIMIT_PAGES):
        page = await stub.ListLimits(budget_pb2.ListLimitsRequest(
            org_id=org, page_size=1000, page_token=token), timeout=CALL_TIMEOUT)
        for lim in page.limits:
            names[lim.limit_id] = lim.name
            orgs.add(lim.scope.org_id)
        token = page.next_page_token
        if not token:
            break
    if project:
        scopes = [T.Scope(kind=T.SCOPE_KIND_PROJECT, org_id=org, project_id=project)]
    else:
        scopes = [T.Scope(kind=T.SCOPE_KIND_ORG, org_id=o) for o in sorted(orgs)]
    gate = asyncio.Semaphore(STATUS_CONCURRENCY)

    async def status(scope: common_pb2.Scope) -> budget_pb2.StatusResponse:
        async with gate:
            return await stub.Status(budget_pb2.StatusRequest(
                scope=scope, include_descendants=True), timeout=CALL_TIMEOUT)
    answers = await asyncio.gather(*(status(s) for s in scopes))
    states = [limit_dict(s, names.get(s.limit_id, "")) for a in answers for s in a.limits]
    if project:  # the project's limits and those below it, never its org's
        states = [s for s in states if s["scope"] != f"org:{org}"]
    return sorted(states, key=lambda s: (-s["utilization_bp"], s["scope"]))


async def cache_part(stub: cache_pb2_grpc.CacheServiceStub, org: str,
                     project: str) -> dict[str, int]:
    req = cache_pb2.StatsRequest()
    if org:
        req.tenant.CopyFrom(T.Tenant(org_id=org, project_id=project))
    t = (await stub.Stats(req, timeout=CALL_TIMEOUT)).total
    return {"hits": t.hits, "misses": t.misses, "hit_rate_bp": t.hit_rate_bp,
            "saved_tokens": t.saved_tokens, "saved_cost_nusd": t.saved_cost_nusd,
            "entries": t.entries, "stored_bytes": t.stored_bytes}


def granularity(start: datetime, end: datetime) -> int:
    if end - start <= timedelta(hours=6):
        return ledger_pb2.TIME_GRANULARITY_MINUTE
    if end - start <= timedelta(days=3):
        return ledger_pb2.TIME_GRANULARITY_HOUR
    return ledger_pb2.TIME_GRANULARITY_DAY


async def build_report(settings: Settings, since: str, org: str, project: str,
                       now: datetime | None = None) -> dict[str, Any]:
    """The whole report as plain data (what `--json` prints and the views draw)."""
    if project and not org:
        raise ReportError("--project needs --org")
    now = now or datetime.now(UTC)
    start, end = time_range(since, now)
    f = ledger_pb2.UsageFilter(org_id=org, project_id=project)
    f.start_time.FromDatetime(start)
    # The ledger reads minute rollups and rounds the end down to the minute: include now.
    f.end_time.FromDatetime(end + timedelta(minutes=1))
    grain = granularity(start, end)
    channels = {n: open_channel(settings, n) for n in ("ledger", "budget", "cache")}
    try:
        rep, budgets, cache = await asyncio.gather(
            ledger_pb2_grpc.LedgerServiceStub(channels["ledger"]).GetReport(
                ledger_pb2.GetReportRequest(filter=f, series_granularity=grain, top_n=TOP_N),
                timeout=CALL_TIMEOUT),
            budget_part(budget_pb2_grpc.BudgetServiceStub(channels["budget"]), org, project),
            cache_part(cache_pb2_grpc.CacheServiceStub(channels["cache"]), org, project))
    finally:
        for ch in channels.values():
            await ch.close()
    return {"generated_at": now.isoformat(), "since": since,
            "start": start.isoformat(), "end": end.isoformat(),
            "org": org, "project": project,
            "granularity": _name(ledger_pb2.TimeGranularity, grain, "TIME_GRANULARITY_"),
            **ledger_part(rep), "budgets": budgets, "cache": cache}
