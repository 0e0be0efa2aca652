"""The ledger's domain, pure: decoding events into rows, partition months, how a time
range splits over the minute / hour / day rollups, and derived totals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from google.protobuf.message import DecodeError

from tokenrt.v1 import events_pb2
from tokenrt_usage.events import problems

# Columns of ledger.usage_events filled from an event, in COPY order (recorded_at is
# set by the database at insert).
EVENT_COLUMNS = (
    "event_id", "occurred_at", "org_id", "project_id", "user_id", "session_id", "api_key_id",
    "provider", "model", "status", "input_tokens", "cached_input_tokens",
    "cache_write_input_tokens", "output_tokens", "reasoning_tokens", "cost_nusd", "cache_hit",
    "cache_saved_tokens", "cache_saved_cost_nusd", "compression_applied",
    "compression_saved_tokens", "compression_saved_cost_nusd", "latency_ms",
    "time_to_first_token_ms", "stream", "degraded", "budget_reservation_id",
    "budget_reserved_at", "payload",
)

# Rollup measures: name -> aggregate over the inserted events (alias `e`).
ROLLUP_MEASURES: dict[str, str] = {
    "requests": "count(*)",
    "ok_requests": "count(*) FILTER (WHERE status = 1)",
    "cache_hit_requests": "count(*) FILTER (WHERE status = 2)",
    "denied_requests": "count(*) FILTER (WHERE status = 3)",
    "throttled_requests": "count(*) FILTER (WHERE status = 4)",
    "cancelled_requests": "count(*) FILTER (WHERE status = 5)",
    "error_requests": "count(*) FILTER (WHERE status = 6)",
    "degraded_requests": "count(*) FILTER (WHERE degraded)",
    "input_tokens": "sum(input_tokens)",
    "cached_input_tokens": "sum(cached_input_tokens)",
    "cache_write_input_tokens": "sum(cache_write_input_tokens)",
    "output_tokens": "sum(output_tokens)",
    "reasoning_tokens": "sum(reasoning_tokens)",
    "cost_nusd": "sum(cost_nusd)",
    "cache_saved_tokens": "sum(cache_saved_tokens)",
    "cache_saved_cost_nusd": "sum(cache_saved_cost_nusd)",
    "compressed_requests": "count(*) FILTER (WHERE compression_applied)",
    "compression_saved_tokens": "sum(compression_saved_tokens)",
    "compression_saved_cost_nusd": "sum(compression_saved_cost_nusd)",
    "latency_ms_sum": "sum(latency_ms)",
    "answered_latency_ms_sum": "coalesce(sum(latency_ms) FILTER (WHERE status IN (1, 2)), 0)",
    "streamed_requests": "count(*) FILTER (WHERE stream)",
    "ttft_ms_sum": "coalesce(sum(time_to_first_token_ms) FILTER (WHERE stream), 0)",
}
# The usage_events columns ROLLUP_MEASURES and the rollup keys read.
ROLLUP_INPUTS = (
    "occurred_at", "org_id", "project_id", "user_id", "session_id", "model", "provider",
    "status", "degraded", "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
    "output_tokens", "reasoning_tokens", "cost_nusd", "cache_saved_tokens",
    "cache_saved_cost_nusd", "compression_applied", "compression_saved_tokens",
    "compression_saved_cost_nusd", "latency_ms", "time_to_first_token_ms", "stream",
)
ROLLUP_KEYS = ("bucket_start", "org_id", "project_id", "user_id", "session_id", "model",
               "provider")
GRAINS = ("minute", "hour", "day")

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejected(ValueError):
    """A message the ledger cannot store; the message is the dead letter's reason."""


Row = tuple[Any, ...]
_OCCURRED = itemgetter(1)  # a Row's occurred_at


_PARSE = events_pb2.UsageEvent.FromString


