"""The router's OpenAI-compatible HTTP endpoint, served by the router process beside its
gRPC API on `TOKENRT_ROUTER_HTTP_ADDR` (it listens on TOKENRT_BIND_HOST and that port).

* `POST /v1/chat/completions`: JSON, or SSE with `stream: true`; runs the same pipeline as
  gRPC Complete / StreamComplete in-process.
* `GET /v1/models`, `GET /v1/models/{model}`: the models this router serves.
* `GET /v1/usage`: the key's own tenant's usage from the ledger (tokenrt extension).
* `GET /v1/budget`: the limits that apply to the key (its org, project and, for a
  user-bound key, user) with their current state (tokenrt extension).

Every call needs `Authorization: Bearer <key>`. Errors are OpenAI's error object. The
request id is `x-request-id` (taken from the request when it sends one, else made).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import structlog
from aiohttp import web
from google.protobuf import timestamp_pb2

from tokenrt.v1 import budget_pb2, common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_common.client import open_channel
from tokenrt_common.context import new_request_id, request_id, rpc_method
from tokenrt_common.metrics import Metrics
from tokenrt_common.server import Runtime, StartupError
from tokenrt_router import http_wire as wire
from tokenrt_router.api import new_job
from tokenrt_router.keys import Caller, Keys
from tokenrt_router.pipeline import Router
from tokenrt_router.refusal import Refusal

T = common_pb2
S = grpc.StatusCode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GROUPS = {"model": ledger_pb2.USAGE_DIMENSION_MODEL, "user": ledger_pb2.USAGE_DIMENSION_USER,
          "session": ledger_pb2.USAGE_DIMENSION_SESSION,
          "project": ledger_pb2.USAGE_DIMENSION_PROJECT}
UNITS = {"m": 60, "h": 3600, "d": 86400}


def _json(err: wire.HttpError) -> web.Response:
    return web.json_response(err.body, status=err.status, headers=err.headers)


class HttpEndpoint:
    def __init__(self, router: Router, keys: Keys, ledger: ledger_pb2_grpc.LedgerServiceStub,
                 log: structlog.stdlib.BoundLogger, metrics: Metrics | None = None,
                 max_body_bytes: int = 16 * 1024 * 1024, grace_s: float = 10.0) -> None:
        self.router = router
        self.keys = keys
        self.ledger = ledger
        self.log = log
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.grace_s = grace_s

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes,
                              middlewares=[self._middleware])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model:.+}", self.model)
        app.router.add_get("/v1/usage", self.usage)
        app.router.add_get("/v1/budget", self.budget)
        return app

    async def serve(self, host: str, port: int) -> None:
        """Serve until cancelled, then close the listener and give open requests up to
        TOKENRT_SHUTDOWN_GRACE_SECONDS to finish."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               shutdown_timeout=self.grace_s)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            self.log.info("router.http_started", address=f"{host}:{port}")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request.headers.get("x-request-id", "")[:128] or new_request_id()
        request_id.set(rid)
        rpc_method.set(f"HTTP {request.method} {request.path}")
        t0 = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
        except Refusal as r:
            resp = _json(wire.refusal_error(r))
            status = resp.status
        except web.HTTPException as exc:
            status = exc.status
            resp = _json(wire.error(exc.status, _http_message(request, exc),
                                    "invalid_request_error" if exc.status < 500
                                    else "server_error"))
        except (asyncio.CancelledError, ConnectionError):
            status = 499
            raise
        except Exception:
            self.log.exception("router.http_failed", path=request.path)
            resp = _json(wire.error(500, "internal error; the request id is " + rid,
                                    "server_error"))
        finally:
            if self.metrics is not None:
                route = request.match_info.route.resource
                self.metrics.observe(f"HTTP {request.method} "
                                     f"{route.canonical if route else 'unmatched'}",
                                     str(status), time.perf_counter() - t0)
        if not resp.prepared:
            resp.headers["x-request-id"] = rid
        return resp

    async def _caller(self, request: web.Request) -> Caller:
        return await self.keys.caller(request.headers.get("Authorization", ""),
                                      request.remote or "")

    # -- /v1/chat/completions ---------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request)
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _json(wire.error(400, f"the request body is not valid JSON: "
                                    f"{str(exc)[:200] or 'nested too deeply'}",
                                    "invalid_request_error"))
        try:
            call = wire.parse_chat(body)
        except wire.WireError as e:
            return _json(wire.wire_error(e))
        except RecursionError:
            return _json(wire.error(400, "the request body is nested too deeply",
                                    "invalid_request_error"))
        except (ValueError, TypeError) as exc:  # a value protobuf refuses (range, text)
            return _json(wire.error(400, f"a request field holds a value out of range: "
                                    f"{str(exc)[:200]}", "invalid_request_error"))
        session = request.headers.get("x-tokenrt-session", "")
        if session:
            call.request.session_id = session[:200]
        rid = request_id.get() or new_request_id()
        with self.router.admit():  # (a Refusal when full: 503 with Retry-After)
            job = new_job(caller, call.request, rid, call.stream)
            timeout = read_timeout(request.headers)
            if timeout is not None:  # the pipeline gives up once the caller stops waiting
                job.deadline = time.monotonic() + timeout
            if not call.stream:
                c = await self.router.complete(job)
                return web.json_response(wire.completion_json(c, int(time.time())), headers={
                    "x-tokenrt-cost-nusd": str(c.cost_nusd),
                    "x-tokenrt-cache": "hit" if c.cache.hit else "miss",
                    "x-tokenrt-event-id": c.event_id})
            return await self._stream(request, job, call)

    async def _stream(self, request: web.Request, job: Any,
                      call: wire.ChatCall) -> web.StreamResponse:
        events = self.router.stream(job)
        try:
            first = await events.__anext__()  # refusals before output: a plain error
        except StopAsyncIteration:
            raise Refusal(S.INTERNAL, 0, "the stream ended before it started") from None
        writer = wire.ChunkWriter(job.request_id, call.include_usage)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "x-request-id": job.request_id})
        await resp.prepare(request)
        finished = False
        try:
            ev = first
            while True:
                for chunk in writer.event(ev):
                    await resp.write(wire.sse(chunk))
                try:
                    ev = await events.__anext__()
                except StopAsyncIteration:
                    break
            finished = True
            await resp.write(wire.DONE)
        except Refusal as r:  # the provider broke after output started
            finished = True
            await resp.write(wire.sse(wire.refusal_error(r).body))
        finally:
            if not finished:  # the client went away: the pipeline meters what was made
                await events.aclose()  # type: ignore[attr-defined]
        await resp.write_eof()
        return resp

    # -- /v1/models -------------------------------------------------------------------

    def _model_json(self, name: str) -> dict[str, Any]:
        e = self.router.entry(name)
        return {"id": e.name, "object": "model", "created": 0, "owned_by": e.provider}

    async def models(self, request: web.Request) -> web.Response:
        await self._caller(request)
        entries = [self.router.entry(n) for n in self.router.models]
        down = self.router.unhealthy(entries)
        return web.json_response({"object": "list", "data": [
            self._model_json(e.name) for e in entries if e.name not in down]})

    async def model(self, request: web.Request) -> web.Response:
        await self._caller(request)
        return web.json_response(self._model_json(request.match_info["model"]))

    # -- /v1/usage --------------------------------------------------------------------

    async def usage(self, request: web.Request) -> web.Response:
        """The key's tenant's usage (a user-bound key: that user's). Naming another
        organization or project is 403; nothing else can widen the filter."""
        caller = await self._caller(request)
        q = request.query
        for key, own in (("org_id", caller.org_id), ("project_id", caller.project_id)):
            if q.get(key, own) != own:
                raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                              f"this API key sees only {key} {own!r}",
                              T.ErrorDetail(field=key))
        user = caller.user_id or q.get("user", "")
        if caller.user_id and q.get("user", user) != user:
            raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                          f"this API key is bound to user {caller.user_id!r}",
                          T.ErrorDetail(field="user"))
        since = _since(q.get("since", "24h"))
        groups = [g for g in q.get("group_by", "").split(",") if g]
        if any(g not in GROUPS for g in groups):
            raise Refusal(S.INVALID_ARGUMENT, T.ERROR_REASON_INVALID_ARGUMENT,
                          f"group_by takes {', '.join(GROUPS)}", T.ErrorDetail(field="group_by"))
        start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
        start.FromDatetime(since)
        # The ledger's rollups have minute resolution and round the end down: ask up to
        # the end of the current minute so that what was just spent shows.
        end.FromDatetime(datetime.now(UTC).replace(second=0, microsecond=0)
                         + timedelta(minutes=1))
        filt = ledger_pb2.UsageFilter(org_id=caller.org_id, project_id=caller.project_id,
                                      user_id=user, start_time=start, end_time=end)
        try:
            resp = await self.ledger.QueryUsage(ledger_pb2.QueryUsageRequest(
                filter=filt, group_by=[GROUPS[g] for g in groups], page_size=1000), timeout=10)
        except grpc.aio.AioRpcError as exc:
            raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                          f"the ledger did not answer ({exc.code().name}); retry shortly",
                          T.ErrorDetail(retry_after_ms=1000)) from None

        return web.json_response({
            "object": "usage", "org_id": caller.org_id, "project_id": caller.project_id,
            "user_id": user, "since": since.isoformat(), "total": _totals(resp.total),
            "rows": [_row(r) for r in resp.rows]})


    # -- /v1/budget -------------------------------------------------------------------

    async def budget(self, request: web.Request) -> web.Response:
        """The state of the limits on the key's own scopes; nothing names another."""
        c = await self._caller(request)
        scopes = [T.Scope(kind=T.SCOPE_KIND_ORG, org_id=c.org_id),
                  T.Scope(kind=T.SCOPE_KIND_PROJECT, org_id=c.org_id, project_id=c.project_id)]
        if c.user_id:
            scopes.append(T.Scope(kind=T.SCOPE_KIND_USER, org_id=c.org_id,
                                  project_id=c.project_id, user_id=c.user_id))
        try:
            answers = await asyncio.gather(*(self.router.deps.budget.Status(
                budget_pb2.StatusRequest(scope=sc), timeout=5) for sc in scopes))
        except grpc.aio.AioRpcError as exc:
            raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                          f"the budget service did not answer ({exc.code().name}); retry "
                          "shortly", T.ErrorDetail(retry_after_ms=1000)) from None
        return web.json_response({
            "object": "budget", "org_id": c.org_id, "project_id": c.project_id,
            "user_id": c.user_id,
            "limits": [_limit(lim) for a in answers for lim in a.limits]})


