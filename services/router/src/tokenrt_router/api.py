"""gRPC servicer of the router: authenticate, translate, call the pipeline, map refusals
to statuses with an ErrorDetail in the trailing metadata. No logic of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

import tokenrt_pricing.protos as pricing_pb
from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_common.context import new_request_id, request_id
from tokenrt_router.job import PROVIDERS, Job, selection_reason
from tokenrt_router.keys import Caller, KeyMap
from tokenrt_router.pipeline import Router, select
from tokenrt_router.refusal import Refusal

T = common_pb2
S = grpc.StatusCode


class RouterApi(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, keys: KeyMap) -> None:
        self._router = router
        self._keys = keys

    async def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        auth = ""
        for k, v in context.invocation_metadata() or ():
            if k == "authorization":
                auth = v if isinstance(v, str) else v.decode()
        caller = self._keys.authenticate(auth) if auth else None
        if caller is None:
            r = Refusal(S.UNAUTHENTICATED, T.ERROR_REASON_API_KEY_INVALID,
                        "missing or unknown API key: send `authorization: Bearer <key>`"
                        if not auth else "unknown API key")
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(""))
        assert caller is not None
        return caller

    async def _job(self, req: router_pb2.CompleteRequest, context: grpc.aio.ServicerContext,
                   stream: bool) -> Job:
        caller = await self._caller(context)
        rid = req.request_id or request_id.get() or new_request_id()
        user = caller.user_id or req.user_id
        if caller.user_id and req.user_id and req.user_id != caller.user_id:
            r = Refusal(S.PERMISSION_DENIED, T.ERROR_REASON_TENANT_FORBIDDEN,
                        f"this API key is bound to user {caller.user_id!r}; it cannot act "
                        f"for {req.user_id!r}")
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(rid))
        return Job(rid, caller, req, stream, user)

    async def Complete(self, request: router_pb2.CompleteRequest,  # noqa: N802
                       context: grpc.aio.ServicerContext) -> router_pb2.CompleteResponse:
        job = await self._job(request, context, stream=False)
        try:
            return router_pb2.CompleteResponse(completion=await self._router.complete(job))
        except Refusal as r:
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(job.request_id))
            raise

    async def StreamComplete(self, request: router_pb2.StreamCompleteRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[router_pb2.StreamCompleteResponse]:
        job = await self._job(request.request, context, stream=True)
        try:
            async for event in self._router.stream(job):
                yield event
        except Refusal as r:
            await context.abort(r.code, r.message, trailing_metadata=r.trailers(job.request_id))

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


def _candidate(c: select.Candidate) -> router_pb2.ModelCandidate:
    return router_pb2.ModelCandidate(
        model=c.entry.name, provider=PROVIDERS.get(c.entry.provider, 0), score=c.score,
        components=[router_pb2.ScoreComponent(name=n, points=p, detail=d)
                    for n, p, d in c.components],
        eligible=c.eligible, reasons=c.reasons, estimated_cost_nusd=c.estimated_cost_nusd,
        fits_context=c.fits_context, needs_compression=c.needs_compression,
        healthy=c.healthy, budget_decision=c.budget_decision)