def decode(data: bytes, now: datetime) -> Row:
    """The usage_events row of one message; Rejected with the reason when unusable.

    Runs once per event on the ledger's hot path, so it reads each field once and builds
    timestamps with positional timedelta arithmetic (cheaper than keyword arguments).
    """
    try:
        event = _PARSE(data)
    except DecodeError as exc:
        raise Rejected(f"decode: {exc}") from None
    found = problems(event)
    if found:
        raise Rejected("invalid: " + ", ".join(found))
    t = event.occurred_at
    occurred = _EPOCH + timedelta(0, t.seconds, t.nanos // 1000)
    if not EARLIEST <= occurred <= now + MAX_CLOCK_SKEW:
        raise Rejected(f"invalid: occurred_at {occurred.isoformat()} is out of range")
    event_id, org_id, project_id = event.event_id, event.org_id, event.project_id
    user_id, session_id, api_key_id = event.user_id, event.session_id, event.api_key_id
    model, reservation = event.served_model, event.budget_reservation_id
    if "\x00" in "".join((event_id, org_id, project_id, user_id, session_id, api_key_id, model,
                          reservation)):
        raise Rejected("invalid: a text field contains a NUL character")
    reserved = None
    if event.HasField("budget_reserved_at"):
        t = event.budget_reserved_at
        reserved = _EPOCH + timedelta(0, t.seconds, t.nanos // 1000)
    u = event.usage
    return (
        event_id, occurred, org_id, project_id, user_id, session_id, api_key_id,
        event.provider, model, event.status,
        u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens, u.output_tokens,
        u.reasoning_tokens, event.cost_nusd, event.cache_hit, event.cache_saved_tokens,
        event.cache_saved_cost_nusd, event.compression_applied, event.compression_saved_tokens,
        event.compression_saved_cost_nusd, event.latency_ms, event.time_to_first_token_ms,
        event.stream, bool(event.degraded_from_model), reservation, reserved,
        data,
    )


def month_start(t: datetime) -> datetime:
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def next_month(m: datetime) -> datetime:
    return datetime(m.year + m.month // 12, m.month % 12 + 1, 1, tzinfo=UTC)


def months_of(rows: list[Row]) -> set[datetime]:
    """First instants (UTC) of the months the rows' occurred_at fall in.

    Every month from the earliest to the latest row (usually one or two): min and max
    over the batch run in C, where a set of every row's month cost ~2 us per event.
    """
    if not rows:
        return set()
    m, last = month_start(min(rows, key=_OCCURRED)[1]), month_start(max(rows, key=_OCCURRED)[1])
    out = {m}
    while m < last:
        m = next_month(m)
        out.add(m)
    return out


# --- time ranges over rollups ---

_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def floor_to(t: datetime, grain: str) -> datetime:
    t = t.astimezone(UTC)
    if grain == "minute":
        return t.replace(second=0, microsecond=0)
    if grain == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_to(t: datetime, grain: str) -> datetime:
    f = floor_to(t, grain)
    return f if f == t.astimezone(UTC) else f + _STEP[grain]


@dataclass(frozen=True)
class Segment:
    """A part of a query's time range read from one rollup table: [start, end)."""

    grain: str
    start: datetime
    end: datetime


def segments(start: datetime, end: datetime, coarsest: str = "day") -> list[Segment]:
    """Cover [start, end) with as few rollup rows as possible.

    Whole days come from the day rollup, whole hours at the edges from the hour rollup,
    and the remaining minutes from the minute rollup. `coarsest` caps the table used
    (a query bucketed by hour cannot read day rows). Rollups have minute resolution:
    start and end are rounded down to the minute.
    """
    start, end = floor_to(start, "minute"), floor_to(end, "minute")
    if start >= end:
        return []
    allowed = GRAINS[: GRAINS.index(coarsest) + 1]
    out: list[Segment] = []

    def cover(lo: datetime, hi: datetime, level: int) -> None:
        if lo >= hi:
            return
        grain = allowed[level]
        if level == 0:
            out.append(Segment(grain, lo, hi))
            return
        a, b = ceil_to(lo, grain), floor_to(hi, grain)
        if a >= b:
            cover(lo, hi, level - 1)
            return
        cover(lo, a, level - 1)
        out.append(Segment(grain, a, b))
        cover(b, hi, level - 1)

    cover(start, end, len(allowed) - 1)
    return out


# --- derived figures ---


def div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-even, 0 when the denominator is 0."""
    if denominator == 0:
        return 0
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2 == 1):
        q += 1
    return q


def basis_points(part: int, whole: int) -> int:
    return div_round(part * 10_000, whole)


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `24h`, `7d`, `2w` -> timedelta; ValueError with the accepted forms."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 24h, 7d or 2w")
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])
