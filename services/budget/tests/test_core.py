"""The pure budget core: scopes, limits, periods (zones, DST, month lengths), levels,
decisions; property-based where an invariant is at stake."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenrt.v1 import common_pb2 as K
from tokenrt_budget import core
from tokenrt_budget.core import Check, InvalidInput, Limit, Scope

ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("posix"))
CALENDAR = [K.LIMIT_PERIOD_MINUTE, K.LIMIT_PERIOD_HOUR, K.LIMIT_PERIOD_DAY,
            K.LIMIT_PERIOD_WEEK, K.LIMIT_PERIOD_MONTH]
instants = st.datetimes(min_value=datetime(1975, 1, 1), max_value=datetime(2090, 1, 1),
                        timezones=st.just(UTC))
zones = st.sampled_from(ZONES + ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                 "America/Santiago", "Asia/Kolkata", "Pacific/Apia"])

ORG = Scope(core.ORG, "acme")


def lim(**kw: object) -> Limit:
    base: dict[str, object] = dict(limit_id="l1", scope=ORG, metric=K.LIMIT_METRIC_TOKENS,
                                   period=K.LIMIT_PERIOD_DAY, limit=1000,
                                   action=K.LIMIT_ACTION_DENY)
    base.update(kw)
    return Limit(**base)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(instants, zones, st.sampled_from(CALENDAR))
def test_period_holds_now_and_periods_tile(now: datetime, zone: str, period: int) -> None:
    z = ZoneInfo(zone)
    start, end = core.period_bounds(period, z, now)
    assert start <= now < end
    # The next period starts exactly where this one ends, and a period's start is its own.
    assert core.period_bounds(period, z, end)[0] == end
    assert core.period_bounds(period, z, start) == (start, end)
    assert core.period_bounds(period, z, end - timedelta(microseconds=1)) == (start, end)


@settings(max_examples=300, deadline=None)
@given(instants, zones)
def test_month_is_the_local_calendar_month(now: datetime, zone: str) -> None:
    z = ZoneInfo(zone)
    start, end = core.period_bounds(K.LIMIT_PERIOD_MONTH, z, now)
    local = now.astimezone(z)
    first = start.astimezone(z)
    assert (first.year, first.month) == (local.year, local.month) or first.day == 1
    last_instant = (end - timedelta(seconds=1)).astimezone(z)
    assert (last_instant.year, last_instant.month) == (local.year, local.month)
    days = calendar.monthrange(local.year, local.month)[1]
    # Whole days give or take the DST shifts of the month (at most a few hours).
    assert abs((end - start) - timedelta(days=days)) <= timedelta(hours=3)


@given(st.integers(1970, 2100), st.integers(1, 12))
def test_month_lengths_in_utc(year: int, month: int) -> None:
    start, end = core.period_bounds(K.LIMIT_PERIOD_MONTH, ZoneInfo("UTC"),
                                    datetime(year, month, 15, tzinfo=UTC))
    assert start == datetime(year, month, 1, tzinfo=UTC)
    assert (end - start).days == calendar.monthrange(year, month)[1]


@settings(max_examples=200, deadline=None)
@given(instants, zones)
def test_weeks_start_on_local_monday(now: datetime, zone: str) -> None:
    z = ZoneInfo(zone)
    start, end = core.period_bounds(K.LIMIT_PERIOD_WEEK, z, now)
    assert start.astimezone(z).weekday() in (0, 6) or start.astimezone(z).hour != 0
    assert (end - start) <= timedelta(days=7, hours=3)
    assert now.astimezone(z).isocalendar()[:2] == (end - timedelta(seconds=1)).astimezone(
        z).isocalendar()[:2]


def test_dst_days_in_berlin() -> None:
    z = ZoneInfo("Europe/Berlin")
    spring = datetime(2026, 3, 29, 12, tzinfo=UTC)
    autumn = datetime(2026, 10, 25, 12, tzinfo=UTC)
    s, e = core.period_bounds(K.LIMIT_PERIOD_DAY, z, spring)
    assert e - s == timedelta(hours=23)
    assert s == datetime(2026, 3, 28, 23, tzinfo=UTC)
    s, e = core.period_bounds(K.LIMIT_PERIOD_DAY, z, autumn)
    assert e - s == timedelta(hours=25)
    # Hours of the autumn day: 25 distinct hour periods, 02:00 local occurring twice.
    hours = set()
    t = s
    while t < e:
        hours.add(core.period_bounds(K.LIMIT_PERIOD_HOUR, z, t))
        t += timedelta(minutes=20)
    assert len(hours) == 25


def test_half_hour_zone_hours_and_lord_howe_half_hour_dst() -> None:
    s, e = core.period_bounds(K.LIMIT_PERIOD_HOUR, ZoneInfo("Asia/Kolkata"),
                              datetime(2026, 5, 1, 10, 10, tzinfo=UTC))
    assert (s, e) == (datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
                      datetime(2026, 5, 1, 10, 30, tzinfo=UTC))
    # Lord Howe moves its clocks by 30 minutes: one local hour lasts 30 minutes.
    z = ZoneInfo("Australia/Lord_Howe")
    day_s, day_e = core.period_bounds(K.LIMIT_PERIOD_DAY, z, datetime(2026, 10, 4, 2, tzinfo=UTC))
    lengths = set()
    t = day_s
    while t < day_e:
        a, b = core.period_bounds(K.LIMIT_PERIOD_HOUR, z, t)
        lengths.add(b - a)
        t = b
    assert lengths == {timedelta(hours=1), timedelta(minutes=30)}


def test_window_keys_differ_per_period_and_total_has_none() -> None:
    now = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    day = core.window(lim(), now)
    nxt = core.window(lim(), now + timedelta(days=1))
    assert day.key != nxt.key and day.end == nxt.start
    total = core.window(lim(period=K.LIMIT_PERIOD_TOTAL), now)
    assert total == core.Window("total", None, None)
    berlin = core.window(lim(time_zone="Europe/Berlin"), now)
    assert berlin.start == datetime(2026, 11, 27, 23, tzinfo=UTC)


@given(st.integers(0, 10**12), st.integers(1, 10**12), st.integers(1, 10000),
       st.integers(1, 10000))
def test_levels_follow_thresholds(held: int, limit: int, a: int, b: int) -> None:
    warn, crit = min(a, b), max(a, b)
    got = core.level(held, limit, warn, crit)
    if held >= limit:
        assert got == K.BUDGET_LEVEL_EXCEEDED
    elif held * 10000 >= limit * crit:
        assert got == K.BUDGET_LEVEL_CRITICAL
    elif held * 10000 >= limit * warn:
        assert got == K.BUDGET_LEVEL_WARNING
    else:
        assert got == K.BUDGET_LEVEL_OK
    # Monotone: more held never lowers the level.
    assert core.level(held + 1, limit, warn, crit) >= got


def test_95_percent_is_critical_not_exceeded() -> None:
    assert core.level(95, 100, 8000, 9500) == K.BUDGET_LEVEL_CRITICAL
    assert core.level(79, 100, 8000, 9500) == K.BUDGET_LEVEL_OK
    assert core.level(80, 100, 8000, 9500) == K.BUDGET_LEVEL_WARNING
    assert core.level(100, 100, 8000, 9500) == K.BUDGET_LEVEL_EXCEEDED


actions = st.sampled_from(list(core.ACTION_NAMES))


@given(st.lists(st.tuples(actions, st.integers(0, 200), st.integers(0, 200), st.integers(0, 50)),
                min_size=1, max_size=12), st.booleans())
def test_decision_is_all_or_nothing_and_strictest_wins(
        rows: list[tuple[int, int, int, int]], degraded: bool) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    checks = [Check(lim(limit_id=f"l{i}", action=a, limit=100), used, res, need,
                    window=core.window(lim(), now))
              for i, (a, used, res, need) in enumerate(rows)]
    d = core.decide(checks, now, degraded)
    refusing = [c for c in checks if c.over and core.blocks(c.limit.action, degraded)]
    if d.decision == K.BUDGET_DECISION_ALLOW:
        # Allowed: every limit that can refuse still fits the request.
        assert not refusing
        assert all(core.fits(c.used, c.reserved, c.need, 100) for c in checks
                   if core.blocks(c.limit.action, degraded))
    else:
        rank = {K.BUDGET_DECISION_DENY: 5, K.BUDGET_DECISION_THROTTLE: 4,
                K.BUDGET_DECISION_QUEUE: 3, K.BUDGET_DECISION_DEGRADE: 2}
        arank = {K.LIMIT_ACTION_DENY: 5, K.LIMIT_ACTION_THROTTLE: 4, K.LIMIT_ACTION_QUEUE: 3,
                 K.LIMIT_ACTION_DEGRADE: 2}
        assert rank[d.decision] == max(arank[c.limit.action] for c in refusing)
        assert d.triggered and all(checks[int(t[1:])].over for t in d.triggered)
        assert d.retry_after_ms > 0  # day periods: the time to the reset


@settings(max_examples=200)
@given(st.integers(1, 10_000), st.lists(st.tuples(st.integers(0, 500), st.integers(0, 100)),
                                        max_size=200))
def test_never_overspent_when_actual_is_at_most_the_estimate(
        limit: int, requests: list[tuple[int, int]]) -> None:
    """The reservation discipline itself: check-then-hold with actual <= estimate."""
    used = reserved = 0
    for estimate, pct in requests:
        c = Check(lim(limit=limit), used, reserved, estimate)
        if core.decide([c], datetime(2026, 1, 1, tzinfo=UTC)).decision != K.BUDGET_DECISION_ALLOW:
            continue
        reserved += estimate
        actual = estimate * pct // 100
        reserved -= estimate
        used += actual
        assert used + reserved <= limit


def test_scopes_parse_and_validate() -> None:
    s = core.parse_scope("project:acme/web")
    assert s == Scope(core.PROJECT, "acme", "web") and s.text == "project:acme/web"
    assert core.parse_scope("session:acme/web/alice/s1").user_id == "alice"
    assert core.parse_scope("session:acme/web/s1").text == "session:acme/web/s1"
    with pytest.raises(InvalidInput, match="use one of|KIND one of"):
        core.parse_scope("team:acme")
    with pytest.raises(InvalidInput, match="project:ORG/PROJECT"):
        core.parse_scope("project:acme")
    with pytest.raises(InvalidInput, match="unknown scope kind"):
        core.check_scope(Scope(9, "acme"))
    with pytest.raises(InvalidInput, match="must not set"):
        core.check_scope(Scope(core.ORG, "acme", project_id="x"))
    with pytest.raises(InvalidInput, match="one organization"):
        core.check_chain([Scope(core.ORG, "a"), Scope(core.PROJECT, "b", "p")])
    with pytest.raises(InvalidInput, match="broadest"):
        core.check_chain([Scope(core.PROJECT, "a", "p"), Scope(core.ORG, "a")])


def test_limits_are_validated() -> None:
    assert core.check_limit(lim()).limit == 1000
    bad = [(dict(limit=0), "limit.limit"), (dict(limit=-5), "limit.limit"),
           (dict(limit=2**60), "limit.limit"),
           (dict(period=K.LIMIT_PERIOD_ROLLING), "rolling_window_seconds"),
           (dict(rolling_window_seconds=60), "rolling_window_seconds"),
           (dict(time_zone="Mars/Olympus"), "time_zone"),
           (dict(warning_bp=9900, critical_bp=9000), "warning"),
           (dict(action=0), "limit.action"), (dict(metric=7), "limit.metric")]
    for kw, field in bad:
        with pytest.raises(InvalidInput) as err:
            core.check_limit(lim(**kw))
        assert field in err.value.field


@given(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False))
def test_usd_to_nusd_is_exact_half_even(value: object) -> None:
    from decimal import ROUND_HALF_EVEN, Decimal
    got = core.usd_to_nusd(str(value))
    assert got == int((Decimal(str(value)) * 10**9).quantize(Decimal(1), ROUND_HALF_EVEN))
    assert core.usd_to_nusd("50") == 50 * 10**9
    assert core.usd_to_nusd("0.0000000005") == 0 and core.usd_to_nusd("0.0000000015") == 2
    assert core.nusd_to_usd(12_500_000_000) == "12.5"


def test_rolling_buckets_cover_the_window() -> None:
    for w in (1, 59, 60, 61, 3600, 86400, 100_000):
        size, n = core.rolling_buckets(w)
        assert size * n >= w and n <= core.ROLLING_BUCKETS and size * (n - 1) < w
