"""gRPC servicer of the counter service: protobuf in, domain calls, protobuf and status out."""

from __future__ import annotations

import base64

import grpc

import tokenrt_pricing.protos as pricing_pb
from tokenrt.v1 import common_pb2, counter_pb2, counter_pb2_grpc
from tokenrt_common.errors import ServiceError, abort, invalid
from tokenrt_common.server import Runtime
from tokenrt_counter import estimator
from tokenrt_counter.core import NO_REFS, Accuracy, MessageError, Refs, estimate_accuracy
from tokenrt_counter.features import Features
from tokenrt_counter.runner import Runner
from tokenrt_counter.store import StoreUnavailable
from tokenrt_pricing import Catalog, InvalidUsage, Match, ModelNotFound, Resolved, Usage, cost_of

SOURCES = {
    "tiktoken": common_pb2.COUNT_SOURCE_TIKTOKEN,
    "tokenizer": common_pb2.COUNT_SOURCE_TOKENIZER,
    "calibrated": common_pb2.COUNT_SOURCE_CALIBRATED_ESTIMATE,
    "heuristic": common_pb2.COUNT_SOURCE_HEURISTIC,
    "provider": common_pb2.COUNT_SOURCE_PROVIDER_API,
}
MATCHES = {
    Match.EXACT: counter_pb2.MODEL_MATCH_EXACT,
    Match.ALIAS: counter_pb2.MODEL_MATCH_ALIAS,
    Match.SNAPSHOT: counter_pb2.MODEL_MATCH_SNAPSHOT,
    Match.FINE_TUNE: counter_pb2.MODEL_MATCH_FINE_TUNE,
}
PAGE_DEFAULT, PAGE_MAX = 100, 1000
MAX_BATCH = 1000  # chats per CountMessagesBatch (each also within the per-request limit)
# Model names whose resolution is remembered (the catalog is immutable; resolving a
# `sim/` name copies two dataclasses, ~17 us). Forgotten all at once when full.
MAX_RESOLVED = 4096


def accuracy_pb(a: Accuracy) -> common_pb2.CountAccuracy:
    return common_pb2.CountAccuracy(
        exactness=common_pb2.EXACTNESS_EXACT if a.exact else common_pb2.EXACTNESS_ESTIMATED,
        source=SOURCES[a.source], error_bound_bp=a.bound_bp, error_bound_tokens=a.bound_tokens,
        calibration_samples=a.samples)


def features_pb(f: Features) -> counter_pb2.ScriptFeatures:
    return counter_pb2.ScriptFeatures(
        latin_chars=f.latin, cjk_chars=f.cjk, code_chars=f.code, digit_chars=f.digit,
        whitespace_chars=f.whitespace, other_chars=f.other, message_count=f.messages,
        image_count=f.images)


def features_of(p: counter_pb2.ScriptFeatures) -> Features:
    return Features(p.latin_chars, p.cjk_chars, p.code_chars, p.digit_chars,
                    p.whitespace_chars, p.other_chars, p.message_count, p.image_count)


def utf8_size(texts: list[str], limit: int) -> int:
    """The UTF-8 size of `texts`, encoded only when it could exceed `limit` (a character
    takes at most 4 bytes, so fewer than limit / 4 characters always fit)."""
    chars = sum(len(t) for t in texts)
    if chars * 4 <= limit:
        return chars
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


