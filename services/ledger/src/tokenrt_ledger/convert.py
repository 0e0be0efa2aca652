"""Protobuf <-> ledger types, with the checks that turn bad input into INVALID_ARGUMENT."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp

from tokenrt.v1 import common_pb2, events_pb2, ledger_pb2
from tokenrt_ledger.core import basis_points, ceil_to, div_round
from tokenrt_ledger.store import EventFilter

DEFAULT_RANGE = timedelta(hours=24)
DEFAULT_PAGE = 100
MAX_PAGE = 1000

DIMENSION = {
    ledger_pb2.USAGE_DIMENSION_ORG: "org_id",
    ledger_pb2.USAGE_DIMENSION_PROJECT: "project_id",
    ledger_pb2.USAGE_DIMENSION_USER: "user_id",
    ledger_pb2.USAGE_DIMENSION_SESSION: "session_id",
    ledger_pb2.USAGE_DIMENSION_MODEL: "model",
    ledger_pb2.USAGE_DIMENSION_PROVIDER: "provider",
}
GRAIN = {
    ledger_pb2.TIME_GRANULARITY_UNSPECIFIED: "",
    ledger_pb2.TIME_GRANULARITY_MINUTE: "minute",
    ledger_pb2.TIME_GRANULARITY_HOUR: "hour",
    ledger_pb2.TIME_GRANULARITY_DAY: "day",
}
ORDER = {
    ledger_pb2.USAGE_ORDER_UNSPECIFIED: "",
    ledger_pb2.USAGE_ORDER_COST_DESC: "cost",
    ledger_pb2.USAGE_ORDER_TOKENS_DESC: "tokens",
    ledger_pb2.USAGE_ORDER_REQUESTS_DESC: "requests",
}


class BadRequest(ValueError):
    """Invalid input; `field` names the request field, the message says what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def to_datetime(ts: Timestamp, field: str = "timestamp") -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # nanos out of range, year past 9999...
        raise BadRequest(field, f"{field} is not a valid timestamp: {exc}") from None


def to_timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def event_filter(f: ledger_pb2.UsageFilter, field: str = "filter",
                 now: datetime | None = None) -> EventFilter:
    # Rollups have minute resolution and ranges are cut at whole minutes: without an end
    # the range runs to the end of the current minute, so the usage of the last seconds
    # shows (an explicit end_time is rounded down, as documented).
    end = (to_datetime(f.end_time, f"{field}.end_time") if f.HasField("end_time")
           else ceil_to(now or datetime.now(UTC), "minute"))
    start = (to_datetime(f.start_time, f"{field}.start_time") if f.HasField("start_time")
             else end - DEFAULT_RANGE)
    if start >= end:
        raise BadRequest(f"{field}.start_time",
                         f"start_time {start.isoformat()} must be before end_time "
                         f"{end.isoformat()}")
    for i, p in enumerate(f.providers):
        if p not in common_pb2.Provider.values() or p == 0:
            raise BadRequest(f"{field}.providers[{i}]", f"unknown provider {p}")
    for i, st in enumerate(f.statuses):
        if st not in events_pb2.UsageStatus.values() or st == 0:
            raise BadRequest(f"{field}.statuses[{i}]", f"unknown usage status {st}")
    return EventFilter(start=start, end=end, org_id=f.org_id, project_id=f.project_id,
                       user_id=f.user_id, session_id=f.session_id, api_key_id=f.api_key_id,
                       models=list(f.models), providers=list(f.providers),
                       statuses=list(f.statuses))


