"""gRPC servicer of the router: authenticate, translate, call the pipeline, map refusals
to statuses with an ErrorDetail in the trailing metadata. No logic of its own."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager

import grpc
from google.protobuf import timestamp_pb2

import tokenrt_pricing.protos as pricing_pb
from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_common.context import (
    ACT_FOR_ORG_HEADER,
    ACT_FOR_PROJECT_HEADER,
    ACT_FOR_USER_HEADER,
    new_request_id,
    request_id,
)
from tokenrt_router.job import PROVIDERS, Job, selection_reason
from tokenrt_router.keys import Caller, KeyRecord, Keys, KeyStoreUnavailable
from tokenrt_router.pipeline import Router, select
from tokenrt_router.refusal import Refusal, invalid

T = common_pb2
S = grpc.StatusCode
# Tenant ids: like the budget's scope ids, no whitespace and no '/' (nor control
# characters, which Postgres text cannot hold).
TENANT_ID = re.compile(r"[^\s/\x00-\x1f\x7f]{1,200}")
KEY_ID = re.compile(r"key_[0-9a-f]{1,64}")
MAX_PAGE = 1000


class RouterApi(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, keys: Keys) -> None:
        self._router = router
        self._keys = keys

    async def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        """The key's caller; for a service key naming a tenant (tokenrt-act-for-*
        headers), that tenant, made by the service key."""
        auth = ""
        act_for: dict[str, str] = {}
        for k, v in context.invocation_metadata() or ():
            if k == "authorization":
                auth = v if isinstance(v, str) else v.decode()
            elif k in ACT_FOR:
                act_for[k] = v if isinstance(v, str) else v.decode()
        try:
            caller = await self._keys.caller(auth, context.peer() or "")
            return acting_caller(caller, act_for) if act_for else caller
        except Refusal as r:
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(""))
            raise

    async def _admin(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._caller(context)
        if not caller.admin:
            r = Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                        "this call needs an admin API key")
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(""))
        return caller

    async def _job(self, req: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext,
                   stream: bool) -> Job:
        caller = await self._caller(context)
        rid = req.request_id or request_id.get() or new_request_id()
        try:
            job = new_job(caller, req, rid, stream)
        except Refusal as r:
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(rid))
            raise
        remaining = context.time_remaining()
        if remaining is not None:  # the pipeline gives up once the caller stops waiting
            job.deadline = time.monotonic() + remaining
        return job

    async def Complete(self, request: router_pb2.CompleteRequest,  # noqa: N802
                       context: grpc.aio.ServicerContext) -> router_pb2.CompleteResponse:
        with await self._admitted(request, context):
            job = await self._job(request, context, stream=False)
            try:
                return router_pb2.CompleteResponse(completion=await self._router.complete(job))
            except Refusal as r:
                await context.abort(r.code, r.message,
                                    trailing_metadata=r.trailers(job.request_id))
                raise

    async def StreamComplete(self, request: router_pb2.StreamCompleteRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[router_pb2.StreamCompleteResponse]:
        with await self._admitted(request.request, context):
            job = await self._job(request.request, context, stream=True)
            try:
                async for event in self._router.stream(job):
                    yield event
            except Refusal as r:
                await context.abort(r.code, r.message,
                                    trailing_metadata=r.trailers(job.request_id))

    async def _admitted(self, req: router_pb2.CompleteRequest,
                        context: grpc.aio.ServicerContext) -> AbstractContextManager[None]:
        """The request's place in the pipeline (Router.admit), or the call aborted."""
        try:
            return self._router.admit()
        except Refusal as r:
            rid = req.request_id or request_id.get() or new_request_id()
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(rid))
            raise

    async def SelectModel(self, request: router_pb2.SelectModelRequest,  # noqa: N802
                          context: grpc.aio.ServicerContext) -> router_pb2.SelectModelResponse:
        job = await self._job(request.request, context, stream=False)
        try:
            await self._router.plan(job, dry_run=True)
            await self._router.dry_budget(job)
        except Refusal as r:
            if not job.candidates:
                await context.abort(r.code, r.message,
                                    trailing_metadata=r.trailers(job.request_id))
        chosen = job.chosen
        resp = router_pb2.SelectModelResponse(
            model=chosen.entry.name if chosen and chosen.eligible else "",
            input_tokens=job.input_tokens, degraded_from_model=job.degraded_from)
        if chosen is not None:
            resp.provider = PROVIDERS.get(chosen.entry.provider, 0)  # type: ignore[assignment]
        if job.analysis is not None:
            resp.selection.CopyFrom(router_pb2.SelectionSummary(
                task_type=job.analysis.task, complexity=job.analysis.complexity,
                reason=selection_reason(job)))
        count = job.count
        if count is not None:
            resp.input_accuracy.CopyFrom(count.accuracy)  # type: ignore[attr-defined]
        for c in job.candidates:
            resp.candidates.append(_candidate(c))
        return resp

    async def ListModels(self, request: router_pb2.ListModelsRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext) -> router_pb2.ListModelsResponse:
        await self._caller(context)
        router = self._router
        resp = router_pb2.ListModelsResponse()
        entries = [router.entry(n) for n in router.models]
        if request.include_unavailable:
            entries += [e for e in router.catalog.entries() if e not in entries]
        unhealthy = router.unhealthy(entries)
        for e in entries:
            ok = e.name not in unhealthy
            if not ok and not request.include_unavailable:
                continue
            resp.models.append(router_pb2.RoutableModel(
                model=pricing_pb.model_info(router.catalog.resolve(e.name)), available=ok,
                unavailable_reason=unhealthy.get(e.name, "")))
        return resp


    # -- API keys (admin) ------------------------------------------------------------

    async def CreateApiKey(self, request: router_pb2.CreateApiKeyRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext
                           ) -> router_pb2.CreateApiKeyResponse:
        caller = await self._admin(context)
        t = request.tenant
        async with _refusals(context):
            _check_id("tenant.org_id", t.org_id)
            _check_id("tenant.project_id", t.project_id)
            if t.user_id:
                _check_id("tenant.user_id", t.user_id)
            if len(request.name) > 200 or not request.name.isprintable():
                raise invalid("name", "name must be at most 200 printable characters")
            _may_manage(caller, t.org_id)
            if request.service and not caller.global_admin:
                raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                              "only the bootstrap admin key creates service keys: a service "
                              "key may act for any organization", T.ErrorDetail(field="service"))
            record, secret = await self._keys.store_or_refuse().create(
                t.org_id, t.project_id, t.user_id, request.name, request.admin,
                request.service)
        self._keys.log.info("router.key_created", api_key_id=record.api_key_id,
                            org_id=record.org_id, project_id=record.project_id,
                            admin=record.admin, service=record.service, by=caller.api_key_id)
        return router_pb2.CreateApiKeyResponse(api_key=api_key_pb(record), secret=secret)

    async def RevokeApiKey(self, request: router_pb2.RevokeApiKeyRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext
                           ) -> router_pb2.RevokeApiKeyResponse:
        caller = await self._admin(context)
        async with _refusals(context):
            if not KEY_ID.fullmatch(request.api_key_id):
                raise invalid("api_key_id", "api_key_id must be an id like key_1a2b3c4d5e6f7a8b "
                              "(tokenrt keys list shows them)")
            store = self._keys.store_or_refuse()
            record = await store.get(request.api_key_id)
            if record is None:
                raise Refusal(S.NOT_FOUND, T.ERROR_REASON_API_KEY_NOT_FOUND,
                              f"no stored API key {request.api_key_id!r} (keys from "
                              "configuration are removed from the configuration)",
                              T.ErrorDetail(field="api_key_id"))
            _may_manage(caller, record.org_id)
            record = await store.revoke(request.api_key_id) or record
        self._keys.forget(record.key_sha256)
        self._keys.log.info("router.key_revoked", api_key_id=record.api_key_id,
                            org_id=record.org_id, by=caller.api_key_id)
        return router_pb2.RevokeApiKeyResponse(api_key=api_key_pb(record))

    async def ListApiKeys(self, request: router_pb2.ListApiKeysRequest,  # noqa: N802
                          context: grpc.aio.ServicerContext) -> router_pb2.ListApiKeysResponse:
        caller = await self._admin(context)
        async with _refusals(context):
            if not request.org_id and not caller.global_admin:
                raise invalid("org_id", "org_id is required (your own organization)")
            for name in ("org_id", "project_id"):
                if getattr(request, name):
                    _check_id(name, getattr(request, name))
            if request.page_token and not KEY_ID.fullmatch(request.page_token):
                raise invalid("page_token", "page_token is not one this call returned")
            if request.org_id:
                _may_manage(caller, request.org_id)
            if not 0 <= request.page_size <= MAX_PAGE:
                raise invalid("page_size", f"page_size must be between 0 and {MAX_PAGE}")
            size = request.page_size or 100
            rows = await self._keys.store_or_refuse().list(request.org_id, request.project_id,
                                                 request.include_revoked, size + 1,
                                                 request.page_token)
        more = len(rows) > size
        rows = rows[:size]
        return router_pb2.ListApiKeysResponse(
            api_keys=[api_key_pb(r) for r in rows],
            next_page_token=rows[-1].api_key_id if more and rows else "")