def _limit(lim: common_pb2.LimitState) -> dict[str, Any]:
    def name(enum: Any, value: int, prefix: str) -> str:
        return str(enum.Name(value)).removeprefix(prefix).lower()

    sc = lim.scope
    return {"limit_id": lim.limit_id, "scope": name(T.ScopeKind, sc.kind, "SCOPE_KIND_"),
            "org_id": sc.org_id, "project_id": sc.project_id, "user_id": sc.user_id,
            "metric": name(T.LimitMetric, lim.metric, "LIMIT_METRIC_"),
            "period": name(T.LimitPeriod, lim.period, "LIMIT_PERIOD_"),
            "action": name(T.LimitAction, lim.action, "LIMIT_ACTION_"),
            "level": name(T.BudgetLevel, lim.level, "BUDGET_LEVEL_"),
            "limit": lim.limit, "used": lim.used, "reserved": lim.reserved,
            "remaining": lim.remaining, "utilization_bp": lim.utilization_bp,
            "reset_at": lim.reset_at.ToJsonString() if lim.HasField("reset_at") else None}


def _totals(t: ledger_pb2.UsageTotals) -> dict[str, Any]:
    """Totals as JSON numbers (protobuf's JSON writes 64-bit integers as strings)."""
    out: dict[str, Any] = {f.name: getattr(t, f.name) for f in t.DESCRIPTOR.fields
                           if f.message_type is None}
    out["usage"] = wire.usage_json(t.usage)
    return out


