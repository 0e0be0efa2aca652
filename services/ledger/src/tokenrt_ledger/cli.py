"""`tokenrt usage`: query the ledger, export raw events, tail the live usage stream.

    tokenrt usage [--org O --project P --user U --session S] [--since 24h]
                  [--group-by model,day] [--order cost] [--json | --csv]
    tokenrt usage export [filters] [--since 30d] [--format jsonl|csv] [--output FILE]
    tokenrt usage tail [--org O [--project P]] [--json] [--count N]
    tokenrt usage reconcile [--org O [--project P]] [--tolerance-bp N] [--json]

The lead wires `register` into the `tokenrt` command; `python -m tokenrt_ledger.cli`
runs the same commands on their own. Exit codes: 0 done, 1 the ledger or NATS could not
be reached or refused the call (the message says why), 2 bad arguments or settings.
`reconcile` answers like diff(1): 0 no drift, 1 drift found, 2 could not compare (bad
arguments, or the ledger or the budget service unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

import grpc
import nats
from google.protobuf import json_format

from tokenrt.v1 import common_pb2, events_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_common.client import open_channel
from tokenrt_common.settings import Settings, SettingsError, load_settings
from tokenrt_ledger.core import parse_duration
from tokenrt_usage.subjects import usage_filter

GROUPS = {
    "org": ledger_pb2.USAGE_DIMENSION_ORG, "project": ledger_pb2.USAGE_DIMENSION_PROJECT,
    "user": ledger_pb2.USAGE_DIMENSION_USER, "session": ledger_pb2.USAGE_DIMENSION_SESSION,
    "model": ledger_pb2.USAGE_DIMENSION_MODEL, "provider": ledger_pb2.USAGE_DIMENSION_PROVIDER,
}
GRAINS = {"minute": ledger_pb2.TIME_GRANULARITY_MINUTE, "hour": ledger_pb2.TIME_GRANULARITY_HOUR,
          "day": ledger_pb2.TIME_GRANULARITY_DAY}
ORDERS = {"time": ledger_pb2.USAGE_ORDER_UNSPECIFIED, "cost": ledger_pb2.USAGE_ORDER_COST_DESC,
          "tokens": ledger_pb2.USAGE_ORDER_TOKENS_DESC,
          "requests": ledger_pb2.USAGE_ORDER_REQUESTS_DESC}
ROW_FIELD = {"org": "org_id", "project": "project_id", "user": "user_id",
             "session": "session_id", "model": "model"}
NUSD_PER_USD = Decimal(1_000_000_000)
EXPORT_TIMEOUT_SECONDS = 3600.0
CSV_EVENT_FIELDS = (
    "event_id", "occurred_at", "org_id", "project_id", "user_id", "session_id", "provider",
    "served_model", "status", "input_tokens", "cached_input_tokens",
    "cache_write_input_tokens", "output_tokens", "reasoning_tokens", "cost_nusd", "cache_hit",
    "cache_saved_tokens", "cache_saved_cost_nusd", "compression_saved_tokens",
    "compression_saved_cost_nusd", "latency_ms", "budget_decision",
)


class UsageError(Exception):
    """One line for the user; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `usage` (with `export` and `tail`) to a command's subparsers."""
    p = subparsers.add_parser("usage", help="usage and spend from the ledger",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _filters(p)
    p.add_argument("--group-by", default="model",
                   help="comma-separated: org, project, user, session, model, provider and at "
                   "most one of minute, hour, day (default: model)")
    p.add_argument("--order", choices=sorted(ORDERS), default="cost",
                   help="row order (default: cost, highest first)")
    p.add_argument("--limit", type=int, default=100, help="most rows to show (default 100)")
    p.add_argument("--time-zone", default="", help="IANA zone for day buckets (default UTC)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.set_defaults(func=query_command)
    sub = p.add_subparsers(dest="usage_command")

    e = sub.add_parser("export", help="raw events, oldest first, as JSON lines or CSV")
    _filters(e)
    e.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    e.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    e.set_defaults(func=export_command)

    t = sub.add_parser("tail", help="print usage events live as they are published")
    t.add_argument("--org", default="")
    t.add_argument("--project", default="")
    t.add_argument("--json", action="store_true", help="one JSON object per event")
    t.add_argument("--count", type=int, default=0, help="stop after N events (0 = never)")
    t.set_defaults(func=tail_command)

    r = sub.add_parser("reconcile", help="compare the budget's committed totals with the "
                       "ledger, per limit and current period; exit 1 on drift")
    r.add_argument("--org", default="", help="only this organization (default: every limit)")
    r.add_argument("--project", default="", help="only limits on this project and below")
    r.add_argument("--tolerance-bp", type=int, default=0,
                   help="drift up to this many basis points of the limit is tolerated "
                   "(events still in flight); default 0 = exact")
    r.add_argument("--json", action="store_true", help="one JSON object")
    r.set_defaults(func=reconcile_command)


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", default="")
    p.add_argument("--project", default="")
    p.add_argument("--user", default="")
    p.add_argument("--session", default="")
    p.add_argument("--model", action="append", default=[], help="served model (repeatable)")
    p.add_argument("--since", default="24h",
                   help="start: a duration back from now (90s, 15m, 24h, 7d) or an ISO time")
    p.add_argument("--until", default="", help="end: an ISO time (default: now)")


def _instant(text: str, now: datetime, what: str) -> datetime:
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--{what}: {text!r} is neither a duration like 24h or 7d nor an ISO "
                         "time like 2026-11-01T00:00:00Z", 2) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def usage_filter_of(args: argparse.Namespace, now: datetime) -> ledger_pb2.UsageFilter:
    f = ledger_pb2.UsageFilter(org_id=args.org, project_id=args.project, user_id=args.user,
                               session_id=args.session, models=args.model)
    end = _instant(args.until, now, "until") if args.until else now
    f.start_time.FromDatetime(_instant(args.since, now, "since"))
    f.end_time.FromDatetime(end)
    return f


def _group_by(text: str) -> tuple[list[int], int]:
    dims, grain = [], ledger_pb2.TIME_GRANULARITY_UNSPECIFIED
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word in GROUPS:
            dims.append(GROUPS[word])
        elif word in GRAINS and grain == ledger_pb2.TIME_GRANULARITY_UNSPECIFIED:
            grain = GRAINS[word]
        else:
            raise UsageError(f"--group-by: {word!r} is not one of "
                             f"{', '.join([*GROUPS, *GRAINS])} (at most one time grain)", 2)
    return dims, grain


def usd(nusd: int) -> str:
    """Nano-USD as dollars, exactly (no float on the way)."""
    return f"${(Decimal(nusd) / NUSD_PER_USD).normalize():f}"


def _row_dict(row: ledger_pb2.UsageRow, dims: list[int], grain: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if grain:
        out["bucket_start"] = row.bucket_start.ToDatetime(tzinfo=UTC).isoformat()
    for name, dim in GROUPS.items():
        if dim not in dims:
            continue
        if name == "provider":
            out[name] = common_pb2.Provider.Name(row.provider).removeprefix("PROVIDER_").lower()
        else:
            out[name] = getattr(row, ROW_FIELD[name])
    out.update(_totals_dict(row.totals))
    return out


def _totals_dict(t: ledger_pb2.UsageTotals) -> dict[str, Any]:
    return {
        "requests": t.requests, "input_tokens": t.usage.input_tokens,
        "cached_input_tokens": t.usage.cached_input_tokens,
        "output_tokens": t.usage.output_tokens, "cost_nusd": t.cost_nusd,
        "cost_usd": usd(t.cost_nusd), "cache_hit_requests": t.cache_hit_requests,
        "cache_saved_cost_nusd": t.cache_saved_cost_nusd,
        "compression_saved_tokens": t.compression_saved_tokens,
        "error_requests": t.error_requests, "success_rate_bp": t.success_rate_bp,
        "avg_latency_ms": t.avg_latency_ms,
    }


def _table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        out.write("no usage in this range\n")
        return
    skip = {"cost_nusd", "cache_saved_cost_nusd", "success_rate_bp"}
    cols = [c for c in rows[0] if c not in skip]
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)) + "\n")
    for x in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)).rstrip() + "\n")