def new_job(caller: Caller, req: router_pb2.CompleteRequest, rid: str, stream: bool) -> Job:
    """A pipeline job for this caller. The tenant is the key's: a request can only name
    the end user, and only when the key is not bound to one."""
    if caller.user_id and req.user_id and req.user_id != caller.user_id:
        raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                      f"this API key is bound to user {caller.user_id!r}; it cannot act "
                      f"for {req.user_id!r}", T.ErrorDetail(field="user_id"))
    if req.user_id:
        _check_id("user_id", req.user_id)
    if len(req.messages) > MAX_MESSAGES:
        raise invalid("messages", f"at most {MAX_MESSAGES} messages in one request, got "
                      f"{len(req.messages)}")
    return Job(rid, caller, req, stream, caller.user_id or req.user_id)


# More messages than any context window holds; refusing them first bounds the work one
# request can cause (a million empty messages fit in a 4 MB request).
MAX_MESSAGES = 100_000


ACT_FOR = {ACT_FOR_ORG_HEADER: "org_id", ACT_FOR_PROJECT_HEADER: "project_id",
           ACT_FOR_USER_HEADER: "user_id"}


def acting_caller(caller: Caller, act_for: dict[str, str]) -> Caller:
    """`caller` acting for the tenant the tokenrt-act-for-* headers name: only a service
    key may (PERMISSION_DENIED otherwise); org and project are both needed."""
    if not caller.service:
        raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                      f"this API key ({caller.api_key_id}) is not a service key: it cannot act "
                      f"for another tenant; send no {'/'.join(sorted(act_for))} header")
    ids = {ACT_FOR[k]: v for k, v in act_for.items()}
    for header, name in ACT_FOR.items():
        if name != "user_id" and not ids.get(name):
            raise invalid(header, f"a service key acting for a tenant names its org and "
                          f"project: the {header} header is missing")
        if ids.get(name):
            _check_id(header, ids[name])
    return caller.act_for(ids["org_id"], ids["project_id"], ids.get("user_id", ""))