class CounterApi(counter_pb2_grpc.CounterServiceServicer):
    def __init__(self, runtime: Runtime, catalog: Catalog, runner: Runner) -> None:
        self._log = runtime.log
        self._catalog = catalog
        self._runner = runner
        self._counter = runner.counter
        self._max_bytes = runtime.settings.counter_max_request_bytes
        self._resolutions: dict[str, Resolved] = {}

    # ---- helpers ----------------------------------------------------------------

    def _resolved(self, name: str, field: str = "model") -> Resolved:
        if not name.strip():
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               common_pb2.ERROR_REASON_INVALID_ARGUMENT,
                               f"{field} is empty: name a model, e.g. gpt-4o "
                               "(`tokenrt models` lists them)", field=field)
        try:
            return self._lookup(name)
        except ModelNotFound as exc:
            raise ServiceError(grpc.StatusCode.NOT_FOUND, common_pb2.ERROR_REASON_MODEL_NOT_FOUND,
                               str(exc), field=field, suggestions=exc.suggestions) from None

    def _lookup(self, name: str) -> Resolved:
        """The catalog's resolution of `name`, remembered; raises ModelNotFound."""
        resolved = self._resolutions.get(name)
        if resolved is None:
            resolved = self._catalog.resolve(name)
            if len(self._resolutions) >= MAX_RESOLVED:
                self._resolutions.clear()
            self._resolutions[name] = resolved
        return resolved

    def _check_size(self, size: int, field: str) -> None:
        if size > self._max_bytes:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               common_pb2.ERROR_REASON_MESSAGE_TOO_LARGE,
                               f"{field} is {size} bytes, above the counter's limit of "
                               f"{self._max_bytes} bytes (TOKENRT_COUNTER_MAX_REQUEST_BYTES); "
                               "split the text and use CountBatch or several calls",
                               field=field, limit=self._max_bytes, actual=size, unit="bytes")

    async def _resolve(self, context: grpc.aio.ServicerContext, name: str,
                       field: str = "model") -> Resolved:
        try:
            return self._resolved(name, field)
        except ServiceError as exc:
            await exc.abort(context)

    async def _too_large(self, context: grpc.aio.ServicerContext, size: int,
                         field: str) -> None:
        try:
            self._check_size(size, field)
        except ServiceError as exc:
            await exc.abort(context)

    async def _count_messages(self, request: counter_pb2.CountMessagesRequest,
                              out: counter_pb2.CountMessagesResponse) -> None:
        """Count `request` into `out`, an empty response (filled in place: one built apart
        would be copied into its batch result). Raises ServiceError before touching it."""
        resolved = self._resolved(request.model)
        self._check_size(request.ByteSize(), "request")  # upb: ~0.03 ms / 200 KB
        sampling = request.sampling if request.HasField("sampling") else None
        digests, tool_digests = request.message_digests, request.tool_digests
        refs = Refs(digests, tool_digests) if digests or tool_digests else NO_REFS
        try:
            result = await self._runner.messages(
                resolved.entry, request.messages, request.tools, sampling,
                resolved.provider_model_id, refs)
        except MessageError as exc:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               common_pb2.ERROR_REASON_INVALID_ARGUMENT, str(exc),
                               field=exc.field) from None
        out.model = resolved.name
        out.tokenizer = resolved.entry.tokenizer
        if result.unknown_messages or result.unknown_tools:  # no count: resend these in full
            out.unknown_messages.extend(result.unknown_messages)
            out.unknown_tools.extend(result.unknown_tools)
            return
        out.input_tokens = result.total
        for i, (tokens, image_tokens) in enumerate(result.messages):
            out.messages.add(index=i, tokens=tokens, image_tokens=image_tokens)
        out.tools_tokens = result.tools_tokens
        out.overhead_tokens = result.overhead_tokens
        out.accuracy.CopyFrom(accuracy_pb(result.accuracy))
        out.features.CopyFrom(features_pb(result.features))

    # ---- RPCs -------------------------------------------------------------------

    async def CountText(self, request: counter_pb2.CountTextRequest,
                        context: grpc.aio.ServicerContext) -> counter_pb2.CountTextResponse:
        resolved = await self._resolve(context, request.model)
        if request.WhichOneof("input") == "raw_utf8":
            await self._too_large(context, len(request.raw_utf8), "raw_utf8")
            text = request.raw_utf8.decode("utf-8", "replace")  # invalid bytes -> U+FFFD
        else:
            text = request.text
            await self._too_large(context, utf8_size([text], self._max_bytes), "text")
        tokens, accuracy = await self._runner.text(resolved.entry, text)
        return counter_pb2.CountTextResponse(tokens=tokens, accuracy=accuracy_pb(accuracy),
                                             model=resolved.name,
                                             tokenizer=resolved.entry.tokenizer)

    async def CountMessages(self, request: counter_pb2.CountMessagesRequest,
                            context: grpc.aio.ServicerContext
                            ) -> counter_pb2.CountMessagesResponse:
        response = counter_pb2.CountMessagesResponse()
        try:
            await self._count_messages(request, response)
        except ServiceError as exc:
            await exc.abort(context)
        return response

    async def CountMessagesBatch(self, request: counter_pb2.CountMessagesBatchRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> counter_pb2.CountMessagesBatchResponse:
        if len(request.requests) > MAX_BATCH:
            await invalid(context, "requests", f"requests: at most {MAX_BATCH} per batch, got "
                          f"{len(request.requests)}")
        # One after another, not a task each: a small chat is counted inline without ever
        # suspending (a task would cost more than its count), and a large one spreads its
        # unseen texts over every worker by itself.
        response = counter_pb2.CountMessagesBatchResponse()
        for item in request.requests:
            result = response.results.add()
            try:
                await self._count_messages(item, result.response)
            except ServiceError as exc:
                result.error.CopyFrom(exc.item())
        return response

    async def CountBatch(self, request: counter_pb2.CountBatchRequest,
                         context: grpc.aio.ServicerContext) -> counter_pb2.CountBatchResponse:
        resolved = await self._resolve(context, request.model)
        size = utf8_size(list(request.texts), self._max_bytes)
        await self._too_large(context, size, "texts")
        counts: list[int] = []
        exact = True
        for text in request.texts:
            tokens, accuracy = await self._runner.text(resolved.entry, text)
            counts.append(tokens)
            exact = exact and accuracy.exact
        total = sum(counts)
        encoder = self._counter.encoder(resolved.entry)
        if exact and encoder is not None:
            batch_accuracy = Accuracy(True, encoder.source)
        else:
            batch_accuracy = estimate_accuracy(self._counter.fit(resolved.entry), total)
        return counter_pb2.CountBatchResponse(tokens=counts, total_tokens=total,
                                              accuracy=accuracy_pb(batch_accuracy),
                                              model=resolved.name,
                                              tokenizer=resolved.entry.tokenizer)

    async def ResolveModel(self, request: counter_pb2.ResolveModelRequest,
                           context: grpc.aio.ServicerContext
                           ) -> counter_pb2.ResolveModelResponse:
        resolved = await self._resolve(context, request.model)
        return counter_pb2.ResolveModelResponse(model=pricing_pb.model_info(resolved),
                                                match=MATCHES[resolved.match])

    async def ListCatalog(self, request: counter_pb2.ListCatalogRequest,
                          context: grpc.aio.ServicerContext) -> counter_pb2.ListCatalogResponse:
        if request.page_size < 0:
            await invalid(context, "page_size", "page_size must be 0 (default) or more")
        size = min(request.page_size or PAGE_DEFAULT, PAGE_MAX)
        start = 0
        if request.page_token:
            try:
                start = int(base64.urlsafe_b64decode(request.page_token.encode()).decode())
                if start < 0:
                    raise ValueError(start)
            except (ValueError, UnicodeDecodeError):
                await invalid(context, "page_token", "page_token is not one this service "
                              "returned; start again without it")
        provider = pricing_pb.PROVIDER_NAMES.get(request.provider, "")
        entries = self._catalog.search(provider, request.name_contains,
                                       request.include_deprecated)
        page = entries[start:start + size]
        next_token = ""
        if start + size < len(entries):
            next_token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return counter_pb2.ListCatalogResponse(
            models=[pricing_pb.model_info(Resolved(e, Match.EXACT, e.name,
                                                   e.provider_model_id or e.name))
                    for e in page],
            next_page_token=next_token, catalog_version=self._catalog.version)

    async def EstimateCost(self, request: counter_pb2.EstimateCostRequest,
                           context: grpc.aio.ServicerContext
                           ) -> counter_pb2.EstimateCostResponse:
        resolved = await self._resolve(context, request.model)
        u = request.usage
        usage = Usage(u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens,
                      u.output_tokens, u.reasoning_tokens)
        try:
            cost = cost_of(resolved.price, usage,
                           batch=request.billing_mode == counter_pb2.BILLING_MODE_BATCH)
        except InvalidUsage as exc:
            await invalid(context, exc.field, str(exc))
        return counter_pb2.EstimateCostResponse(
            cost_nusd=cost.total_nusd, breakdown=pricing_pb.cost_breakdown(cost),
            model=resolved.name, price_version=resolved.price.version,
            long_context_applied=cost.long_context, prices=pricing_pb.token_prices(cost.prices))

    async def Calibrate(self, request: counter_pb2.CalibrateRequest,
                        context: grpc.aio.ServicerContext) -> counter_pb2.CalibrateResponse:
        if not request.samples:
            await invalid(context, "samples", "samples is empty: send at least one sample")
        accepted = rejected = 0
        by_model: dict[str, list[estimator.Sample]] = {}
        tokenizer: dict[str, str] = {}
        for s in request.samples:
            try:
                entry = self._lookup(s.model).entry
            except ModelNotFound:
                rejected += 1
                continue
            if s.reported_input_tokens <= 0 or s.counted_input_tokens <= 0:
                rejected += 1
                continue
            if self._counter.encoder(entry) is not None:
                accepted += 1  # exact models are checked, not learned
                if s.counted_input_tokens != s.reported_input_tokens:
                    mismatches = self._counter.exact_mismatches
                    mismatches[entry.name] = mismatches.get(entry.name, 0) + 1
                    self._log.debug("counter.exact_count_differs", model=entry.name,
                                    counted=s.counted_input_tokens,
                                    reported=s.reported_input_tokens, sample=s.request_id)
                continue
            features = features_of(s.features)
            if features == Features() or estimator.is_outlier(
                    self._counter.fit(entry), features, s.reported_input_tokens):
                rejected += 1
                continue
            accepted += 1
            by_model.setdefault(entry.name, []).append((features, s.reported_input_tokens))
            tokenizer[entry.name] = entry.tokenizer
        states: list[counter_pb2.CalibrationState] = []
        try:
            fits = await self._runner.calibrate(by_model, tokenizer)
        except StoreUnavailable as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE,
                        common_pb2.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                        f"calibration store unavailable ({exc}); retry later")
        for model, fit in fits.items():
            states.append(counter_pb2.CalibrationState(model=model, samples=fit.samples,
                                                       error_bound_bp=fit.error_bound_bp))
        return counter_pb2.CalibrateResponse(accepted=accepted, rejected=rejected,
                                             models=states)