def scope_filter(scope: common_pb2.Scope, start: datetime, end: datetime,
                 field: str) -> EventFilter:
    """The events of one budget scope; INVALID_ARGUMENT when the scope is malformed."""
    need = {
        common_pb2.SCOPE_KIND_ORG: ("org_id",),
        common_pb2.SCOPE_KIND_PROJECT: ("org_id", "project_id"),
        common_pb2.SCOPE_KIND_USER: ("org_id", "project_id", "user_id"),
        common_pb2.SCOPE_KIND_SESSION: ("org_id", "project_id", "session_id"),
        common_pb2.SCOPE_KIND_API_KEY: ("org_id", "api_key_id"),
    }.get(scope.kind)
    if need is None:
        raise BadRequest(f"{field}.kind",
                         "scope kind must be ORG, PROJECT, USER, SESSION or API_KEY")
    allowed = set(need) | ({"user_id"} if scope.kind == common_pb2.SCOPE_KIND_SESSION else set())
    for name in ("org_id", "project_id", "user_id", "session_id", "api_key_id"):
        value = getattr(scope, name)
        if name in need and not value:
            raise BadRequest(f"{field}.{name}", f"a {common_pb2.ScopeKind.Name(scope.kind)} "
                             f"scope needs {name}")
        if name not in allowed and value:
            raise BadRequest(f"{field}.{name}", f"a {common_pb2.ScopeKind.Name(scope.kind)} "
                             f"scope must leave {name} empty")
    if start >= end:
        raise BadRequest(f"{field}.start_time", "start_time must be before end_time")
    return EventFilter(start=start, end=end, org_id=scope.org_id, project_id=scope.project_id,
                       user_id=scope.user_id, session_id=scope.session_id,
                       api_key_id=scope.api_key_id)


def page_size(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise BadRequest(field, "page_size must be 0 (default) or more")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def encode_token(parts: list[str]) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


def decode_token(token: str, count: int, field: str = "page_token") -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(token.encode()).decode().split("\x1f")
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != count:
        raise BadRequest(field, "page_token is not one this service issued; pass "
                         "next_page_token from the previous answer unchanged")
    return parts


def decode_offset(token: str, field: str = "page_token") -> int:
    """The row offset a QueryUsage page token carries."""
    offset = decode_token(token, 1, field)[0]
    if not offset.isdigit():
        raise BadRequest(field, "page_token is not one this service issued; pass "
                         "next_page_token from the previous answer unchanged")
    return int(offset)


def time_zone(name: str) -> str:
    if not name or name == "UTC":
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest("time_zone", f"{name!r} is not an IANA time zone such as "
                         "'Europe/Paris' or 'America/New_York'") from None
    return name


def totals(r: Any) -> ledger_pb2.UsageTotals:
    answered = r["ok_requests"] + r["cache_hit_requests"]
    return ledger_pb2.UsageTotals(
        requests=r["requests"], ok_requests=r["ok_requests"],
        cache_hit_requests=r["cache_hit_requests"], denied_requests=r["denied_requests"],
        throttled_requests=r["throttled_requests"], cancelled_requests=r["cancelled_requests"],
        error_requests=r["error_requests"], degraded_requests=r["degraded_requests"],
        usage=common_pb2.Usage(
            input_tokens=r["input_tokens"], cached_input_tokens=r["cached_input_tokens"],
            cache_write_input_tokens=r["cache_write_input_tokens"],
            output_tokens=r["output_tokens"], reasoning_tokens=r["reasoning_tokens"]),
        cost_nusd=r["cost_nusd"], cache_saved_tokens=r["cache_saved_tokens"],
        cache_saved_cost_nusd=r["cache_saved_cost_nusd"],
        compressed_requests=r["compressed_requests"],
        compression_saved_tokens=r["compression_saved_tokens"],
        compression_saved_cost_nusd=r["compression_saved_cost_nusd"],
        latency_ms_sum=r["latency_ms_sum"],
        avg_latency_ms=div_round(r["answered_latency_ms_sum"], answered),
        avg_time_to_first_token_ms=div_round(r["ttft_ms_sum"], r["streamed_requests"]),
        success_rate_bp=basis_points(answered, r["requests"]),
        cache_hit_rate_bp=basis_points(r["cache_hit_requests"], answered),
    )


def usage_row(r: Any) -> ledger_pb2.UsageRow:
    row = ledger_pb2.UsageRow(totals=totals(r))
    keys = set(r.keys())
    for name in ("org_id", "project_id", "user_id", "session_id", "model", "provider"):
        if name in keys:
            setattr(row, name, r[name])
    if "bucket_start" in keys:
        row.bucket_start.FromDatetime(r["bucket_start"])
    return row


def stored_event(payload: bytes, recorded_at: datetime) -> events_pb2.UsageEvent:
    event = events_pb2.UsageEvent.FromString(payload)
    event.recorded_at.FromDatetime(recorded_at)
    return event
