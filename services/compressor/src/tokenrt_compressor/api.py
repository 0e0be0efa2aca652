"""gRPC servicer of the compressor service: protobuf in, domain calls, protobuf and status out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc

from tokenrt.v1 import common_pb2, compressor_pb2, compressor_pb2_grpc
from tokenrt_common.errors import abort_with, invalid
from tokenrt_common.server import Runtime
from tokenrt_compressor import core, warmup
from tokenrt_compressor.counting import CounterMeter
from tokenrt_compressor.routed import Request, Summaries
from tokenrt_compressor.store import SessionStore, Unavailable, session_id
from tokenrt_counter.api import accuracy_pb
from tokenrt_counter.core import Counter, MessageError
from tokenrt_pricing import Catalog, ModelEntry, ModelNotFound, Resolved
from tokenrt_pricing.cost import round_half_even, schedule_for

S = common_pb2
STRATEGIES = {
    S.COMPRESSION_STRATEGY_UNSPECIFIED: "auto", S.COMPRESSION_STRATEGY_AUTO: "auto",
    S.COMPRESSION_STRATEGY_TRUNCATE: "truncate",
    S.COMPRESSION_STRATEGY_SELECTIVE_FORGET: "selective_forget",
    S.COMPRESSION_STRATEGY_INCREMENTAL: "incremental",
    S.COMPRESSION_STRATEGY_SUMMARIZE: "summarize",
    S.COMPRESSION_STRATEGY_CODE_AWARE: "code_aware",
    S.COMPRESSION_STRATEGY_PREFIX_STABLE: "prefix_stable",
}
STRATEGY_PB = {name: value for value, name in STRATEGIES.items()
               if value != S.COMPRESSION_STRATEGY_UNSPECIFIED}
ACTIONS = {
    "dropped": compressor_pb2.COMPRESSION_ACTION_KIND_DROPPED,
    "summarized": compressor_pb2.COMPRESSION_ACTION_KIND_SUMMARIZED,
    "deduplicated": compressor_pb2.COMPRESSION_ACTION_KIND_DEDUPLICATED,
    "whitespace_collapsed": compressor_pb2.COMPRESSION_ACTION_KIND_WHITESPACE_COLLAPSED,
    "comments_removed": compressor_pb2.COMPRESSION_ACTION_KIND_COMMENTS_REMOVED,
}
MTOK = 1_000_000


def report_costs(resolved: Resolved, result: core.Result) -> tuple[int, int]:
    """(saved_cost_nusd, prefix_cache_saving_nusd), each rounded once, half-even."""
    prices, _ = schedule_for(resolved.price, result.compressed_tokens, False)
    saved = result.original_tokens - result.compressed_tokens
    cache = max(0, prices.input - prices.cached_input)
    return (round_half_even(saved * prices.input, MTOK),
            round_half_even(result.prefix_tokens * cache, MTOK))


class CompressorApi(compressor_pb2_grpc.CompressorServiceServicer):
    def __init__(self, runtime: Runtime, catalog: Catalog, counter: Counter,
                 store: SessionStore, pool: ThreadPoolExecutor, summaries: Summaries) -> None:
        s = runtime.settings
        self._log = runtime.log
        self._catalog = catalog
        self._counter = counter
        self._store = store
        self._pool = pool
        self._max_bytes = s.counter_max_request_bytes
        self._summaries = summaries
        # How long a worker thread waits for one summary: the router call and two Redis
        # calls, each bounded by its own timeout, plus slack.
        self._summary_wait = (s.compressor_summary_timeout_seconds
                              + 2 * s.dependency_timeout_seconds + 5)
        self._options = core.Options(summary_max_tokens=s.compressor_summary_max_tokens,
                                     warm_prefix_min_tokens=s.compressor_warm_prefix_min_tokens)

    def warm_up(self) -> warmup.Done:
        """What the first request would otherwise pay for, done at start-up (run it on
        the pool, before the service reports SERVING): every strategy, every tokenizer,
        the report and its response."""
        def respond(entry: ModelEntry, result: core.Result) -> None:
            request = compressor_pb2.CompressRequest(model=entry.name,
                                                     target_tokens=result.target_tokens)
            compressor_pb2.CompressResponse(
                messages=result.messages,
                report=self._report(self._catalog.resolve(entry.name), request, result,
                                    common_pb2.CountAccuracy())).SerializeToString()

        return warmup.warm_up(self._counter, warmup.models(self._catalog), respond)

    async def _resolve(self, context: grpc.aio.ServicerContext, name: str) -> Resolved:
        if not name.strip():
            await invalid(context, "model", "model is empty: name a model, e.g. gpt-4o "
                          "(`tokenrt models` lists them)")
        try:
            return self._catalog.resolve(name)
        except ModelNotFound as exc:
            await abort_with(context, grpc.StatusCode.NOT_FOUND, str(exc), common_pb2.ErrorDetail(
                reason=S.ERROR_REASON_MODEL_NOT_FOUND, field="model",
                suggestions=exc.suggestions))

    async def Compress(self, request: compressor_pb2.CompressRequest,
                       context: grpc.aio.ServicerContext) -> compressor_pb2.CompressResponse:
        resolved = await self._resolve(context, request.model)
        if request.target_tokens <= 0:
            await invalid(context, "target_tokens", f"target_tokens is {request.target_tokens}: "
                          "it must be a positive number of tokens")
        if request.strategy not in STRATEGIES:
            await invalid(context, "strategy", f"strategy {request.strategy} is unknown; use "
                          "one of " + ", ".join(common_pb2.CompressionStrategy.keys()[1:]))
        size = request.ByteSize()
        if size > self._max_bytes:
            await abort_with(context, grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request is {size} bytes, above the limit of {self._max_bytes} "
                        "(TOKENRT_COUNTER_MAX_REQUEST_BYTES)", common_pb2.ErrorDetail(
                            reason=S.ERROR_REASON_MESSAGE_TOO_LARGE, field="messages",
                            limit=self._max_bytes, actual=size, unit="bytes"))
        if request.session_id and not request.tenant.org_id:
            await invalid(context, "tenant.org_id", "a session_id needs its tenant "
                          "(tenant.org_id, tenant.project_id): session state is per tenant")
        strategy = STRATEGIES[request.strategy]
        sid = session_id(request.tenant, request.session_id) if request.session_id else ""
        session = None
        if sid:
            try:
                session = await self._store.load(sid)
            except Unavailable as exc:
                await self._unavailable(context, exc)
        loop = asyncio.get_running_loop()
        meter = CounterMeter(self._counter, resolved.entry)
        o = request.options
        summarize = self._summaries.for_request(
            loop, meter.text, Request(sid, request.tenant, request.session_id, resolved.name, o),
            self._summary_wait)
        options = core.Options(o.allow_whitespace_collapse, o.allow_comment_removal,
                               self._options.summary_max_tokens,
                               self._options.warm_prefix_min_tokens)

        def work() -> tuple[core.Result, common_pb2.CountAccuracy]:
            messages = list(request.messages)  # one wrapper per message, not one per access
            measured = meter.measure(messages, request.tools)
            result = core.compress(messages, measured.per_message, measured.fixed,
                                   request.target_tokens, strategy, meter, options, session,
                                   summarize, measured.digests)
            return result, accuracy_pb(measured.accuracy)

        try:
            result, accuracy = await loop.run_in_executor(self._pool, work)
        except MessageError as exc:
            await invalid(context, exc.field, str(exc))
        except core.Unreachable as exc:
            await abort_with(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                        common_pb2.ErrorDetail(
                            reason=S.ERROR_REASON_COMPRESSION_TARGET_UNREACHABLE,
                            field="target_tokens", limit=request.target_tokens,
                            actual=exc.smallest, unit="tokens",
                            smallest_achievable_tokens=exc.smallest))
        if sid and not request.dry_run:
            try:
                await self._store.save(sid, result.sent, result.seen)
            except Unavailable as exc:
                await self._unavailable(context, exc)
        self._log.info("compressor.compressed", model=resolved.name, strategy=result.strategy_used,
                       original_tokens=result.original_tokens,
                       compressed_tokens=result.compressed_tokens, target=request.target_tokens)
        return compressor_pb2.CompressResponse(
            messages=result.messages, report=self._report(resolved, request, result, accuracy))

    async def _unavailable(self, context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
        await abort_with(context, grpc.StatusCode.UNAVAILABLE,
                    f"session state is unavailable ({exc}); retry, or send no session_id",
                    common_pb2.ErrorDetail(reason=S.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                                           retry_after_ms=1000))

    def _report(self, resolved: Resolved, request: compressor_pb2.CompressRequest,
                result: core.Result, accuracy: common_pb2.CountAccuracy
                ) -> compressor_pb2.CompressionReport:
        saved_cost, prefix_saving = report_costs(resolved, result)
        summary = result.summary
        return compressor_pb2.CompressionReport(
            original_tokens=result.original_tokens, compressed_tokens=result.compressed_tokens,
            target_tokens=request.target_tokens,
            saved_tokens=result.original_tokens - result.compressed_tokens,
            ratio_bp=round_half_even(result.compressed_tokens * 10000,
                                     max(result.original_tokens, 1)),
            strategy_requested=request.strategy or S.COMPRESSION_STRATEGY_AUTO,
            strategy_used=STRATEGY_PB[result.strategy_used], reason=result.reason,
            actions=[compressor_pb2.CompressionAction(
                kind=ACTIONS[a.kind], input_indexes=list(a.input_indexes),
                output_index=a.output_index, tokens_before=a.tokens_before,
                tokens_after=a.tokens_after, note=a.note) for a in result.actions],
            prefix_tokens_preserved=result.prefix_tokens,
            prefix_messages_preserved=result.prefix_messages,
            saved_cost_nusd=saved_cost, prefix_cache_saving_nusd=prefix_saving,
            unchanged_messages=result.unchanged_messages,
            unchanged_tokens=result.unchanged_tokens,
            summary_usage=common_pb2.Usage(
                input_tokens=summary.input_tokens if summary else 0,
                cached_input_tokens=summary.cached_input_tokens if summary else 0,
                output_tokens=summary.output_tokens if summary else 0),
            summary_cost_nusd=summary.cost_nusd if summary else 0,
            accuracy=accuracy)