async def _query(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    dims, grain = _group_by(args.group_by)
    if args.limit < 1:
        raise UsageError("--limit must be 1 or more", 2)
    request = ledger_pb2.QueryUsageRequest(
        filter=usage_filter_of(args, datetime.now(UTC)), group_by=dims, granularity=grain,
        order_by=ORDERS[args.order], page_size=min(args.limit, 1000),
        time_zone=args.time_zone)
    async with open_channel(settings, "ledger") as channel:
        reply = await ledger_pb2_grpc.LedgerServiceStub(channel).QueryUsage(request)
    rows = [_row_dict(r, dims, grain) for r in reply.rows]
    total = _totals_dict(reply.total)
    if args.json:
        json.dump({"rows": rows, "total": total}, out)
        out.write("\n")
    elif args.csv:
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        _table(rows, out)
        out.write(f"total: {total['requests']} requests, {total['input_tokens']} input + "
                  f"{total['output_tokens']} output tokens, {total['cost_usd']}\n")


def _event_csv_row(e: events_pb2.UsageEvent) -> list[Any]:
    u = e.usage
    return [e.event_id, e.occurred_at.ToDatetime(tzinfo=UTC).isoformat(), e.org_id,
            e.project_id, e.user_id, e.session_id, common_pb2.Provider.Name(e.provider),
            e.served_model, events_pb2.UsageStatus.Name(e.status), u.input_tokens,
            u.cached_input_tokens, u.cache_write_input_tokens, u.output_tokens,
            u.reasoning_tokens, e.cost_nusd, e.cache_hit, e.cache_saved_tokens,
            e.cache_saved_cost_nusd, e.compression_saved_tokens, e.compression_saved_cost_nusd,
            e.latency_ms, common_pb2.BudgetDecision.Name(e.budget_decision)]


def event_json(e: events_pb2.UsageEvent) -> str:
    return json.dumps(json_format.MessageToDict(e, preserving_proto_field_name=True))


async def _export(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    request = ledger_pb2.ExportEventsRequest(filter=usage_filter_of(args, datetime.now(UTC)))
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(CSV_EVENT_FIELDS)
    count = 0
    async with open_channel(settings, "ledger") as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        async for chunk in stub.ExportEvents(request, timeout=EXPORT_TIMEOUT_SECONDS):
            for e in chunk.events:
                if writer:
                    writer.writerow(_event_csv_row(e))
                else:
                    out.write(event_json(e) + "\n")
                count += 1
    return count


async def _tail(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    if args.project and not args.org:
        raise UsageError("--project needs --org", 2)
    try:
        nc = await nats.connect(settings.nats_url,
                                connect_timeout=settings.dependency_timeout_seconds,
                                max_reconnect_attempts=-1)
    except Exception as exc:
        raise UsageError(f"cannot reach NATS at {settings.nats_url}: {exc}") from None
    seen = 0
    try:
        sub = await nc.subscribe(usage_filter(settings.usage_subject_prefix, args.org,
                                              args.project))
        if not args.json:
            out.write(f"# tailing {sub.subject}; Ctrl-C to stop\n")
            out.flush()
        async for msg in sub.messages:
            try:
                e = events_pb2.UsageEvent.FromString(msg.data)
            except Exception:
                continue  # not an event; the ledger dead-letters it
            if args.json:
                out.write(event_json(e) + "\n")
            else:
                out.write(f"{e.occurred_at.ToDatetime(tzinfo=UTC):%H:%M:%S} {e.org_id}/"
                          f"{e.project_id} {e.user_id or '-'} {e.served_model or '-'} "
                          f"{events_pb2.UsageStatus.Name(e.status).removeprefix('USAGE_STATUS_')}"
                          f" in={e.usage.input_tokens} out={e.usage.output_tokens} "
                          f"{usd(e.cost_nusd)}\n")
            out.flush()
            seen += 1
            if args.count and seen >= args.count:
                break
    finally:
        await nc.close()


METRICS = {common_pb2.LIMIT_METRIC_TOKENS: ("tokens", "tokens"),
           common_pb2.LIMIT_METRIC_COST: ("cost", "nusd"),
           common_pb2.LIMIT_METRIC_REQUESTS: ("requests", "requests")}


def scope_text(s: common_pb2.Scope) -> str:
    """The budget's text form of a scope: project:acme/web, session:acme/web/alice/s1..."""
    ids = {common_pb2.SCOPE_KIND_ORG: (s.org_id,),
           common_pb2.SCOPE_KIND_PROJECT: (s.org_id, s.project_id),
           common_pb2.SCOPE_KIND_USER: (s.org_id, s.project_id, s.user_id),
           common_pb2.SCOPE_KIND_SESSION: tuple(x for x in (s.org_id, s.project_id, s.user_id,
                                                            s.session_id) if x),
           common_pb2.SCOPE_KIND_API_KEY: (s.org_id, s.api_key_id)}.get(s.kind, ())
    kind = common_pb2.ScopeKind.Name(s.kind).removeprefix("SCOPE_KIND_").lower()
    return f"{kind}:{'/'.join(ids)}"


def _stamp(row: ledger_pb2.ReconcileRow, name: str) -> str:
    return getattr(row, name).ToDatetime(tzinfo=UTC).isoformat() if row.HasField(name) else ""


def reconcile_dict(row: ledger_pb2.ReconcileRow) -> dict[str, Any]:
    metric, unit = METRICS.get(row.metric, ("unknown", ""))
    return {"limit_id": row.limit_id, "scope": scope_text(row.scope), "metric": metric,
            "unit": unit, "period_start": _stamp(row, "period_start"),
            "period_end": _stamp(row, "period_end"), "budget_used": row.budget_used,
            "ledger_used": row.ledger_used, "drift": row.drift,
            "within_tolerance": row.within_tolerance}


def _amount(value: int, unit: str) -> str:
    return f"{value} ({usd(value)})" if unit == "nusd" and value else str(value)


def _reconcile_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        out.write("no budget limits to reconcile\n")
        return
    cols = ("limit_id", "scope", "metric", "period_start", "budget_used", "ledger_used",
            "drift", "status")
    cells = [[r["limit_id"], r["scope"], f"{r['metric']} ({r['unit']})",
              r["period_start"] or "(total)", _amount(r["budget_used"], r["unit"]),
              _amount(r["ledger_used"], r["unit"]), _amount(r["drift"], r["unit"]),
              _verdict(r)] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)) + "\n")
    for x in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)).rstrip() + "\n")


