"""The request pipeline (DESIGN.md, "One request, end to end").

Critical path: count ‖ cache lookup → selection → budget reserve (degrade / queue loop)
→ compression when needed → provider call. Off the path, coalesced: budget settlement,
cache store, usage event, calibration sample. The usage event and the settlement are
written to the journal (journal.py: one write(2)) before the answer is returned, so a
router that dies right after answering loses neither: the next one replays them.

Deadlines: before each costly stage (counting and lookup, budget reserve, compression,
provider call) and before a budget queue wait, a request whose caller's deadline has
passed (or would pass during the wait) is given up with DEADLINE_EXCEEDED; its
reservation is released and nothing is charged (the provider was not called).

Failure policies: cache down → skipped; counter down → a byte-based upper estimate;
compressor down → uncompressed when it fits, else CONTEXT_TOO_LONG; budget down →
TOKENRT_ROUTER_BUDGET_UNAVAILABLE (closed: UNAVAILABLE; open: served, FAILED_OPEN);
NATS down → the publisher's outbox. Every request, refused or not, produces one event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from google.protobuf import timestamp_pb2

from tokenrt.v1 import (
    budget_pb2,
    budget_pb2_grpc,
    cache_pb2,
    cache_pb2_grpc,
    common_pb2,
    compressor_pb2,
    compressor_pb2_grpc,
    counter_pb2,
    counter_pb2_grpc,
    events_pb2,
    router_pb2,
)
from tokenrt_cache import replay
from tokenrt_common.settings import Settings
from tokenrt_counter.client import ByReference
from tokenrt_pricing import Catalog, ModelNotFound, Usage, cost_of
from tokenrt_pricing.model import ModelEntry, Resolved
from tokenrt_router import bound, select, tasks
from tokenrt_router.batching import Batcher, ItemFailed
from tokenrt_router.job import PROVIDERS, Job, completion, now_ts, usage_event
from tokenrt_router.journal import Journal, Segment
from tokenrt_router.offpath import Coalescer
from tokenrt_router.providers import calls
from tokenrt_router.providers.base import (
    Breaker,
    Delta,
    Failure,
    Provider,
    ProviderError,
    ProviderRequest,
    StreamEnd,
)
from tokenrt_router.refusal import Refusal, invalid
from tokenrt_usage.publisher import Publisher, default_outbox_path

T = common_pb2
E = events_pb2
S = grpc.StatusCode
DOWN = (S.UNAVAILABLE, S.DEADLINE_EXCEEDED, S.CANCELLED, S.UNKNOWN, S.INTERNAL)
MAX_DEGRADES = 3
LATENCY_WEIGHT = 0.2  # of the newest request in the moving average of provider latency
# Near the end of a budget, a request without its own max output gets a smaller one that
# fits what is left, but never below this (a shorter answer would rarely be useful).
MIN_CLAMPED_OUTPUT = 256
DEFAULT_QUEUE_WAIT_MS = 2000
# When the router turns a request away (full): how soon to try again, milliseconds.
OVERLOAD_RETRY_MS = 250
SAMPLES_MIN_TOKENS = 1
# Model names resolved against the (immutable) catalog, remembered per router; names come
# from requests, so only this many are kept.
MAX_RESOLVED = 1024
# Item errors of a SettleBatch that are sent again (the budget's Redis is away, a replica
# is shutting down); the others (an unknown reservation: expired, or released already) are
# final.
SETTLE_AGAIN = {S.UNAVAILABLE.value[0], S.DEADLINE_EXCEEDED.value[0], S.ABORTED.value[0]}
PROVIDER_FAILURE = {Failure.RATE_LIMITED: common_pb2.ERROR_REASON_PROVIDER_RATE_LIMITED,
                    Failure.TIMEOUT: common_pb2.ERROR_REASON_PROVIDER_TIMEOUT,
                    Failure.UNREACHABLE: common_pb2.ERROR_REASON_PROVIDER_UNAVAILABLE}


@dataclass(frozen=True)
class Speculation:
    """A reservation sent for an upper bound of the prompt before its count came."""

    bound: int
    plan: tuple[str, int, bool]  # model, max output, compression needed
    estimated_tokens: int
    estimated_cost_nusd: int
    answer: asyncio.Future[budget_pb2.ReserveResult]
    sent_at: timestamp_pb2.Timestamp  # (the event's budget_reserved_at when kept)
    digests: list[bytes]  # of the large messages, to learn their counts


class Deps:
    """Long-lived stubs to the other services and the usage publisher."""

    def __init__(self, counter: counter_pb2_grpc.CounterServiceStub,
                 cache: cache_pb2_grpc.CacheServiceStub,
                 budget: budget_pb2_grpc.BudgetServiceStub,
                 compressor: compressor_pb2_grpc.CompressorServiceStub,
                 publisher: Publisher) -> None:
        self.counter = counter
        self.cache = cache
        self.budget = budget
        self.compressor = compressor
        self.publisher = publisher


class Router:
    def __init__(self, settings: Settings, log: structlog.stdlib.BoundLogger, deps: Deps,
                 catalog: Catalog, providers: dict[str, Provider]) -> None:
        self.s = settings
        self.log = log
        self.deps = deps
        self.catalog = catalog
        self.providers = providers
        self.breaker = Breaker()
        self._resolved: dict[str, Resolved] = {}
        # Why a model cannot be served whatever its health (no provider or deployment for
        # it): fixed once the router has started.
        self._unservable: dict[str, str | None] = {}
        self.models = [m.strip() for m in settings.router_models.split(",") if m.strip()]
        self.policy = calls.Policy(settings.router_provider_timeout_seconds,
                                   settings.router_provider_retries,
                                   settings.router_max_retry_after_seconds)
        every = settings.router_flush_ms / 1000
        self.journal = Journal(journal_folder(settings), log)
        self.journal.open()
        self.settlements: Coalescer[budget_pb2.Settlement] = Coalescer(
            "settle", self._settle, every, 500, log,
            patience_s=settings.router_reservation_ttl_seconds, done=self._journaled)
        self.stores: Coalescer[cache_pb2.StoreRequest] = Coalescer(
            "cache_store", self._store, every, 500, log)
        # Events are retried as long as settlements: the publisher fails only when its
        # outbox cannot write (a full disk) while NATS is away; dropping them then would
        # lose usage the caller was answered for.
        self.events: Coalescer[events_pb2.UsageEvent] = Coalescer(
            "usage", self._publish, every, 500, log,
            patience_s=settings.router_reservation_ttl_seconds, done=self._journaled)
        self.samples: Coalescer[counter_pb2.CalibrationSample] = Coalescer(
            "calibrate", self._calibrate, 20 * every, 500, log)
        # Measured provider latency per model (ms, moving average), scored by selection.
        self.latency: dict[str, float] = {}
        # Counts, lookups and reservations are on the critical path: merged while one is
        # in flight, and under load after a short wait (_linger).
        half = settings.grpc_max_message_bytes // 2
        # Messages and tools the counter has counted for a model go by digest (an IDE
        # resends the same files every request); a batch is weighed as sent.
        self.by_reference = ByReference(deps.counter)
        self.counts: Batcher[tuple[counter_pb2.CountMessagesRequest,
                                   counter_pb2.CountMessagesRequest],
                             counter_pb2.CountMessagesResult] = Batcher(
            self._count_many, 256, weigh=lambda r: r[1].ByteSize(), max_weight=half,
            linger=self._linger)
        self.lookups: Batcher[cache_pb2.LookupRequest, cache_pb2.LookupResult] = Batcher(
            self._lookup_many, 256, weigh=lambda r: r.ByteSize(), max_weight=half,
            linger=self._linger)
        self.reserves: Batcher[budget_pb2.ReserveRequest, budget_pb2.ReserveResult] = Batcher(
            self._reserve_many, 256, orphan=self._release_orphan, linger=self._linger)
        self._linger_s = settings.router_batch_linger_ms / 1000
        self._linger_from = settings.router_batch_linger_from
        self._background: set[asyncio.Task[None]] = set()
        # Requests counted, looked up or reserved now (plan): speculation only when alone.
        self._planning = 0
        # Speculative reserves by outcome (for the metrics): kept, re_reserved, near_limit,
        # refused, released, released_hit, budget_down, failed.
        self.speculated: dict[str, int] = {}
        # Requests in the pipeline now, and those turned away because it was full.
        self.in_flight = 0
        self.turned_away = 0
        self._max_in_flight = settings.router_max_in_flight
        self.message_counts = bound.MessageCounts()

    def _linger(self) -> float:
        """How long a critical-path call waits for more requests to join it: only while
        `router_batch_linger_from` or more requests are being planned (without the wait
        most calls carried one or two requests at concurrency 64)."""
        return self._linger_s if self._planning >= self._linger_from else 0.0

    # -- off-path flushes -------------------------------------------------------------

    def start(self) -> None:
        """Replay what a previous router left in the journal (its answered requests' events
        and settlements); each record is done again through the coalescers."""
        found = self.journal.recover()
        for seg, entries in found:
            for e in entries:
                try:
                    event = events_pb2.UsageEvent.FromString(e.event)
                    settle = budget_pb2.Settlement.FromString(e.settlement) \
                        if e.settlement else None
                except Exception:  # a record that passed its CRC cannot be parsed: a bug
                    self.log.error("router.journal_bad_record", path=str(seg.path))
                    self.journal.done(seg, 2 if e.settlement else 1)
                    continue
                self.events.add(event, seg)
                if settle is not None:
                    self.settlements.add(settle, seg)
        if found:
            self.log.info("router.journal_replayed", segments=len(found),
                          records=sum(len(entries) for _, entries in found))

    def _journaled(self, tickets: list[Segment]) -> None:
        for seg in tickets:
            self.journal.done(seg)

    async def _settle(self, items: list[budget_pb2.Settlement]) -> list[budget_pb2.Settlement]:
        resp = await self.deps.budget.SettleBatch(
            budget_pb2.SettleBatchRequest(settlements=items))
        return [item for item, r in zip(items, resp.results, strict=False)
                if r.WhichOneof("result") == "error" and r.error.code in SETTLE_AGAIN]

    async def _count_many(self, items: list[tuple[counter_pb2.CountMessagesRequest,
                                                  counter_pb2.CountMessagesRequest]]
                          ) -> list[counter_pb2.CountMessagesResult]:
        """One CountMessagesBatch of (full, as sent) requests; digests the counter does not
        know go again in full, in batches under the same weight cap, all within one RPC
        timeout."""
        self.by_reference.stub = self.deps.counter
        resp = await self.by_reference.count_messages_batch(
            [full for full, _ in items], self.s.rpc_timeout_seconds,
            sent=[sent for _, sent in items], max_bytes=self.s.grpc_max_message_bytes // 2)
        return list(resp.results)

    async def _lookup_many(self, items: list[cache_pb2.LookupRequest]
                           ) -> list[cache_pb2.LookupResult]:
        resp = await self.deps.cache.LookupBatch(cache_pb2.LookupBatchRequest(requests=items))
        return list(resp.results)

    async def _reserve_many(self, items: list[budget_pb2.ReserveRequest]
                            ) -> list[budget_pb2.ReserveResult]:
        resp = await self.deps.budget.ReserveBatch(budget_pb2.ReserveBatchRequest(requests=items))
        return list(resp.results)

    def _release_orphan(self, result: budget_pb2.ReserveResult) -> None:
        """A reservation made for a caller that went away is given back at once."""
        if result.WhichOneof("result") == "response" and result.response.reservation_id:
            self.settlements.add(budget_pb2.Settlement(release=budget_pb2.ReleaseRequest(
                reservation_id=result.response.reservation_id)))

    async def _store(self, items: list[cache_pb2.StoreRequest]) -> None:
        await self.deps.cache.StoreBatch(cache_pb2.StoreBatchRequest(requests=items))

    async def _publish(self, items: list[events_pb2.UsageEvent]) -> None:
        await self.deps.publisher.publish_many(items)

    async def _calibrate(self, items: list[counter_pb2.CalibrationSample]) -> None:
        await self.deps.counter.Calibrate(counter_pb2.CalibrateRequest(samples=items))

    async def drain(self) -> None:
        """Finish the off-path work (shutdown), within the shutdown grace; what is still
        waiting then (a settlement for a budget that is down) stays in the journal and the
        next router started on the same state folder replays it."""
        async def everything() -> None:
            while self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
            for c in (self.events, self.settlements, self.stores, self.samples):
                await c.drain()
        try:
            await asyncio.wait_for(everything(), self.s.shutdown_grace_seconds)
        except TimeoutError:
            self.log.error("router.drain_incomplete", grace_s=self.s.shutdown_grace_seconds)
        self.journal.close()  # what is not done stays in it for the next router

    # -- catalog and providers --------------------------------------------------------

    def resolve(self, name: str) -> Resolved:
        """`catalog.resolve`, remembered: the catalog does not change while the router runs
        (and a `sim/` name costs two dataclass copies each time)."""
        found = self._resolved.get(name)
        if found is None:
            found = self.catalog.resolve(name)
            if len(self._resolved) < MAX_RESOLVED:
                self._resolved[name] = found
        return found

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.resolve(name).entry
        except ModelNotFound as exc:
            raise Refusal(S.NOT_FOUND, T.ERROR_REASON_MODEL_NOT_FOUND, str(exc),
                          T.ErrorDetail(field="preferences", suggestions=exc.suggestions)) \
                from None

    def provider_for(self, entry: ModelEntry) -> Provider | None:
        return self.providers.get(entry.provider)

    def unhealthy(self, entries: list[ModelEntry]) -> dict[str, str]:
        out = self.breaker.unhealthy()
        for e in entries:
            if e.name not in self._unservable:
                self._unservable[e.name] = self._why_unservable(e)
            why = self._unservable[e.name]
            if why is not None:
                out[e.name] = why
        return out

    def _why_unservable(self, e: ModelEntry) -> str | None:
        p = self.providers.get(e.provider)
        if p is None:
            return f"no {e.provider} provider configured"
        if not _serves(p, self.resolve(e.name).provider_model_id):
            return f"no {e.provider} deployment serves {e.name}"
        return None

    # -- admission --------------------------------------------------------------------

    def admit(self) -> AbstractContextManager[None]:
        """A place in the pipeline for one request (Complete, StreamComplete, the HTTP
        endpoint), held while the returned context is open. Past `router_max_in_flight`
        the request is turned away here (a Refusal), before anything is done or charged
        (no event: it used nothing), so an overload gives callers a quick retry instead
        of a queue that grows until their deadlines pass."""
        if self._max_in_flight and self.in_flight >= self._max_in_flight:
            self.turned_away += 1
            raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_OVERLOADED,
                          f"the router is at its limit of {self._max_in_flight} requests "
                          "in flight (TOKENRT_ROUTER_MAX_IN_FLIGHT); nothing was done or "
                          f"charged: retry in {OVERLOAD_RETRY_MS} ms",
                          T.ErrorDetail(retry_after_ms=OVERLOAD_RETRY_MS,
                                        limit=self._max_in_flight, actual=self.in_flight,
                                        unit="requests"))
        self.in_flight += 1
        return self._leaving()

    @contextmanager
    def _leaving(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.in_flight -= 1

    # -- planning ---------------------------------------------------------------------

    async def plan(self, job: Job, dry_run: bool = False) -> None:
        """Count ‖ lookup, then (on a miss) select, reserve and compress."""
        req = job.req
        _check(req)
        if not dry_run:  # waited in the server's queue past its caller's deadline
            _in_time(job, "counting")
        prefs = req.preferences
        job.requested_model = prefs.forced_model or prefs.preferred_model
        job.anchor = self.entry(job.requested_model or self.models[0]).name
        cacheable = not prefs.cache.no_cache and not dry_run
        count_task = asyncio.ensure_future(self._count(job))
        detection = tasks.detect(req.messages, prefs.task_type)
        spec: Speculation | None = None
        self._planning += 1
        try:
            if not dry_run and self._planning == 1:
                spec = self._speculate(job, detection)
            lookup = await self._lookup(job) if cacheable else None
            await count_task
            if spec is not None and isinstance(job.count, counter_pb2.CountMessagesResponse):
                self.message_counts.learn(job.anchor, spec.digests, job.count)
            job.lookup = lookup
            if job.hit and lookup is not None:
                job.message = lookup.response.message
                job.finish_reason = lookup.response.finish_reason
                job.status = E.USAGE_STATUS_CACHE_HIT
                job.usage_source = T.USAGE_SOURCE_NONE
                job.analysis = detection.at(job.input_tokens)
                return
            job.analysis = detection.at(job.input_tokens)
            self.rank(job)
            if dry_run:
                return
            _in_time(job, "the budget reservation")
            pending, spec = spec, None  # from here on _adopt gives it back when not used
            if pending is None or not await self._adopt(job, pending):
                await self._reserve(job)
        finally:
            self._planning -= 1
            if spec is not None:  # a cache hit, a refusal, or the caller went away
                self._drop(spec, "released_hit" if job.hit else "released")
        _in_time(job, "compression")
        await self._compress(job)

    # -- speculative reserve ------------------------------------------------------------

    def _speculate(self, job: Job, detection: tasks.Detection) -> Speculation | None:
        """At low load (the only request being planned), reserve for an upper bound of
        the prompt (bound.py) while it is counted and looked up, so the budget hop is off
        the critical path whenever the exact count gives the same plan. None when the
        prompt has no bound, or no model is eligible for it. Under load reservations go
        after the counts, batched: lone speculative calls cost the budget more CPU than
        the hop they save (measured at concurrency 64)."""
        req = job.req
        entry = self.entry(job.anchor)
        if not bound.bounded(req, entry):
            return None
        digests = bound.digests(req.messages)
        most = bound.input_bound(req, entry, self.message_counts, digests)
        if most is None:
            return None
        try:
            candidates = self._ranked(job, most, detection.at(most))
        except Refusal:
            return None
        best = candidates[0] if candidates else None
        if best is None or not best.eligible:
            return None
        request = self._reserve_request(job, best, most)
        return Speculation(most, _plan(best), request.estimated_tokens,
                           request.estimated_cost_nusd, self.reserves.submit(request), now_ts(),
                           digests)

    async def _adopt(self, job: Job, spec: Speculation) -> bool:
        """Whether the speculative reservation is the request's: the budget allowed it,
        the exact count is within the bound and gives the same plan (model, max output,
        compression), and what is held covers the exact estimate. A reservation not
        adopted is given back before the exact one is made (today's path, `_reserve`): a
        loose bound never refuses what the exact count would be allowed, and the two are
        never held together."""
        try:
            resp = _reserved(await spec.answer)
        except (grpc.aio.AioRpcError, ItemFailed) as exc:
            if exc.code() not in DOWN:
                self._speculated("failed")
                return False
            self._speculated("budget_down")
            self._budget_down(job, exc)  # (the exact reservation would fail alike)
            return True
        if resp.decision not in (T.BUDGET_DECISION_ALLOW, T.BUDGET_DECISION_UNSPECIFIED):
            self._speculated("refused")  # nothing is held
            return False
        cand = job.chosen
        assert cand is not None
        # Past a limit's warning level the bound's excess could be what put it there: the
        # answer's budget levels and warnings must be the exact request's, so near a
        # threshold the exact count is reserved.
        near = any(lim.level > T.BUDGET_LEVEL_OK for lim in resp.limits)
        if near:
            self._speculated("near_limit")
        elif (job.input_tokens <= spec.bound and _plan(cand) == spec.plan
                and spec.estimated_tokens >= job.input_tokens + cand.max_output
                and spec.estimated_cost_nusd >= cand.estimated_cost_nusd):
            self._speculated("kept")
            _note_budget(job, resp)
            job.reserved_at = spec.sent_at
            job.reservation_id = resp.reservation_id
            return True
        else:
            self._speculated("re_reserved")
        if resp.reservation_id:
            await self._release_now(job, resp.reservation_id)
        return False

    async def _release_now(self, job: Job, reservation_id: str) -> None:
        """Give a reservation back before reserving again (else both would be held for a
        moment, and a limit near its end could refuse the second); when the budget does
        not answer, off the path (it then holds more than needed until settled)."""
        release = budget_pb2.Settlement(release=budget_pb2.ReleaseRequest(
            reservation_id=reservation_id, request_id=job.request_id))
        try:
            again = await self._settle([release])
        except grpc.aio.AioRpcError:
            again = [release]
        for item in again:
            self.settlements.add(item)

    def _drop(self, spec: Speculation, outcome: str) -> None:
        """A speculative reservation the request will not use: given back off the path
        (now, or by the batcher when its answer comes)."""
        self._speculated(outcome)
        if not spec.answer.done():
            spec.answer.cancel()  # the batcher hands the answer to _release_orphan
        elif not spec.answer.cancelled() and spec.answer.exception() is None:
            self._release_orphan(spec.answer.result())

    def _speculated(self, outcome: str) -> None:
        self.speculated[outcome] = self.speculated.get(outcome, 0) + 1

    async def _count(self, job: Job) -> None:
        req = job.req
        try:
            full = counter_pb2.CountMessagesRequest(model=job.anchor, messages=req.messages,
                                                    tools=req.tools, sampling=req.sampling)
            result = await self.counts.call((full, self.by_reference.by_reference(full)))
            if result.WhichOneof("result") != "response":
                raise ItemFailed(result.error)
            job.count = result.response
            job.input_tokens = result.response.input_tokens
        except (grpc.aio.AioRpcError, ItemFailed) as exc:
            if exc.code() in (S.INVALID_ARGUMENT, S.NOT_FOUND):
                raise Refusal(exc.code(), T.ERROR_REASON_INVALID_ARGUMENT,
                              exc.details() or "the counter refused the messages") from None
            # Counter down: an upper bound, so that a hard budget still holds enough.
            job.input_tokens = bound.without_counter(req, self.entry(job.anchor),
                                                     self.message_counts)
            self.log.warning("router.counter_unavailable", code=exc.code().name)

    async def _lookup(self, job: Job) -> cache_pb2.LookupResponse | None:
        req = job.req
        job.cacheable = cache_pb2.CacheableRequest(model=job.anchor, messages=req.messages,
                                                   tools=req.tools, sampling=req.sampling)
        try:
            result = await self.lookups.call(cache_pb2.LookupRequest(
                tenant=job.tenant, request=job.cacheable, policy=req.preferences.cache))
            if result.WhichOneof("result") != "response":
                raise ItemFailed(result.error)
            return result.response
        except (grpc.aio.AioRpcError, ItemFailed) as exc:
            self.log.warning("router.cache_unavailable", code=exc.code().name)
            return None

    def rank(self, job: Job) -> None:
        """The candidates (kept on the job, for SelectModel, also when none is eligible)
        and the chosen one; a Refusal when none is eligible."""
        assert job.analysis is not None
        job.candidates = self._ranked(job, job.input_tokens, job.analysis)
        best = job.candidates[0] if job.candidates else None
        if best is None or not best.eligible:
            raise _none_eligible(job.req.preferences, job.candidates, job.input_tokens)
        job.chosen = best

    def _ranked(self, job: Job, input_tokens: int,
                analysis: tasks.Analysis) -> list[select.Candidate]:
        """Every candidate for a prompt of `input_tokens`, eligible ones first by score."""
        req, prefs = job.req, job.req.preferences
        names = [prefs.forced_model] if prefs.forced_model else (
            ([prefs.preferred_model] if prefs.preferred_model else []) + self.models)
        entries: dict[str, ModelEntry] = {}
        for n in names:
            e = self.entry(n)
            entries.setdefault(e.name, e)
        mode = prefs.compression.mode
        needs = select.Needs(
            input_tokens=input_tokens,
            max_output=req.sampling.max_output_tokens,
            task=analysis.task, complexity=analysis.complexity,
            tools=bool(req.tools),
            images=any(p.WhichOneof("part") == "image" for m in req.messages for p in m.content),
            preferred=self.entry(prefs.preferred_model).name if prefs.preferred_model else "",
            forced=self.entry(prefs.forced_model).name if prefs.forced_model else "",
            max_cost_nusd=prefs.max_cost_nusd if prefs.HasField("max_cost_nusd") else None,
            compression_allowed=mode != router_pb2.COMPRESSION_MODE_OFF)
        requested_output = (req.sampling.max_output_tokens
                            if req.sampling.HasField("max_output_tokens") else None)
        ranked = list(entries.values())
        return select.rank(ranked, needs, self.unhealthy(ranked), requested_output,
                           self.latency)

    # -- budget -----------------------------------------------------------------------

    def _chain(self, job: Job) -> common_pb2.ScopeChain:
        if job.chain is None:
            job.chain = _scope_chain(job)
        return job.chain

    def _reserve_request(self, job: Job, cand: select.Candidate,
                         input_tokens: int) -> budget_pb2.ReserveRequest:
        return budget_pb2.ReserveRequest(
            chain=self._chain(job), estimated_tokens=input_tokens + cand.max_output,
            estimated_cost_nusd=cand.estimated_cost_nusd, requests=1,
            ttl_seconds=self.s.router_reservation_ttl_seconds,
            request_id=job.request_id, model=cand.entry.name,
            degraded=bool(job.degraded_from))

    def _budget_down(self, job: Job, exc: grpc.aio.AioRpcError | ItemFailed) -> None:
        """A reservation that failed: served without one when the budget is down and
        budgets fail open; else a Refusal."""
        if exc.code() not in DOWN:
            raise Refusal(exc.code(), T.ERROR_REASON_INVALID_ARGUMENT,
                          f"budget refused the request: {exc.details()}") from None
        if self.s.router_budget_unavailable == "open":
            job.decision = T.BUDGET_DECISION_ALLOW
            job.enforcement = T.BUDGET_ENFORCEMENT_FAILED_OPEN
            self.log.warning("router.budget_failed_open", code=exc.code().name)
            return
        raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                      "the budget service is unreachable and budgets fail closed "
                      "(TOKENRT_ROUTER_BUDGET_UNAVAILABLE=closed); retry shortly",
                      T.ErrorDetail(retry_after_ms=1000)) from None

    async def _reserve(self, job: Job) -> None:
        prefs = job.req.preferences
        allow_degrade = (not prefs.HasField("allow_degrade") or prefs.allow_degrade) \
            and not prefs.forced_model
        max_wait = (prefs.max_queue_wait_ms if prefs.HasField("max_queue_wait_ms")
                    else DEFAULT_QUEUE_WAIT_MS)
        queued_since = 0
        degrades = 0
        clamped = False
        while True:
            cand = job.chosen
            assert cand is not None
            try:
                resp = _reserved(await self.reserves.call(
                    self._reserve_request(job, cand, job.input_tokens)))
            except (grpc.aio.AioRpcError, ItemFailed) as exc:
                self._budget_down(job, exc)
                return
            _note_budget(job, resp)
            d = resp.decision
            if d in (T.BUDGET_DECISION_ALLOW, T.BUDGET_DECISION_UNSPECIFIED) or (
                    d == T.BUDGET_DECISION_DEGRADE and job.degraded_from):
                job.reservation_id = resp.reservation_id
                if job.degraded_from:  # the answer comes from a cheaper model
                    job.decision = T.BUDGET_DECISION_DEGRADE
                if queued_since:
                    job.queue_wait_ms = (time.monotonic_ns() - queued_since) // 1_000_000
                return
            smaller = 0 if clamped or d != T.BUDGET_DECISION_DENY else \
                self._clamped_output(job, cand, resp)
            if smaller:  # a shorter answer fits what is left of the budget
                cand.max_output = smaller
                cand.estimated_cost_nusd = select.upper_cost(cand.entry, job.input_tokens,
                                                             smaller)
                clamped = True
                continue
            detail = _budget_detail(resp)
            if d == T.BUDGET_DECISION_DEGRADE:
                nxt = self._cheaper(job) if allow_degrade and degrades < MAX_DEGRADES else None
                if nxt is None:
                    job.status = E.USAGE_STATUS_DENIED
                    raise Refusal(S.RESOURCE_EXHAUSTED, T.ERROR_REASON_DEGRADE_NOT_ALLOWED,
                                  "a budget limit asks to degrade to a cheaper model, but "
                                  "degrading is not allowed for this request (forced model or "
                                  "allow_degrade=false) or no cheaper model is eligible",
                                  detail, E.USAGE_STATUS_DENIED)
                degrades += 1
                job.degraded_from = job.degraded_from or cand.entry.name
                job.chosen = nxt
                continue
            if d == T.BUDGET_DECISION_QUEUE:
                queued_since = queued_since or time.monotonic_ns()
                waited = (time.monotonic_ns() - queued_since) // 1_000_000
                pause = max(resp.retry_after_ms, 50)
                if job.deadline and time.monotonic() + pause / 1000 >= job.deadline:
                    job.queue_wait_ms = waited
                    raise Refusal(S.DEADLINE_EXCEEDED, T.ERROR_REASON_BUDGET_QUEUE_TIMEOUT,
                                  f"queued {waited} ms for budget capacity; the next is due "
                                  f"in {resp.retry_after_ms} ms, after the caller's deadline; "
                                  "given up: nothing was sent to the provider",
                                  detail, E.USAGE_STATUS_THROTTLED)
                if waited + pause <= max_wait:  # capacity is due within the bound
                    await asyncio.sleep(pause / 1000)
                    continue
                job.queue_wait_ms = waited
                raise Refusal(S.RESOURCE_EXHAUSTED, T.ERROR_REASON_BUDGET_QUEUE_TIMEOUT,
                              f"waited {waited} ms for budget capacity; the next is due in "
                              f"{resp.retry_after_ms} ms, past the bound of {max_wait} ms",
                              detail, E.USAGE_STATUS_THROTTLED)
            if d == T.BUDGET_DECISION_THROTTLE:
                raise Refusal(S.RESOURCE_EXHAUSTED, T.ERROR_REASON_BUDGET_THROTTLED,
                              f"budget limit throttles this request; retry after "
                              f"{resp.retry_after_ms} ms", detail, E.USAGE_STATUS_THROTTLED)
            resets = (detail.reset_at.ToJsonString() if detail.HasField("reset_at")
                      else "never (a total limit; raise it or Reset)")
            raise Refusal(S.RESOURCE_EXHAUSTED, T.ERROR_REASON_BUDGET_EXCEEDED,
                          f"budget exceeded: limit {detail.limit} {detail.unit}, remaining "
                          f"{detail.remaining}; it resets {resets}",
                          detail, E.USAGE_STATUS_DENIED)

    def _clamped_output(self, job: Job, cand: select.Candidate,
                        resp: budget_pb2.ReserveResponse) -> int:
        """When the request left the max output to the router: the largest one (at least
        MIN_CLAMPED_OUTPUT) that fits every limit that refused; 0 when none does."""
        if job.req.sampling.HasField("max_output_tokens"):
            return 0
        out = cand.max_output
        for lim in resp.limits:
            if not lim.triggered:
                continue
            if lim.metric == T.LIMIT_METRIC_TOKENS:
                out = min(out, lim.remaining - job.input_tokens)
            elif lim.metric == T.LIMIT_METRIC_COST:
                out = select.largest_output(cand.entry, job.input_tokens, out, lim.remaining)
            else:  # a request count: no answer length makes it fit
                return 0
        return out if MIN_CLAMPED_OUTPUT <= out < cand.max_output else 0

    async def dry_budget(self, job: Job) -> None:
        """SelectModel: each eligible candidate's budget decision, without holding anything;
        a DEGRADE on the choice moves it to the cheaper model, as Complete would."""
        eligible = [c for c in job.candidates if c.eligible]
        if not eligible:
            return
        try:
            resp = await self.deps.budget.ReserveBatch(budget_pb2.ReserveBatchRequest(requests=[
                budget_pb2.ReserveRequest(
                    chain=self._chain(job), estimated_tokens=job.input_tokens + c.max_output,
                    estimated_cost_nusd=c.estimated_cost_nusd, requests=1,
                    request_id=job.request_id, model=c.entry.name, dry_run=True)
                for c in eligible]))
        except grpc.aio.AioRpcError as exc:
            self.log.warning("router.budget_dry_run_unavailable", code=exc.code().name)
            return
        for c, r in zip(eligible, resp.results, strict=True):
            if r.WhichOneof("result") == "response":
                c.budget_decision = r.response.decision
        cur = job.chosen
        if cur is None:
            return
        prefs = job.req.preferences
        allowed = (not prefs.HasField("allow_degrade") or prefs.allow_degrade) \
            and not prefs.forced_model
        if cur.budget_decision == T.BUDGET_DECISION_DEGRADE and allowed:
            nxt = self._cheaper(job)
            if nxt is not None:
                job.degraded_from = cur.entry.name
                job.chosen = nxt
        elif cur.budget_decision in (T.BUDGET_DECISION_DENY, T.BUDGET_DECISION_THROTTLE):
            cur.reasons.append("budget refuses it now")

    def _cheaper(self, job: Job) -> select.Candidate | None:
        """The degrade target: the catalog's degrade_to of the current model when it is
        eligible, else the cheapest eligible candidate cheaper than the current one."""
        cur = job.chosen
        assert cur is not None
        target = cur.entry.degrade_to
        if target and cur.entry.name.startswith("sim/") and not target.startswith("sim/"):
            target = "sim/" + target
        for c in job.candidates:
            if c.eligible and target and c.entry.name.lower() == target.lower():
                return c
        if target:
            try:
                entry = self.entry(target)
                ranked = select.rank([entry], select.Needs(
                    job.input_tokens, cur.max_output, job.analysis.task if job.analysis else 0,
                    job.analysis.complexity if job.analysis else 0),
                    self.unhealthy([entry]), cur.max_output, self.latency)
                if ranked[0].eligible:
                    job.candidates.append(ranked[0])
                    return ranked[0]
            except Refusal:
                pass
        cheaper = [c for c in job.candidates if c.eligible
                   and c.estimated_cost_nusd < cur.estimated_cost_nusd]
        return min(cheaper, key=lambda c: c.estimated_cost_nusd) if cheaper else None

    # -- compression ------------------------------------------------------------------

    async def _compress(self, job: Job) -> None:
        cand = job.chosen
        assert cand is not None
        job.messages = list(job.req.messages)
        policy = job.req.preferences.compression
        room = cand.entry.context_window - cand.max_output
        threshold_bp = policy.threshold_bp if policy.HasField("threshold_bp") else \
            self.s.router_compression_threshold_bp
        trigger = room * threshold_bp // 10_000
        mode = policy.mode or router_pb2.COMPRESSION_MODE_AUTO
        if mode == router_pb2.COMPRESSION_MODE_OFF:
            return
        if mode == router_pb2.COMPRESSION_MODE_AUTO and job.input_tokens <= trigger:
            return
        target = policy.target_tokens if policy.HasField("target_tokens") else trigger
        target = max(1, min(target, room))
        try:
            resp = await self.deps.compressor.Compress(compressor_pb2.CompressRequest(
                model=cand.entry.name, messages=job.req.messages, tools=job.req.tools,
                target_tokens=target, strategy=policy.strategy,
                session_id=job.req.session_id, tenant=job.tenant, options=policy.options))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == S.FAILED_PRECONDITION:
                raise Refusal(S.FAILED_PRECONDITION,
                              T.ERROR_REASON_COMPRESSION_TARGET_UNREACHABLE,
                              f"compression cannot reach {target} tokens: {exc.details()}",
                              T.ErrorDetail(field="preferences.compression.target_tokens",
                                            limit=target, actual=job.input_tokens,
                                            unit="tokens")) from None
            if job.input_tokens <= room:
                self.log.warning("router.compressor_unavailable_sent_uncompressed",
                                 code=exc.code().name, tokens=job.input_tokens)
                return
            raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_CONTEXT_TOO_LONG,
                          f"the prompt ({job.input_tokens} tokens) does not fit "
                          f"{cand.entry.name}'s window ({room} tokens after max output) and "
                          f"the compressor is unavailable ({exc.code().name}); retry, or "
                          "shorten the context",
                          T.ErrorDetail(field="messages", limit=room,
                                        actual=job.input_tokens, unit="tokens")) from None
        job.messages = list(resp.messages)
        job.compression = resp.report
        job.input_tokens = resp.report.compressed_tokens or job.input_tokens

    # -- provider ---------------------------------------------------------------------

    def routes(self, job: Job) -> list[calls.Route]:
        """The chosen model, then up to two fallbacks that cost no more (the reservation
        stays an upper bound); none when the model is forced."""
        cand = job.chosen
        assert cand is not None
        out = []
        for c in [cand] + [c for c in job.candidates if c is not cand and c.eligible
                           and not job.req.preferences.forced_model
                           and c.estimated_cost_nusd <= cand.estimated_cost_nusd
                           and job.input_tokens <= c.entry.context_window - c.max_output][:2]:
            p = self.provider_for(c.entry)
            if p is not None:
                out.append(calls.Route(c.entry, p, c.max_output))
        return out

    def build(self, job: Job) -> Callable[[calls.Route], ProviderRequest]:
        def make(route: calls.Route) -> ProviderRequest:
            return ProviderRequest(self.resolve(route.entry.name).provider_model_id,
                                   job.messages, job.req.tools, job.req.sampling,
                                   route.max_output, job.request_id)
        return make

    def _served(self, job: Job, route: calls.Route) -> None:
        job.served = route.entry
        job.provider_model_id = self.resolve(route.entry.name).provider_model_id
        job.price_version = route.entry.price.version

    def _provider_refusal(self, job: Job, err: ProviderError, outcome: calls.Outcome) -> Refusal:
        job.attempts = outcome.attempts
        job.error_code = err.kind.value
        reason = PROVIDER_FAILURE.get(err.kind, T.ERROR_REASON_PROVIDER_ERROR)
        code = S.INVALID_ARGUMENT if err.kind is Failure.BAD_REQUEST else S.UNAVAILABLE
        return Refusal(code, reason, f"provider failed after {outcome.attempts} attempt(s) "
                       f"and fallbacks: {'; '.join(outcome.errors[-3:])}",
                       T.ErrorDetail(retry_after_ms=int((err.retry_after or 0) * 1000)))

    async def complete(self, job: Job) -> router_pb2.Completion:
        provider_called = False
        try:
            await self.plan(job)
            if job.hit:
                self.finish(job)
                return completion(job)
            routes = self.routes(job)
            outcome = calls.Outcome()
            _in_time(job, "the provider call")
            t0 = time.monotonic_ns()
            provider_called = True
            try:
                answer, route = await calls.complete(routes, self.build(job), self.policy,
                                                     self.breaker, outcome)
            except ProviderError as err:
                raise self._provider_refusal(job, err, outcome) from None
            job.provider_ns = time.monotonic_ns() - t0
            job.attempts = outcome.attempts
            self._served(job, route)
            job.message = answer.message
            job.finish_reason = answer.finish_reason
            if answer.usage is not None:
                job.usage, job.usage_source = answer.usage, T.USAGE_SOURCE_PROVIDER_REPORTED
            else:
                out = await self._count_output(job)
                job.usage = Usage(input_tokens=job.input_tokens, output_tokens=out)
                job.usage_source = T.USAGE_SOURCE_COUNTED
            job.cost = cost_of(route.entry.price, job.usage)
            job.stored = self._should_store(job)
            self.finish(job)
            return completion(job)
        except Refusal as r:
            self.refused(job, r)
            raise
        except asyncio.CancelledError:
            self._abandoned(job, provider_called)
            raise

    def _abandoned(self, job: Job, provider_called: bool) -> None:
        """The caller went away (cancelled, or its deadline passed) before the answer:
        once the provider was called its prompt is charged (it may have been billed; the
        output is unknown), never the whole reservation; before that nothing is. Either
        way the rest of the reservation is given back and one CANCELLED event recorded."""
        job.status = E.USAGE_STATUS_CANCELLED
        job.finish_reason = T.FINISH_REASON_CANCELLED
        job.error_code = job.error_code or "CANCELLED"
        entry = job.served or (job.chosen.entry if job.chosen else None)
        if provider_called and entry is not None and job.usage_source == T.USAGE_SOURCE_NONE:
            text = "".join(p.text for p in job.message.content) if job.served else ""
            job.usage = Usage(input_tokens=job.input_tokens,
                              output_tokens=len(text.encode()) // 2 + 1 if text else 0)
            job.usage_source = T.USAGE_SOURCE_COUNTED
            job.cost = cost_of(entry.price, job.usage)
        self.finish(job)

    def refused(self, job: Job, r: Refusal) -> None:
        job.status = r.status
        job.error_reason = r.detail.reason
        job.error_code = job.error_code or r.code.name
        job.error_message = r.message
        job.finish_reason = T.FINISH_REASON_ERROR
        self.finish(job)

    def _should_store(self, job: Job) -> bool:
        p = job.req.preferences.cache
        return (not p.no_store and job.lookup is not None and job.finish_reason in (
            T.FINISH_REASON_STOP, T.FINISH_REASON_LENGTH, T.FINISH_REASON_TOOL_CALLS)
            and not job.degraded_from and job.served is not None
            and job.served.name == job.anchor and job.compression is None)

    def finish(self, job: Job, chunks: list[cache_pb2.ChunkBoundary] | None = None) -> None:
        """Journal the usage event and the settlement (one write), then hand the off-path
        work to the coalescers: settlement, store, event, sample. Once per request: a
        second call is a bug, logged and ignored (it would record and settle twice)."""
        if job.finished:
            self.log.error("router.finished_twice", request_id=job.request_id)
            return
        job.finished = True
        if job.served is not None and job.provider_ns and not job.hit:
            ms = job.provider_ns / 1e6
            before = self.latency.get(job.served.name)
            self.latency[job.served.name] = ms if before is None else \
                before + LATENCY_WEIGHT * (ms - before)
        settlement = None
        if job.reservation_id:
            if job.charged and job.cost is not None:
                settlement = budget_pb2.Settlement(commit=budget_pb2.CommitRequest(
                    reservation_id=job.reservation_id,
                    actual_tokens=job.usage.input_tokens + job.usage.output_tokens,
                    actual_cost_nusd=job.cost.total_nusd, chain=self._chain(job),
                    request_id=job.request_id))
            else:
                settlement = budget_pb2.Settlement(release=budget_pb2.ReleaseRequest(
                    reservation_id=job.reservation_id, request_id=job.request_id))
        event = usage_event(job)
        seg = self.journal.append(event.SerializeToString(),
                                  settlement.SerializeToString() if settlement else b"")
        self.events.add(event, seg)
        if settlement is not None:
            self.settlements.add(settlement, seg)
        if job.stored and job.cacheable is not None and job.lookup is not None \
                and job.served is not None:
            self.stores.add(cache_pb2.StoreRequest(
                tenant=job.tenant, key=job.lookup.key,
                request=job.cacheable,
                policy=job.req.preferences.cache,
                response=cache_pb2.CachedResponse(
                    message=job.message, finish_reason=job.finish_reason,
                    usage=T.Usage(input_tokens=job.usage.input_tokens,
                                  cached_input_tokens=job.usage.cached_input_tokens,
                                  output_tokens=job.usage.output_tokens,
                                  reasoning_tokens=job.usage.reasoning_tokens),
                    cost_nusd=job.cost.total_nusd if job.cost else 0,
                    served_model=job.served.name,
                    provider=PROVIDERS.get(job.served.provider, T.PROVIDER_UNSPECIFIED),
                    origin_request_id=job.request_id, chunks=chunks or [])))
        if (job.usage_source == T.USAGE_SOURCE_PROVIDER_REPORTED and job.served is not None
                and job.served.name == job.anchor and job.compression is None
                and job.count is not None and job.usage.input_tokens >= SAMPLES_MIN_TOKENS):
            count = job.count
            assert isinstance(count, counter_pb2.CountMessagesResponse)
            self.samples.add(counter_pb2.CalibrationSample(
                model=job.served.name, counted_input_tokens=count.input_tokens,
                reported_input_tokens=job.usage.input_tokens, features=count.features,
                request_id=job.request_id))

    async def _count_output(self, job: Job) -> int:
        text = "".join(p.text for p in job.message.content) + "".join(
            c.name + c.arguments_json for c in job.message.tool_calls)
        if not text:
            return 0
        model = job.served.name if job.served else job.anchor
        try:
            resp = await self.deps.counter.CountText(counter_pb2.CountTextRequest(
                model=model, text=text), timeout=2.0)
            return int(resp.tokens)
        except grpc.aio.AioRpcError:
            return len(text.encode()) // 2 + 1  # upper-ish estimate when the counter is down

    # -- streaming --------------------------------------------------------------------

    async def stream(self, job: Job) -> AsyncIterator[router_pb2.StreamCompleteResponse]:
        """Until the provider's stream is open, a caller that goes away (cancelled, its
        deadline passed, disconnected) is handled as in `complete`: one CANCELLED event,
        the reservation given back (the prompt charged once the provider had it); after
        that, `_stream_output` meters what was generated."""
        provider_called = False
        opened = False
        try:
            try:
                await self.plan(job)
            except Refusal as r:
                self.refused(job, r)
                raise
            if job.hit and job.lookup is not None:
                async with aclosing(self._stream_hit(job, job.lookup.response)) as hits:
                    async for hit in hits:
                        yield hit
                return
            routes = self.routes(job)
            outcome = calls.Outcome()
            t0 = time.monotonic_ns()
            try:
                _in_time(job, "the provider call")
                provider_called = True
                route, first, gen = await calls.open_stream(routes, self.build(job),
                                                            self.policy, self.breaker, outcome)
            except ProviderError as err:
                refusal = self._provider_refusal(job, err, outcome)
                self.refused(job, refusal)
                raise refusal from None
            except Refusal as r:
                self.refused(job, r)
                raise
            opened = True
            # aclosing: a caller gone at a yield closes the inner generator at once.
            async with aclosing(self._stream_output(job, route, first, gen, outcome,
                                                    t0)) as outs:
                async for out in outs:
                    yield out
        except (asyncio.CancelledError, GeneratorExit):
            if not opened and not job.finished:
                self._abandoned(job, provider_called)
            raise

    async def _stream_hit(self, job: Job, resp: cache_pb2.CachedResponse
                          ) -> AsyncGenerator[router_pb2.StreamCompleteResponse, None]:
        R = router_pb2
        yield R.StreamCompleteResponse(start=R.CompletionStart(
            request_id=job.request_id, served_model=resp.served_model,
            provider=resp.provider, cache_hit=True))
        for d in replay.deltas(resp):
            yield R.StreamCompleteResponse(delta=_delta_pb(d))
        job.first_token_ns = job.first_token_ns or time.monotonic_ns()
        self.finish(job)
        yield R.StreamCompleteResponse(done=completion(job))

    async def _stream_output(self, job: Job, route: calls.Route, first: Delta | StreamEnd | None,
                             gen: AsyncIterator[Delta | StreamEnd], outcome: calls.Outcome,
                             t0: int
                             ) -> AsyncGenerator[router_pb2.StreamCompleteResponse, None]:
        """Pass the provider's chunks through; the event and settlement are journaled
        before the done message. However it ends before that (the caller cancels or
        disconnects, even at the start message), the provider call is stopped and what was
        generated is metered once, off this task."""
        R = router_pb2
        job.attempts = outcome.attempts
        self._served(job, route)
        seen: list[replay.Delta] = []
        text: list[str] = []
        calls_by_index: dict[int, common_pb2.ToolCall] = {}
        done = False
        end: StreamEnd | None = None
        try:
            yield R.StreamCompleteResponse(start=R.CompletionStart(
                request_id=job.request_id, served_model=route.entry.name,
                provider=PROVIDERS.get(route.entry.provider, T.PROVIDER_UNSPECIFIED),
                degraded_from_model=job.degraded_from))
            item: Delta | StreamEnd | None = first
            while item is not None:
                if isinstance(item, StreamEnd):
                    end = item
                    break
                job.first_token_ns = job.first_token_ns or time.monotonic_ns()
                text.append(item.text)
                pieces = []
                for tc, idx in zip(item.tool_calls, item.tool_indexes, strict=True):
                    call = calls_by_index.setdefault(idx, T.ToolCall())
                    call.id = call.id or tc.id
                    call.name = call.name or tc.name
                    call.arguments_json += tc.arguments_json
                    pieces.append(replay.ToolPiece(idx, tc.id, tc.name, tc.arguments_json))
                d = replay.Delta(item.text, tuple(pieces))
                seen.append(d)
                yield R.StreamCompleteResponse(delta=_delta_pb(d))
                item = await gen.__anext__()
            job.provider_ns = time.monotonic_ns() - t0
            self._assemble(job, text, calls_by_index)
            assert end is not None
            job.finish_reason = end.finish_reason
            if end.usage is not None:
                job.usage, job.usage_source = end.usage, T.USAGE_SOURCE_PROVIDER_REPORTED
            else:
                out = await self._count_output(job)
                job.usage = Usage(input_tokens=job.input_tokens, output_tokens=out)
                job.usage_source = T.USAGE_SOURCE_COUNTED
            job.cost = cost_of(route.entry.price, job.usage)
            job.stored = self._should_store(job)
            self.finish(job, replay.boundaries(seen))
            done = True
            yield R.StreamCompleteResponse(done=completion(job))
        except ProviderError as err:
            # Output has started: meter what came, end with a done(ERROR), then the status.
            self._assemble(job, text, calls_by_index)
            await self._metered_end(job, route, E.USAGE_STATUS_ERROR, T.FINISH_REASON_ERROR)
            job.error_code, job.error_message = err.kind.value, str(err)
            done = True
            self.finish(job)
            yield R.StreamCompleteResponse(done=completion(job))
            raise Refusal(S.UNAVAILABLE, PROVIDER_FAILURE.get(err.kind,
                                                              T.ERROR_REASON_PROVIDER_ERROR),
                          f"the provider's stream broke after output started: {err}") from None
        finally:
            if not done:
                # The caller cancelled (or went away): stop the provider call and meter
                # what was generated, off this (cancelled) task.
                self._assemble(job, text, calls_by_index)
                task = asyncio.create_task(self._cancelled(job, route, gen))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _assemble(self, job: Job, text: list[str],
                  by_index: dict[int, common_pb2.ToolCall]) -> None:
        msg = T.Message(role=T.ROLE_ASSISTANT)
        joined = "".join(text)
        if joined:
            msg.content.add(text=joined)
        for i in sorted(by_index):
            msg.tool_calls.append(by_index[i])
        job.message = msg

    async def _metered_end(self, job: Job, route: calls.Route, status: int,
                           finish: int) -> None:
        out = await self._count_output(job)
        job.usage = Usage(input_tokens=job.input_tokens, output_tokens=out)
        job.usage_source = T.USAGE_SOURCE_COUNTED
        job.cost = cost_of(route.entry.price, job.usage)
        job.status = status
        job.finish_reason = finish

    async def _cancelled(self, job: Job, route: calls.Route,
                         gen: AsyncIterator[Delta | StreamEnd]) -> None:
        try:
            await gen.aclose()  # type: ignore[attr-defined]
        except Exception:  # closing a broken stream is best effort
            self.log.debug("router.stream_close_failed")
        await self._metered_end(job, route, E.USAGE_STATUS_CANCELLED,
                                T.FINISH_REASON_CANCELLED)
        self.finish(job)


def journal_folder(settings: Settings) -> Path:
    """The journal beside the publisher's outbox (`<outbox stem>.journal/`): a router
    started again with the same outbox finds both."""
    outbox = default_outbox_path(settings)
    return outbox.parent / (outbox.stem + ".journal")


def _plan(cand: select.Candidate) -> tuple[str, int, bool]:
    return cand.entry.name, cand.max_output, cand.needs_compression


def _reserved(result: budget_pb2.ReserveResult) -> budget_pb2.ReserveResponse:
    if result.WhichOneof("result") != "response":
        raise ItemFailed(result.error)
    return result.response


def _note_budget(job: Job, resp: budget_pb2.ReserveResponse) -> None:
    """What the budget answered, for the event and the answer (refused or not)."""
    job.decision = resp.decision
    job.enforcement = resp.enforcement
    job.reserved_at = now_ts()
    triggered = [lim for lim in resp.limits if lim.triggered]
    if triggered:
        job.limit_id = triggered[0].limit_id
    job.budget_level = max((lim.level for lim in resp.limits), default=0)
    job.warnings = [lim for lim in resp.limits if lim.level >= T.BUDGET_LEVEL_WARNING]


def _none_eligible(prefs: router_pb2.RoutingPreferences, candidates: list[select.Candidate],
                   input_tokens: int) -> Refusal:
    why = "; ".join(f"{c.entry.name}: {', '.join(c.reasons)}" for c in candidates)
    if prefs.HasField("max_cost_nusd") and all(
            any("max_cost" in r for r in c.reasons) for c in candidates):
        return Refusal(S.FAILED_PRECONDITION, T.ERROR_REASON_MAX_COST_EXCEEDED,
                       f"no model fits max_cost_nusd {prefs.max_cost_nusd}: {why}",
                       T.ErrorDetail(field="preferences.max_cost_nusd",
                                     limit=prefs.max_cost_nusd, unit="nusd"))
    if any("compression is off" in r for c in candidates for r in c.reasons):
        return Refusal(S.FAILED_PRECONDITION, T.ERROR_REASON_CONTEXT_TOO_LONG,
                       f"the prompt does not fit and compression is off: {why}",
                       T.ErrorDetail(field="messages", actual=input_tokens, unit="tokens"))
    return Refusal(S.UNAVAILABLE, T.ERROR_REASON_PROVIDER_UNAVAILABLE,
                   f"no eligible model for this request: {why}")


def _scope_chain(job: Job) -> common_pb2.ScopeChain:
    c = job.caller
    scopes = [T.Scope(kind=T.SCOPE_KIND_ORG, org_id=c.org_id),
              T.Scope(kind=T.SCOPE_KIND_PROJECT, org_id=c.org_id, project_id=c.project_id)]
    if job.user_id:
        scopes.append(T.Scope(kind=T.SCOPE_KIND_USER, org_id=c.org_id,
                              project_id=c.project_id, user_id=job.user_id))
    if job.req.session_id:
        scopes.append(T.Scope(kind=T.SCOPE_KIND_SESSION, org_id=c.org_id,
                              project_id=c.project_id, user_id=job.user_id,
                              session_id=job.req.session_id))
    # Limits on the API key itself (`tokenrt budget set --scope api_key:ORG/KEY_ID`).
    scopes.append(T.Scope(kind=T.SCOPE_KIND_API_KEY, org_id=c.org_id,
                          api_key_id=c.api_key_id))
    return T.ScopeChain(scopes=scopes)


def _delta_pb(d: replay.Delta) -> router_pb2.CompletionDelta:
    return router_pb2.CompletionDelta(text=d.text, tool_calls=[
        router_pb2.ToolCallDelta(index=p.index, id=p.id, name=p.name,
                                 arguments_json=p.arguments_json) for p in d.tool_calls])


def _budget_detail(resp: budget_pb2.ReserveResponse) -> common_pb2.ErrorDetail:
    detail = T.ErrorDetail(budget_decision=resp.decision, retry_after_ms=resp.retry_after_ms,
                           limits=resp.limits)
    trig = [lim for lim in resp.limits if lim.triggered] or list(resp.limits)
    if trig:
        lim = trig[0]
        detail.limit = lim.limit
        detail.remaining = lim.remaining
        detail.actual = lim.used + lim.reserved
        detail.unit = T.LimitMetric.Name(lim.metric).removeprefix("LIMIT_METRIC_").lower()
        if lim.HasField("reset_at"):
            detail.reset_at.CopyFrom(lim.reset_at)
    return detail


def _serves(provider: Provider, model_id: str) -> bool:
    """Whether a provider with configured deployments has one for the model (a provider
    without that notion serves every model of its kind)."""
    serves = getattr(provider, "serves", None)
    return serves is None or bool(serves(model_id))


def _in_time(job: Job, stage: str) -> None:
    """Give up a request whose caller has stopped waiting, before `stage` costs anything."""
    if not job.deadline:
        return
    late = time.monotonic() - job.deadline
    if late >= 0:
        raise Refusal(S.DEADLINE_EXCEEDED, T.ERROR_REASON_UNSPECIFIED,
                      f"the caller's deadline passed {late * 1000:.0f} ms before {stage}; "
                      "the request was given up: nothing was sent to the provider and "
                      "nothing is charged", None, E.USAGE_STATUS_CANCELLED)


def _check(req: router_pb2.CompleteRequest) -> None:
    if not req.messages:
        raise invalid("messages", "messages is empty: send at least one message")
    if req.sampling.HasField("max_output_tokens") and req.sampling.max_output_tokens <= 0:
        raise invalid("sampling.max_output_tokens", "sampling.max_output_tokens must be > 0")
    for k, v in req.tags.items():
        if len(k.encode()) > 256 or len(v.encode()) > 256:
            raise invalid("tags", f"tag {k[:40]!r}: keys and values must be ≤ 256 bytes")
    prefs = req.preferences
    if prefs.forced_model and prefs.preferred_model and \
            prefs.forced_model != prefs.preferred_model:
        raise invalid("preferences.preferred_model",
                      "set forced_model or preferred_model, not two different models")