def _check_id(field: str, value: str) -> None:
    if not TENANT_ID.fullmatch(value):
        raise invalid(field, f"{field} must be 1-200 characters without whitespace or '/'")


def _may_manage(caller: Caller, org_id: str) -> None:
    if not caller.may_manage(org_id):
        raise Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                      f"an admin key of organization {caller.org_id!r} cannot manage the keys "
                      f"of {org_id!r}")


@asynccontextmanager
async def _refusals(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Ends the call with a Refusal's status (and the key store's outages as UNAVAILABLE)."""
    try:
        yield
    except KeyStoreUnavailable as exc:
        r = Refusal(S.UNAVAILABLE, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                    f"{exc}; retry shortly", T.ErrorDetail(retry_after_ms=1000))
        await context.abort(r.code, r.message, trailing_metadata=r.trailers(""))
    except Refusal as r:
        await context.abort(r.code, r.message, trailing_metadata=r.trailers(""))


def _ts(value: object) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def api_key_pb(r: KeyRecord) -> router_pb2.ApiKey:
    return router_pb2.ApiKey(
        api_key_id=r.api_key_id, name=r.name,
        tenant=T.Tenant(org_id=r.org_id, project_id=r.project_id, user_id=r.user_id),
        admin=r.admin, service=r.service, key_prefix=r.key_prefix, created_at=_ts(r.created_at),
        revoked_at=_ts(r.revoked_at), last_used_at=_ts(r.last_used_at))


def _candidate(c: select.Candidate) -> router_pb2.ModelCandidate:
    return router_pb2.ModelCandidate(
        model=c.entry.name, provider=PROVIDERS.get(c.entry.provider, 0), score=c.score,
        components=[router_pb2.ScoreComponent(name=n, points=p, detail=d)
                    for n, p, d in c.components],
        eligible=c.eligible, reasons=c.reasons, estimated_cost_nusd=c.estimated_cost_nusd,
        fits_context=c.fits_context, needs_compression=c.needs_compression,
        healthy=c.healthy, budget_decision=c.budget_decision)
