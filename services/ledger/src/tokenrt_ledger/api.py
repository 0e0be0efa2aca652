"""gRPC servicer of the ledger: protobuf in, store queries, protobuf and status out.

Reconcile also reads the budget service (`tokenrt_ledger.reconcile`), over a channel
opened at the first call and closed at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import NoReturn

import asyncpg
import grpc

from tokenrt.v1 import budget_pb2_grpc, common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_common.client import open_channel
from tokenrt_ledger import convert, reconcile
from tokenrt_ledger.convert import BadRequest
from tokenrt_ledger.service import Ledger
from tokenrt_ledger.store import LedgerStore, UsageQuery

ERROR_DETAIL_KEY = "tokenrt-error-detail-bin"
EXPORT_CHUNK = 500
MAX_SUM_QUERIES = 1000
MAX_SUM_EXCLUDED = 10_000


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                reason: int, field: str = "") -> NoReturn:
    detail = common_pb2.ErrorDetail(reason=reason, field=field)  # type: ignore[arg-type]
    context.set_trailing_metadata(((ERROR_DETAIL_KEY, detail.SerializeToString()),))
    await context.abort(code, message)
    raise AssertionError("unreachable")


# Failures that mean "Postgres is away right now", answered UNAVAILABLE (retry later).
UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
               asyncpg.InternalClientError, asyncpg.exceptions.OperatorInterventionError)


async def unavailable(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    await abort(context, grpc.StatusCode.UNAVAILABLE,
                f"the ledger's database is unreachable ({type(exc).__name__}); retry shortly",
                common_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE)


async def invalid(context: grpc.aio.ServicerContext, exc: BadRequest) -> NoReturn:
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{exc.field}: {exc}",
                common_pb2.ERROR_REASON_INVALID_ARGUMENT, exc.field)


class LedgerApi(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._budget: reconcile.BudgetReader | None = None

    def _budget_reader(self) -> reconcile.BudgetReader:
        if self._budget is None:
            runtime = self._ledger.runtime
            settings = runtime.settings
            channel = open_channel(settings, "budget")
            runtime.close_at_shutdown(channel.close, "budget-channel")
            self._budget = reconcile.BudgetReader(
                budget_pb2_grpc.BudgetServiceStub(channel),
                settings.endpoint("budget").address, settings.rpc_timeout_seconds)
        return self._budget

    async def _store(self, context: grpc.aio.ServicerContext) -> LedgerStore:
        store = self._ledger.store
        if store is None:
            await abort(context, grpc.StatusCode.UNAVAILABLE,
                        "the ledger is starting: Postgres is not connected or its migrations "
                        "are not applied yet; retry shortly",
                        common_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE)
        return store

    async def QueryUsage(self, request: ledger_pb2.QueryUsageRequest,
                         context: grpc.aio.ServicerContext) -> ledger_pb2.QueryUsageResponse:
        store = await self._store(context)
        try:
            size = convert.page_size(request.page_size)
            offset = convert.decode_offset(request.page_token) if request.page_token else 0
            query = UsageQuery(
                filter=convert.event_filter(request.filter),
                group_by=_dimensions(request.group_by),
                grain=convert.GRAIN.get(request.granularity, ""),
                time_zone=convert.time_zone(request.time_zone),
                order=convert.ORDER.get(request.order_by, ""), limit=size + 1, offset=offset)
        except BadRequest as exc:
            await invalid(context, exc)
        try:
            rows, total = await store.query_usage(query)
        except UNREACHABLE as exc:
            await unavailable(context, exc)
        reply = ledger_pb2.QueryUsageResponse(rows=[convert.usage_row(r) for r in rows[:size]],
                                              total=convert.totals(total))
        if len(rows) > size:
            reply.next_page_token = convert.encode_token([str(offset + size)])
        return reply

    async def GetReport(self, request: ledger_pb2.GetReportRequest,
                        context: grpc.aio.ServicerContext) -> ledger_pb2.GetReportResponse:
        store = await self._store(context)
        try:
            f = convert.event_filter(request.filter)
            tz = convert.time_zone(request.time_zone)
        except BadRequest as exc:
            await invalid(context, exc)
        if request.top_n < 0:
            await invalid(context, BadRequest("top_n", "top_n must be 0 (default 10) or more"))
        top = min(request.top_n or 10, convert.MAX_PAGE)
        grain = convert.GRAIN.get(request.series_granularity) or "hour"

        def by(*dims: str) -> UsageQuery:
            return UsageQuery(filter=f, group_by=dims, order="cost", limit=top)

        # Projects, users and sessions are named within their org (and project): a row
        # carries the names above it, so two orgs' "web" projects stay apart.
        queries = [by("org_id", "project_id"), by("model"), by("provider"),
                   by("org_id", "project_id", "user_id"),
                   by("org_id", "project_id", "user_id", "session_id"),
                   UsageQuery(filter=f, grain=grain, time_zone=tz, limit=convert.MAX_PAGE * 10)]
        try:
            answers = await asyncio.gather(*(store.query_usage(q) for q in queries))
        except UNREACHABLE as exc:
            await unavailable(context, exc)
        rows = [[convert.usage_row(r) for r in a[0]] for a in answers]
        return ledger_pb2.GetReportResponse(
            total=convert.totals(answers[0][1]), by_project=rows[0], by_model=rows[1],
            by_provider=rows[2], by_user=rows[3], by_session=rows[4], series=rows[5])

    async def GetEvent(self, request: ledger_pb2.GetEventRequest,
                       context: grpc.aio.ServicerContext) -> ledger_pb2.GetEventResponse:
        if not request.event_id:
            await invalid(context, BadRequest("event_id", "event_id is required"))
        store = await self._store(context)
        try:
            found = await store.get_event(request.event_id)
        except UNREACHABLE as exc:
            await unavailable(context, exc)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND,
                        f"no usage event {request.event_id!r} in the ledger (events appear "
                        "shortly after the request finishes)",
                        common_pb2.ERROR_REASON_EVENT_NOT_FOUND, "event_id")
        return ledger_pb2.GetEventResponse(
            event=convert.stored_event(found["payload"], found["recorded_at"]))

    async def ListEvents(self, request: ledger_pb2.ListEventsRequest,
                         context: grpc.aio.ServicerContext) -> ledger_pb2.ListEventsResponse:
        store = await self._store(context)
        try:
            f = convert.event_filter(request.filter)
            size = convert.page_size(request.page_size)
            after = None
            if request.page_token:
                when, event_id = convert.decode_token(request.page_token, 2)
                after = (datetime.fromisoformat(when), event_id)
        except BadRequest as exc:
            await invalid(context, exc)
        except ValueError:
            await invalid(context, BadRequest("page_token", "page_token is malformed"))
        try:
            rows = await store.list_events(f, size + 1, after)
        except UNREACHABLE as exc:
            await unavailable(context, exc)
        reply = ledger_pb2.ListEventsResponse(
            events=[convert.stored_event(r["payload"], r["recorded_at"]) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            reply.next_page_token = convert.encode_token(
                [last["occurred_at"].isoformat(), last["event_id"]])
        return reply

    async def ExportEvents(self, request: ledger_pb2.ExportEventsRequest,
                           context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[ledger_pb2.ExportEventsResponse]:
        store = await self._store(context)
        try:
            f = convert.event_filter(request.filter)
        except BadRequest as exc:
            await invalid(context, exc)
        try:
            async for chunk in store.export_events(f, EXPORT_CHUNK):
                yield ledger_pb2.ExportEventsResponse(
                    events=[convert.stored_event(r["payload"], r["recorded_at"]) for r in chunk])
        except UNREACHABLE as exc:
            await unavailable(context, exc)

    async def SumUsage(self, request: ledger_pb2.SumUsageRequest,
                       context: grpc.aio.ServicerContext) -> ledger_pb2.SumUsageResponse:
        store = await self._store(context)
        if len(request.queries) > MAX_SUM_QUERIES:
            await invalid(context, BadRequest("queries", f"at most {MAX_SUM_QUERIES} queries "
                                              "per call; split the request"))
        # Taken before summing: everything stored by then is in the answer.
        watermark = self._ledger.watermark or datetime.now(UTC)
        filters = []
        for i, q in enumerate(request.queries):
            field = f"queries[{i}]"
            try:
                if not q.HasField("start_time") or not q.HasField("end_time"):
                    raise BadRequest(f"{field}.start_time", "start_time and end_time are required")
                filters.append(convert.scope_filter(
                    q.scope, convert.to_datetime(q.start_time, f"{field}.start_time"),
                    convert.to_datetime(q.end_time, f"{field}.end_time"), f"{field}.scope"))
            except BadRequest as exc:
                await invalid(context, exc)
        if len(request.exclude_reservation_ids) > MAX_SUM_EXCLUDED:
            await invalid(context, BadRequest(
                "exclude_reservation_ids", f"at most {MAX_SUM_EXCLUDED} reservation ids per "
                "call"))
        try:
            sums = await store.sum_usage_snapshot(filters, request.exclude_reservation_prefix,
                                                  list(request.exclude_reservation_ids))
        except UNREACHABLE as exc:
            await unavailable(context, exc)
        reply = ledger_pb2.SumUsageResponse(results=[
            ledger_pb2.SumUsageResult(query=q, tokens=s["tokens"], cost_nusd=s["cost_nusd"],
                                      requests=s["requests"])
            for q, s in zip(request.queries, sums, strict=True)])
        reply.watermark.FromDatetime(watermark)
        return reply


    async def Reconcile(self, request: ledger_pb2.ReconcileRequest,
                        context: grpc.aio.ServicerContext) -> ledger_pb2.ReconcileResponse:
        store = await self._store(context)
        scope = request.scope if request.HasField("scope") else None
        try:
            return await reconcile.reconcile(self._budget_reader(), store, scope,
                                             request.tolerance_bp, self._ledger.watermark)
        except BadRequest as exc:
            await invalid(context, exc)
        except reconcile.BudgetUnavailable as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc),
                        common_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE)
        except UNREACHABLE as exc:
            await unavailable(context, exc)


def _dimensions(values: list[int]) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(values):
        if v not in convert.DIMENSION:
            raise BadRequest(f"group_by[{i}]", f"unknown dimension {v}; use ORG, PROJECT, USER, "
                             "SESSION, MODEL or PROVIDER")
        if convert.DIMENSION[v] not in out:
            out.append(convert.DIMENSION[v])
    return tuple(out)