def _verdict(row: dict[str, Any]) -> str:
    if not row["within_tolerance"]:
        return "DRIFT"
    return "ok" if row["drift"] == 0 else "tolerated"


async def _reconcile(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    if args.project and not args.org:
        raise UsageError("--project needs --org", 2)
    request = ledger_pb2.ReconcileRequest(tolerance_bp=args.tolerance_bp)
    if args.project:
        request.scope.CopyFrom(common_pb2.Scope(kind=common_pb2.SCOPE_KIND_PROJECT,
                                                org_id=args.org, project_id=args.project))
    elif args.org:
        request.scope.CopyFrom(common_pb2.Scope(kind=common_pb2.SCOPE_KIND_ORG,
                                                org_id=args.org))
    async with open_channel(settings, "ledger") as channel:
        reply = await ledger_pb2_grpc.LedgerServiceStub(channel).Reconcile(request)
    rows = [reconcile_dict(r) for r in reply.rows]
    watermark = reply.watermark.ToDatetime(tzinfo=UTC).isoformat()
    if args.json:
        json.dump({"rows": rows, "drifted_limits": reply.drifted_limits,
                   "watermark": watermark}, out)
        out.write("\n")
    else:
        _reconcile_table(rows, out)
        out.write(f"{reply.drifted_limits} of {len(rows)} limits drifted (ledger complete up "
                  f"to {watermark})\n")
    return 1 if reply.drifted_limits else 0


def reconcile_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings()
        return asyncio.run(_reconcile(settings, args, sys.stdout))
    except UsageError as exc:
        print(f"tokenrt usage reconcile: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt usage reconcile: the ledger answered {exc.code().name}: "
              f"{exc.details()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise UsageError(str(exc), 2) from None


def _run(coro_fn: Any, args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        settings = _settings()
        result = asyncio.run(coro_fn(settings, args, out or sys.stdout))
        if coro_fn is _export and isinstance(result, int):
            print(f"exported {result} events", file=sys.stderr)
        return 0
    except UsageError as exc:
        print(f"tokenrt usage: {exc}", file=sys.stderr)
        return exc.code
    except grpc.aio.AioRpcError as exc:
        print(f"tokenrt usage: the ledger answered {exc.code().name}: {exc.details()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def query_command(args: argparse.Namespace) -> int:
    return _run(_query, args)


def export_command(args: argparse.Namespace) -> int:
    if args.output == "-":
        return _run(_export, args)
    try:
        with open(args.output, "w", newline="") as f:
            return _run(_export, args, f)
    except OSError as exc:
        print(f"tokenrt usage export: cannot write {args.output}: {exc.strerror}",
              file=sys.stderr)
        return 1


def tail_command(args: argparse.Namespace) -> int:
    return _run(_tail, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tokenrt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
