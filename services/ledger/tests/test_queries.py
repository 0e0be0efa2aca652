"""The gRPC queries of a real ledger process against what was published."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from tokenrt.v1 import common_pb2, events_pb2, ledger_pb2

from .conftest import END, START, N


def _filter(start: datetime = START, end: datetime = END, **kw: object) -> ledger_pb2.UsageFilter:
    f = ledger_pb2.UsageFilter(**kw)  # type: ignore[arg-type]
    f.start_time.FromDatetime(start)
    f.end_time.FromDatetime(end)
    return f


def _t(e: events_pb2.UsageEvent) -> datetime:
    return e.occurred_at.ToDatetime(tzinfo=UTC)


def _floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


async def test_usage_grouped_by_model_and_day_matches_the_events(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    reply = await stub.QueryUsage(ledger_pb2.QueryUsageRequest(
        filter=_filter(), group_by=[ledger_pb2.USAGE_DIMENSION_MODEL],
        granularity=ledger_pb2.TIME_GRANULARITY_DAY, page_size=1000), timeout=10)
    want: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in events:
        day = _t(e).replace(hour=0, minute=0, second=0, microsecond=0)
        acc = want[(day, e.served_model)]
        acc[0] += 1
        acc[1] += e.usage.input_tokens + e.usage.output_tokens
        acc[2] += e.cost_nusd
    got = {(r.bucket_start.ToDatetime(tzinfo=UTC), r.model):
           [r.totals.requests, r.totals.usage.input_tokens + r.totals.usage.output_tokens,
            r.totals.cost_nusd] for r in reply.rows}
    assert got == dict(want)
    assert reply.total.requests == N
    assert reply.total.cost_nusd == sum(e.cost_nusd for e in events)
    assert not reply.next_page_token


async def test_an_unaligned_range_and_a_project_filter(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    lo, hi = START + timedelta(hours=5, minutes=17), END - timedelta(hours=7, minutes=3)
    reply = await stub.QueryUsage(ledger_pb2.QueryUsageRequest(
        filter=_filter(lo, hi, org_id="org1", project_id="p2"),
        group_by=[ledger_pb2.USAGE_DIMENSION_USER]), timeout=10)
    chosen = [e for e in events if lo <= _floor_minute(_t(e)) < hi
              and e.org_id == "org1" and e.project_id == "p2"]
    assert chosen
    assert reply.total.requests == len(chosen)
    assert reply.total.usage.output_tokens == sum(e.usage.output_tokens for e in chosen)
    by_user: dict[str, int] = defaultdict(int)
    for e in chosen:
        by_user[e.user_id] += e.cost_nusd
    assert {r.user_id: r.totals.cost_nusd for r in reply.rows} == dict(by_user)
    # Derived figures (the seed's user stats): success rate, cache hit rate, avg latency.
    answered = [e for e in chosen if e.status in (1, 2)]
    t = reply.total
    assert t.success_rate_bp == round(len(answered) * 10_000 / len(chosen))
    assert t.cache_hit_rate_bp == round(sum(e.status == 2 for e in chosen) * 10_000 / len(answered))
    assert abs(t.avg_latency_ms - sum(e.latency_ms for e in answered) / len(answered)) <= 0.5
    assert t.compression_saved_tokens == sum(e.compression_saved_tokens for e in chosen)
    assert t.cache_saved_cost_nusd == sum(e.cache_saved_cost_nusd for e in chosen)


async def test_status_filter_reads_raw_events(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    reply = await stub.QueryUsage(ledger_pb2.QueryUsageRequest(
        filter=_filter(statuses=[events_pb2.USAGE_STATUS_ERROR])), timeout=10)
    errors = [e for e in events if e.status == events_pb2.USAGE_STATUS_ERROR]
    assert reply.total.requests == reply.total.error_requests == len(errors)


async def test_top_spenders_pages_and_report(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    spend: dict[str, int] = defaultdict(int)
    for e in events:
        spend[e.session_id] += e.cost_nusd
    rows, token = [], ""
    while True:
        reply = await stub.QueryUsage(ledger_pb2.QueryUsageRequest(
            filter=_filter(), group_by=[ledger_pb2.USAGE_DIMENSION_SESSION],
            order_by=ledger_pb2.USAGE_ORDER_COST_DESC, page_size=7, page_token=token), timeout=10)
        rows += reply.rows
        token = reply.next_page_token
        if not token:
            break
    assert [r.session_id for r in rows] == sorted(spend, key=lambda s: -spend[s])
    assert [r.totals.cost_nusd for r in rows] == sorted(spend.values(), reverse=True)

    report = await stub.GetReport(ledger_pb2.GetReportRequest(
        filter=_filter(), top_n=3, series_granularity=ledger_pb2.TIME_GRANULARITY_HOUR),
        timeout=10)
    assert report.total.requests == N
    assert sum(r.totals.cost_nusd for r in report.by_model) == report.total.cost_nusd
    assert {r.provider for r in report.by_provider} == {e.provider for e in events}
    assert len(report.by_user) == 3 and len(report.by_session) == 3
    per_session: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for e in events:
        per_session[(e.org_id, e.project_id, e.user_id, e.session_id)] += e.cost_nusd
    top = report.by_session[0]
    assert (top.org_id, top.project_id, top.user_id, top.session_id) == max(
        per_session, key=lambda k: per_session[k])
    assert top.totals.cost_nusd == max(per_session.values())
    assert sum(r.totals.requests for r in report.series) == N
    assert len(report.series) == len({_t(e).replace(minute=0, second=0, microsecond=0)
                                      for e in events})

    # Projects are named within their org: each row says which, and two orgs' projects of
    # the same name stay apart.
    per_project: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        per_project[(e.org_id, e.project_id)] += e.cost_nusd
    whole = await stub.GetReport(ledger_pb2.GetReportRequest(filter=_filter(), top_n=1000),
                                 timeout=10)
    assert {(r.org_id, r.project_id): r.totals.cost_nusd for r in whole.by_project} == \
        dict(per_project)
    assert all(r.org_id and r.project_id for r in whole.by_user)


async def test_events_by_id_page_and_export(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    one = events[17]
    got = (await stub.GetEvent(ledger_pb2.GetEventRequest(event_id=one.event_id), timeout=5)).event
    assert got.HasField("recorded_at")
    got.ClearField("recorded_at")
    assert got == one

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetEvent(ledger_pb2.GetEventRequest(event_id="no-such-event"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    detail = dict(err.value.trailing_metadata() or ())["tokenrt-error-detail-bin"]
    assert common_pb2.ErrorDetail.FromString(detail).reason == common_pb2.ERROR_REASON_EVENT_NOT_FOUND

    listed, token = [], ""
    while True:
        page = await stub.ListEvents(ledger_pb2.ListEventsRequest(
            filter=_filter(org_id="org0"), page_size=200, page_token=token), timeout=10)
        listed += page.events
        token = page.next_page_token
        if not token:
            break
    org0 = sorted((e for e in events if e.org_id == "org0"), key=lambda e: (_t(e), e.event_id),
                  reverse=True)
    assert [e.event_id for e in listed] == [e.event_id for e in org0]

    exported = [e async for chunk in stub.ExportEvents(
        ledger_pb2.ExportEventsRequest(filter=_filter()), timeout=30) for e in chunk.events]
    assert [e.event_id for e in exported] == [
        e.event_id for e in sorted(events, key=lambda e: (_t(e), e.event_id))]


async def test_sum_usage_per_scope_for_the_budget_rebuild(loaded) -> None:  # type: ignore[no-untyped-def]
    stub, events = loaded
    lo, hi = START + timedelta(days=1), END
    scopes = [common_pb2.Scope(kind=common_pb2.SCOPE_KIND_ORG, org_id="org0"),
              common_pb2.Scope(kind=common_pb2.SCOPE_KIND_USER, org_id="org1", project_id="p0",
                               user_id="u3")]
    req = ledger_pb2.SumUsageRequest()
    for scope in scopes:
        q = req.queries.add(scope=scope)
        q.start_time.FromDatetime(lo)
        q.end_time.FromDatetime(hi)
    reply = await stub.SumUsage(req, timeout=10)

    def charged(match) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
        xs = [e for e in events if e.budget_reservation_id and match(e)
              and lo <= e.budget_reserved_at.ToDatetime(tzinfo=UTC) < hi]
        return (sum(e.usage.input_tokens + e.usage.output_tokens for e in xs),
                sum(e.cost_nusd for e in xs), len(xs))

    want = [charged(lambda e: e.org_id == "org0"),
            charged(lambda e: (e.org_id, e.project_id, e.user_id) == ("org1", "p0", "u3"))]
    assert [(r.tokens, r.cost_nusd, r.requests) for r in reply.results] == want
    assert reply.results[0].query.scope == scopes[0]
    assert reply.HasField("watermark")

    # What the budget's catch-up asks: the same, without some reservations.
    ids = sorted(e.budget_reservation_id for e in events  # ones the first sum counted
                 if e.budget_reservation_id and e.org_id == "org0"
                 and lo <= e.budget_reserved_at.ToDatetime(tzinfo=UTC) < hi)
    prefix = ids[-1][:len(ids[-1]) - 4]
    req.exclude_reservation_ids.extend(ids[:2])
    req.exclude_reservation_prefix = prefix
    reply = await stub.SumUsage(req, timeout=10)
    kept = [charged(lambda e: e.org_id == "org0" and e.budget_reservation_id not in ids[:2]
                    and not e.budget_reservation_id.startswith(prefix)),
            charged(lambda e: (e.org_id, e.project_id, e.user_id) == ("org1", "p0", "u3")
                    and e.budget_reservation_id not in ids[:2]
                    and not e.budget_reservation_id.startswith(prefix))]
    assert kept[0][2] < want[0][2]  # something was left out
    assert [(r.tokens, r.cost_nusd, r.requests) for r in reply.results] == kept


@pytest.mark.parametrize(("call", "request_", "field"), [
    ("QueryUsage", ledger_pb2.QueryUsageRequest(filter=_filter(END, START)), "filter.start_time"),
    ("QueryUsage", ledger_pb2.QueryUsageRequest(group_by=[0]), "group_by[0]"),
    ("QueryUsage", ledger_pb2.QueryUsageRequest(page_token="garbage"), "page_token"),
    ("QueryUsage", ledger_pb2.QueryUsageRequest(time_zone="Mars/Olympus"), "time_zone"),
    ("GetEvent", ledger_pb2.GetEventRequest(), "event_id"),
    ("SumUsage", ledger_pb2.SumUsageRequest(queries=[ledger_pb2.SumUsageQuery(
        scope=common_pb2.Scope(kind=common_pb2.SCOPE_KIND_PROJECT, org_id="o"))]), "queries[0]"),
])
async def test_bad_input_is_invalid_argument_naming_the_field(
        loaded, call: str, request_: object, field: str) -> None:  # type: ignore[no-untyped-def]
    stub, _ = loaded
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, call)(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)
