"""The pure parts: time segments over rollups, rounding, decoding and rejection reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenrt.v1 import ledger_pb2
from tokenrt_ledger.convert import event_filter
from tokenrt_ledger.core import (
    EVENT_COLUMNS,
    Rejected,
    basis_points,
    decode,
    div_round,
    floor_to,
    parse_duration,
    segments,
)
from tokenrt_ledger.migrate import migrations
from tokenrt_usage.testing import make_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
instants = st.integers(0, 400 * 24 * 60 * 60).map(lambda s: T0 + timedelta(seconds=s))


@given(instants, instants, st.sampled_from(["minute", "hour", "day"]))
def test_segments_tile_the_range_exactly(a: datetime, b: datetime, coarsest: str) -> None:
    start, end = min(a, b), max(a, b)
    segs = segments(start, end, coarsest)
    lo, hi = floor_to(start, "minute"), floor_to(end, "minute")
    if lo == hi:
        assert segs == []
        return
    assert segs[0].start == lo and segs[-1].end == hi
    for x, y in zip(segs, segs[1:], strict=False):
        assert x.end == y.start  # contiguous, no overlap
    order = ["minute", "hour", "day"]
    for s in segs:
        assert s.start < s.end
        assert order.index(s.grain) <= order.index(coarsest)
        assert floor_to(s.start, s.grain) == s.start and floor_to(s.end, s.grain) == s.end
    # Few rows: at most two partial runs of each finer grain around the coarse middle.
    assert len(segs) <= 2 * order.index(coarsest) + 1


def test_a_month_is_read_from_day_rows() -> None:
    segs = segments(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert [(s.grain, s.start.day) for s in segs] == [("day", 1)]


def test_div_round_is_half_even() -> None:
    assert [div_round(n, 2) for n in (1, 3, 5, 7)] == [0, 2, 2, 4]
    assert div_round(10, 0) == 0
    assert basis_points(1, 3) == 3333 and basis_points(2, 3) == 6667


def test_decode_maps_every_column() -> None:
    event = make_event(input_tokens=7, output_tokens=3, cost_nusd=99)
    row = decode(event.SerializeToString(), datetime.now(UTC))
    assert len(row) == len(EVENT_COLUMNS)
    named = dict(zip(EVENT_COLUMNS, row, strict=True))
    assert named["event_id"] == event.event_id and named["input_tokens"] == 7
    assert named["cost_nusd"] == 99 and named["payload"] == event.SerializeToString()
    assert named["occurred_at"] == event.occurred_at.ToDatetime(tzinfo=UTC)


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda e: e.ClearField("event_id"), "invalid: missing event_id"),
    (lambda e: e.ClearField("org_id"), "invalid: missing org_id"),
    (lambda e: e.ClearField("occurred_at"), "invalid: missing occurred_at"),
    (lambda e: setattr(e, "user_id", "a\x00b"), "invalid: a text field contains a NUL character"),
    (lambda e: e.occurred_at.FromSeconds(10), "invalid: occurred_at 1970-01-01T00:00:10+00:00 is out of range"),
])
def test_decode_rejects_with_a_reason(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    event = make_event()
    mutate(event)
    with pytest.raises(Rejected, match=reason.replace("+", r"\+")):
        decode(event.SerializeToString(), datetime.now(UTC))
    with pytest.raises(Rejected, match="^decode: "):
        decode(b"\xff\xff\xff", datetime.now(UTC))


def test_durations() -> None:
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("7d") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("yesterday")


def test_migrations_are_packaged_in_order() -> None:
    found = migrations()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].version == 1 and "usage_events" in found[0].sql


def test_a_query_without_an_end_covers_the_current_minute() -> None:
    now = datetime(2026, 3, 4, 12, 34, 56, tzinfo=UTC)
    f = event_filter(ledger_pb2.UsageFilter(), now=now)
    assert f.end == datetime(2026, 3, 4, 12, 35, tzinfo=UTC)  # the usage of :34 shows
    on_the_minute = datetime(2026, 3, 4, 12, 35, tzinfo=UTC)
    assert event_filter(ledger_pb2.UsageFilter(), now=on_the_minute).end == on_the_minute
