"""gRPC servicer of the budget service: protobuf in, Budget calls, protobuf and status out."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn, TypeVar

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2
from tokenrt_budget import core
from tokenrt_budget.core import InvalidInput, Limit, Scope
from tokenrt_budget.service import (
    REDIS_DOWN,
    Budget,
    Conflict,
    NotFound,
    ReserveIn,
    State,
    Unavailable,
)
from tokenrt_common.errors import abort_with, error_detail

K = common_pb2
MAX_BATCH = 1000
MAX_PAGE = 1000
PG_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
           asyncpg.exceptions.OperatorInterventionError)
T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, reason: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code, self.reason, self.field = code, reason, field


def _translate(exc: BaseException) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidInput):
        return ApiError(grpc.StatusCode.INVALID_ARGUMENT, K.ERROR_REASON_INVALID_ARGUMENT,
                        str(exc), exc.field)
    if isinstance(exc, NotFound):
        return ApiError(grpc.StatusCode.NOT_FOUND, exc.reason, str(exc))
    if isinstance(exc, Conflict):
        return ApiError(grpc.StatusCode.ABORTED, K.ERROR_REASON_IDEMPOTENCY_CONFLICT, str(exc),
                        "idempotency_key")
    if isinstance(exc, Unavailable):
        return ApiError(grpc.StatusCode.UNAVAILABLE, K.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                        str(exc))
    if isinstance(exc, (*REDIS_DOWN, *PG_DOWN)):
        return ApiError(grpc.StatusCode.UNAVAILABLE, K.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                        f"a budget dependency is unreachable ({type(exc).__name__}); retry "
                        "shortly")
    return None


def _detail(err: ApiError) -> common_pb2.ErrorDetail:
    return error_detail(err.reason, field=err.field)  # type: ignore[arg-type]


async def _call(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    try:
        return await work
    except Exception as exc:
        err = _translate(exc)
        if err is None:
            raise
        await _abort(context, err)


async def _abort(context: grpc.aio.ServicerContext, err: ApiError) -> NoReturn:
    await abort_with(context, err.code, str(err), _detail(err))


async def _item(work: Awaitable[T]) -> T | common_pb2.ItemError:
    try:
        return await work
    except Exception as exc:
        err = _translate(exc)
        if err is None:
            raise
        return common_pb2.ItemError(code=err.code.value[0], message=str(err), detail=_detail(err))


async def _items(works: Sequence[Awaitable[T]]) -> Sequence[T | common_pb2.ItemError]:
    """Each item's answer or error. Items are independent and run concurrently, so their
    Redis calls leave together; a batch of one (the router's at low load) without a task."""
    if len(works) == 1:
        return [await _item(works[0])]
    return await asyncio.gather(*(_item(w) for w in works))


# -- conversions ----------------------------------------------------------------------

def scope_in(s: common_pb2.Scope, where: str = "scope") -> Scope:
    return core.check_scope(Scope(s.kind, s.org_id, s.project_id, s.user_id, s.session_id,
                                  s.api_key_id), where)


@lru_cache(maxsize=4096)
def scope_out(s: Scope) -> common_pb2.Scope:
    return common_pb2.Scope(kind=s.kind, org_id=s.org_id, project_id=s.project_id,  # type: ignore[arg-type]
                            user_id=s.user_id, session_id=s.session_id, api_key_id=s.api_key_id)


def limit_in(m: budget_pb2.Limit) -> Limit:
    if not m.HasField("scope"):
        raise InvalidInput("limit.scope", "limit.scope: say which scope the limit attaches to")
    lim = Limit(limit_id=m.limit_id, scope=scope_in(m.scope, "limit.scope"), metric=m.metric,
                period=m.period, limit=m.limit, action=m.action,
                rolling_window_seconds=m.rolling_window_seconds, time_zone=m.time_zone,
                fail_mode=m.fail_mode, name=m.name)
    lim = core.with_defaults(
        lim, m.warning_threshold_bp if m.HasField("warning_threshold_bp") else None,
        m.critical_threshold_bp if m.HasField("critical_threshold_bp") else None)
    return core.check_limit(lim)


def limit_out(lim: Limit) -> budget_pb2.Limit:
    m = budget_pb2.Limit(limit_id=lim.limit_id, scope=scope_out(lim.scope), metric=lim.metric,  # type: ignore[arg-type]
                         period=lim.period, rolling_window_seconds=lim.rolling_window_seconds,  # type: ignore[arg-type]
                         time_zone=lim.time_zone, limit=lim.limit,
                         warning_threshold_bp=lim.warning_bp,
                         critical_threshold_bp=lim.critical_bp, action=lim.action,  # type: ignore[arg-type]
                         fail_mode=lim.fail_mode, name=lim.name)  # type: ignore[arg-type]
    if lim.created_at:
        m.created_at.FromDatetime(lim.created_at)
    if lim.updated_at:
        m.updated_at.FromDatetime(lim.updated_at)
    if lim.reset_at:
        m.last_reset_at.FromDatetime(lim.reset_at)
    return m


def _set_stamp(m: timestamp_pb2.Timestamp, when: datetime) -> None:
    micros = round(when.timestamp() * 1_000_000)
    m.seconds, rest = divmod(micros, 1_000_000)
    m.nanos = rest * 1000


@lru_cache(maxsize=4096)
def _template(lim: Limit, start: datetime | None, reset_at: datetime | None
              ) -> common_pb2.LimitState:
    """The parts of a LimitState fixed for one limit and calendar period (copied into
    answers; a rolling window's bounds move with every answer)."""
    m = common_pb2.LimitState(limit_id=lim.limit_id, scope=scope_out(lim.scope),
                              metric=lim.metric, period=lim.period, limit=lim.limit,  # type: ignore[arg-type]
                              action=lim.action)  # type: ignore[arg-type]
    if start is not None:
        _set_stamp(m.period_start, start)
    if reset_at is not None:
        _set_stamp(m.reset_at, reset_at)
    return m


def state_out(st: State) -> common_pb2.LimitState:
    m = common_pb2.LimitState()
    _fill(m, st)
    return m


def states_into(target: Any, states: Sequence[State]) -> None:
    """Each state into a new element of a repeated LimitState field (not copied there
    from a message of its own)."""
    for st in states:
        _fill(target.add(), st)


def _fill(m: common_pb2.LimitState, st: State) -> None:
    c = st.check
    lim = c.limit
    held = c.used + c.reserved
    if lim.period == K.LIMIT_PERIOD_ROLLING:
        m.CopyFrom(_template(lim, None, None))
        if c.window.start is not None:
            _set_stamp(m.period_start, c.window.start)
        if st.reset_at is not None:
            _set_stamp(m.reset_at, st.reset_at)
    else:
        m.CopyFrom(_template(lim, c.window.start, st.reset_at))
    m.used = c.used
    m.reserved = c.reserved
    m.remaining = max(0, lim.limit - held)
    m.utilization_bp = core.utilization_bp(held, lim.limit)
    m.level = st.level  # type: ignore[assignment]
    m.enforcement = st.enforcement  # type: ignore[assignment]
    if st.triggered:
        m.triggered = True


def _chain(chain: common_pb2.ScopeChain) -> tuple[Scope, ...]:
    return _chain_of(chain.SerializeToString())


@lru_cache(maxsize=4096)
def _chain_of(data: bytes) -> tuple[Scope, ...]:
    """A chain read and checked once per wire form (callers send the same few chains
    again and again; equal bytes are an equal chain)."""
    scopes = [Scope(s.kind, s.org_id, s.project_id, s.user_id, s.session_id, s.api_key_id)
              for s in common_pb2.ScopeChain.FromString(data).scopes]
    return core.check_chain(scopes)


def _amount(value: int, field: str) -> int:
    if not 0 <= value <= core.MAX_AMOUNT:
        raise InvalidInput(field, f"{field}: must be between 0 and {core.MAX_AMOUNT}, got {value}")
    return value


def reserve_in(r: budget_pb2.ReserveRequest) -> ReserveIn:
    if r.ttl_seconds < 0:
        raise InvalidInput("ttl_seconds", "ttl_seconds: must be 0 (service default) or more")
    if r.requests < 0:
        raise InvalidInput("requests", "requests: must be 0 (meaning 1) or more")
    if len(r.idempotency_key) > 200:
        raise InvalidInput("idempotency_key", "idempotency_key: at most 200 characters")
    return ReserveIn(chain=_chain(r.chain),
                     tokens=_amount(r.estimated_tokens, "estimated_tokens"),
                     cost_nusd=_amount(r.estimated_cost_nusd, "estimated_cost_nusd"),
                     requests=_amount(r.requests or 1, "requests"), ttl_seconds=r.ttl_seconds,
                     idempotency_key=r.idempotency_key, degraded=r.degraded,
                     dry_run=r.dry_run, request_id=r.request_id, model=r.model)


class BudgetApi(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, budget: Budget) -> None:
        self._b = budget

    async def _reserve(self, r: budget_pb2.ReserveRequest) -> budget_pb2.ReserveResponse:
        res = await self._b.reserve(reserve_in(r))
        out = budget_pb2.ReserveResponse(
            reservation_id=res.reservation_id, decision=res.decision,  # type: ignore[arg-type]
            retry_after_ms=res.retry_after_ms, enforcement=res.enforcement)  # type: ignore[arg-type]
        states_into(out.limits, res.states)
        if res.expires_at is not None:
            _set_stamp(out.expires_at, res.expires_at)
        return out

    async def Reserve(self, request: budget_pb2.ReserveRequest,
                      context: grpc.aio.ServicerContext) -> budget_pb2.ReserveResponse:
        return await _call(context, self._reserve(request))

    async def ReserveBatch(self, request: budget_pb2.ReserveBatchRequest,
                           context: grpc.aio.ServicerContext) -> budget_pb2.ReserveBatchResponse:
        if len(request.requests) > MAX_BATCH:
            await _abort(context, ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                                           K.ERROR_REASON_INVALID_ARGUMENT,
                                           f"requests: at most {MAX_BATCH} per batch", "requests"))
        out = budget_pb2.ReserveBatchResponse()
        for got in await _items([self._reserve(r) for r in request.requests]):
            if isinstance(got, common_pb2.ItemError):
                out.results.add(error=got)
            else:
                out.results.add(response=got)
        return out

    async def _commit(self, r: budget_pb2.CommitRequest) -> budget_pb2.CommitResponse:
        chain = _chain(r.chain) if r.chain.scopes else ()
        outcome, states = await self._b.settle(
            r.reservation_id, commit=True, tokens=r.actual_tokens, cost_nusd=r.actual_cost_nusd,
            chain=chain, request_id=r.request_id)
        out = budget_pb2.CommitResponse(outcome=outcome)  # type: ignore[arg-type]
        states_into(out.limits, states)
        return out

    async def _release(self, r: budget_pb2.ReleaseRequest) -> budget_pb2.ReleaseResponse:
        outcome, _ = await self._b.settle(r.reservation_id, commit=False)
        return budget_pb2.ReleaseResponse(outcome=outcome)  # type: ignore[arg-type]

    async def Commit(self, request: budget_pb2.CommitRequest,
                     context: grpc.aio.ServicerContext) -> budget_pb2.CommitResponse:
        return await _call(context, self._commit(request))

    async def Release(self, request: budget_pb2.ReleaseRequest,
                      context: grpc.aio.ServicerContext) -> budget_pb2.ReleaseResponse:
        return await _call(context, self._release(request))

    async def SettleBatch(self, request: budget_pb2.SettleBatchRequest,
                          context: grpc.aio.ServicerContext) -> budget_pb2.SettleBatchResponse:
        if len(request.settlements) > MAX_BATCH:
            await _abort(context, ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                                           K.ERROR_REASON_INVALID_ARGUMENT,
                                           f"settlements: at most {MAX_BATCH} per batch",
                                           "settlements"))
        out = budget_pb2.SettleBatchResponse()
        kinds = [s.WhichOneof("action") for s in request.settlements]
        works = [self._commit(s.commit) if kind == "commit" else self._release(s.release)
                 for s, kind in zip(request.settlements, kinds, strict=True) if kind]
        answers = iter(await _items(works))
        for i, kind in enumerate(kinds):
            got = next(answers) if kind else common_pb2.ItemError(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                message=f"settlements[{i}]: set commit or release")
            if isinstance(got, common_pb2.ItemError):
                out.results.add(error=got)
            else:
                out.results.add(**{kind: got})  # type: ignore[arg-type]
        return out

    async def _set_limit(self, r: budget_pb2.SetLimitRequest) -> budget_pb2.SetLimitResponse:
        lim = limit_in(r.limit)
        create = not lim.limit_id
        if create:
            lim = Limit(**{**lim.__dict__, "limit_id": f"lim_{uuid.uuid4().hex[:16]}"})
        if r.validate_only:
            return budget_pb2.SetLimitResponse(limit=limit_out(lim), created=create)
        saved = await self._b.set_limit(lim, create=create)
        return budget_pb2.SetLimitResponse(limit=limit_out(saved), created=create)

    async def SetLimit(self, request: budget_pb2.SetLimitRequest,
                       context: grpc.aio.ServicerContext) -> budget_pb2.SetLimitResponse:
        return await _call(context, self._set_limit(request))

    async def _remove(self, r: budget_pb2.RemoveLimitRequest) -> budget_pb2.RemoveLimitResponse:
        if not r.limit_id:
            raise InvalidInput("limit_id", "limit_id: name the limit to remove")
        return budget_pb2.RemoveLimitResponse(limit=limit_out(await self._b.remove_limit(
            r.limit_id)))

    async def RemoveLimit(self, request: budget_pb2.RemoveLimitRequest,
                          context: grpc.aio.ServicerContext) -> budget_pb2.RemoveLimitResponse:
        return await _call(context, self._remove(request))

    async def _list(self, r: budget_pb2.ListLimitsRequest) -> budget_pb2.ListLimitsResponse:
        if r.page_size < 0:
            raise InvalidInput("page_size", "page_size: must be 0 (default) or more")
        size = min(r.page_size or 100, MAX_PAGE)
        try:
            after = base64.urlsafe_b64decode(r.page_token.encode()).decode() if r.page_token else ""
        except ValueError:
            raise InvalidInput("page_token", "page_token: pass next_page_token unchanged") from None
        scope = scope_in(r.scope) if r.HasField("scope") else None
        rows = await self._b.limit_store().page(r.org_id, scope, after, size + 1)
        out = budget_pb2.ListLimitsResponse(limits=[limit_out(lim) for lim in rows[:size]])
        if len(rows) > size:
            out.next_page_token = base64.urlsafe_b64encode(
                rows[size - 1].limit_id.encode()).decode()
        return out

    async def ListLimits(self, request: budget_pb2.ListLimitsRequest,
                         context: grpc.aio.ServicerContext) -> budget_pb2.ListLimitsResponse:
        return await _call(context, self._list(request))

    async def _status(self, r: budget_pb2.StatusRequest) -> budget_pb2.StatusResponse:
        if not r.HasField("scope"):
            raise InvalidInput("scope", "scope: say which scope to report, e.g. org:acme")
        states, enforcement = await self._b.status(scope_in(r.scope), r.include_descendants)
        return budget_pb2.StatusResponse(limits=[state_out(s) for s in states],
                                         enforcement=enforcement)  # type: ignore[arg-type]

    async def Status(self, request: budget_pb2.StatusRequest,
                     context: grpc.aio.ServicerContext) -> budget_pb2.StatusResponse:
        return await _call(context, self._status(request))

    async def _reset(self, r: budget_pb2.ResetRequest) -> budget_pb2.ResetResponse:
        if not r.HasField("scope"):
            raise InvalidInput("scope", "scope: say which scope to reset, e.g. project:acme/web")
        count, at = await self._b.reset(scope_in(r.scope), r.limit_id)
        out = budget_pb2.ResetResponse(limits_reset=count)
        out.reset_at.FromDatetime(at)
        return out

    async def Reset(self, request: budget_pb2.ResetRequest,
                    context: grpc.aio.ServicerContext) -> budget_pb2.ResetResponse:
        return await _call(context, self._reset(request))

    async def _rebuild(self, r: budget_pb2.RebuildCountersRequest
                       ) -> budget_pb2.RebuildCountersResponse:
        scope = scope_in(r.scope) if r.HasField("scope") else None
        count, watermark = await self._b.rebuild(scope)
        out = budget_pb2.RebuildCountersResponse(limits_rebuilt=count)
        out.ledger_watermark.FromDatetime(watermark)
        return out

    async def RebuildCounters(self, request: budget_pb2.RebuildCountersRequest,
                              context: grpc.aio.ServicerContext
                              ) -> budget_pb2.RebuildCountersResponse:
        return await _call(context, self._rebuild(request))