def _row(r: ledger_pb2.UsageRow) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(r, k) for k in
                           ("org_id", "project_id", "user_id", "session_id", "model")
                           if getattr(r, k)}
    if r.provider:
        out["provider"] = T.Provider.Name(r.provider).removeprefix("PROVIDER_").lower()
    out.update(_totals(r.totals))
    return out


def _since(value: str) -> datetime:
    now = datetime.now(UTC)
    if value[:-1].isdigit() and value[-1:] in UNITS:
        return now - timedelta(seconds=int(value[:-1]) * UNITS[value[-1]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Refusal(S.INVALID_ARGUMENT, T.ERROR_REASON_INVALID_ARGUMENT,
                      "since must be like 30m, 24h, 7d or an ISO 8601 time",
                      T.ErrorDetail(field="since")) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"Unknown request URL: {request.method} {request.path}"
    if exc.status == 405:
        return f"Method {request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return "the request body is too large"
    return exc.reason or "bad request"


def start(runtime: Runtime, router: Router, keys: Keys) -> None:
    """Serve the endpoint in the router process when TOKENRT_ROUTER_HTTP_ADDR is set
    (on TOKENRT_BIND_HOST and that address's port); a taken port stops start-up."""
    s = runtime.settings
    if not s.router_http_addr:
        return
    port = int(s.router_http_addr.rpartition(":")[2])
    family = socket.AF_INET6 if ":" in s.bind_host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((s.bind_host, port))
    except OSError as exc:
        raise StartupError(f"cannot serve HTTP on {s.bind_host}:{port}: "
                           f"{exc.strerror or exc} (set TOKENRT_ROUTER_HTTP_ADDR, or empty "
                           "to turn the endpoint off)") from None
    ledger = ledger_pb2_grpc.LedgerServiceStub(open_channel(s, "ledger"))
    endpoint = HttpEndpoint(router, keys, ledger, runtime.log, runtime.metrics,
                            s.grpc_max_message_bytes, s.shutdown_grace_seconds)
    runtime.spawn(endpoint.serve(s.bind_host, port), "router-http")


def read_timeout(headers: Mapping[str, str]) -> float | None:
    """Seconds the caller waits for the answer (its first byte, when streamed), if it says.

    HTTP has no deadline of its own; the OpenAI SDKs send their read timeout as
    `x-stainless-read-timeout`, and an answer later than that is never read. A value that is
    not a positive number is ignored (it is the SDK's, not the user's).
    """
    try:
        value = float(headers.get("x-stainless-read-timeout", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None
