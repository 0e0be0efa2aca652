"""One request's state as it goes through the pipeline, and the records built from it
(the Completion answered and the UsageEvent published)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from tokenrt.v1 import cache_pb2, common_pb2, compressor_pb2, events_pb2, router_pb2
from tokenrt_pricing import Cost, Usage
from tokenrt_pricing.model import ModelEntry
from tokenrt_router.keys import Caller
from tokenrt_router.select import Candidate
from tokenrt_router.tasks import Analysis
from tokenrt_usage.events import SCHEMA_VERSION, new_event_id

T = common_pb2
PROVIDERS = {"openai": T.PROVIDER_OPENAI, "anthropic": T.PROVIDER_ANTHROPIC,
             "gemini": T.PROVIDER_GEMINI, "openai_compatible": T.PROVIDER_OPENAI_COMPATIBLE,
             "simulator": T.PROVIDER_SIMULATOR}


def now_ts() -> timestamp_pb2.Timestamp:
    ns = time.time_ns()  # (Timestamp.GetCurrentTime goes through a datetime)
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


@dataclass
class Job:
    request_id: str
    caller: Caller
    req: router_pb2.CompleteRequest
    stream: bool
    user_id: str
    started_ns: int = field(default_factory=time.monotonic_ns)
    started_at: timestamp_pb2.Timestamp = field(default_factory=now_ts)
    event_id: str = field(default_factory=new_event_id)
    # The model counted and looked up before selection (requested, or the default).
    anchor: str = ""
    requested_model: str = ""
    input_tokens: int = 0
    count: object | None = None  # counter_pb2.CountMessagesResponse when the counter answered
    # What was looked up in the cache (stored under the same key after a miss).
    cacheable: cache_pb2.CacheableRequest | None = None
    lookup: cache_pb2.LookupResponse | None = None
    analysis: Analysis | None = None
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    degraded_from: str = ""
    decision: int = T.BUDGET_DECISION_UNSPECIFIED
    enforcement: int = T.BUDGET_ENFORCEMENT_UNSPECIFIED
    reservation_id: str = ""
    # The budget scopes the request is reserved and settled against (made once).
    chain: common_pb2.ScopeChain | None = None
    reserved_at: timestamp_pb2.Timestamp | None = None
    warnings: list[common_pb2.LimitState] = field(default_factory=list)
    limit_id: str = ""
    budget_level: int = 0
    queue_wait_ms: int = 0
    messages: list[common_pb2.Message] = field(default_factory=list)
    compression: compressor_pb2.CompressionReport | None = None
    served: ModelEntry | None = None
    provider_model_id: str = ""
    attempts: int = 0
    message: common_pb2.Message = field(
        default_factory=lambda: common_pb2.Message(role=common_pb2.ROLE_ASSISTANT))
    finish_reason: int = T.FINISH_REASON_UNSPECIFIED
    usage: Usage = field(default_factory=Usage)
    usage_source: int = T.USAGE_SOURCE_NONE
    cost: Cost | None = None
    price_version: str = ""
    provider_ns: int = 0
    first_token_ns: int = 0
    status: int = events_pb2.USAGE_STATUS_OK
    error_code: str = ""
    error_reason: int = 0
    error_message: str = ""
    stored: bool = False
    # When the caller stops waiting (time.monotonic() seconds; 0: no deadline).
    deadline: float = 0.0
    # Its event and settlement were handed over (Router.finish): exactly once per request.
    finished: bool = False

    @property
    def tenant(self) -> common_pb2.Tenant:
        return T.Tenant(org_id=self.caller.org_id, project_id=self.caller.project_id,
                        user_id=self.user_id)

    @property
    def hit(self) -> bool:
        return self.lookup is not None and self.lookup.hit

    @property
    def charged(self) -> bool:
        """The reservation is committed with what the provider used (else it is released)."""
        return (bool(self.reservation_id) and self.cost is not None
                and self.usage_source != common_pb2.USAGE_SOURCE_NONE)

    def elapsed_ms(self, since_ns: int | None = None) -> int:
        return (time.monotonic_ns() - (since_ns or self.started_ns)) // 1_000_000


def _breakdown(cost: Cost | None) -> common_pb2.CostBreakdown:
    if cost is None:
        return T.CostBreakdown()
    return T.CostBreakdown(input_cost_nusd=cost.input_nusd,
                           cached_input_cost_nusd=cost.cached_input_nusd,
                           cache_write_cost_nusd=cost.cache_write_nusd,
                           output_cost_nusd=cost.output_nusd,
                           reasoning_cost_nusd=cost.reasoning_nusd, total_cost_nusd=cost.total_nusd)


def _usage(u: Usage) -> common_pb2.Usage:
    return T.Usage(input_tokens=u.input_tokens, cached_input_tokens=u.cached_input_tokens,
                   cache_write_input_tokens=u.cache_write_input_tokens,
                   output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens)


def served_name(job: Job) -> str:
    if job.hit and job.lookup is not None:
        return job.lookup.response.served_model
    return job.served.name if job.served else ""


def provider_of(job: Job) -> int:
    if job.hit and job.lookup is not None:
        return job.lookup.response.provider
    return PROVIDERS.get(job.served.provider, 0) if job.served else 0


def completion(job: Job) -> router_pb2.Completion:
    lk = job.lookup
    cache = router_pb2.CacheOutcome(stored=job.stored)
    if job.hit and lk is not None:
        cache = router_pb2.CacheOutcome(hit=True, kind=lk.kind, similarity=lk.similarity,
                                        saved_tokens=lk.saved_tokens,
                                        saved_cost_nusd=lk.saved_cost_nusd)
    a = job.analysis
    c = router_pb2.Completion(
        request_id=job.request_id, event_id=job.event_id, message=job.message,
        finish_reason=job.finish_reason, usage=_usage(job.usage), usage_source=job.usage_source,
        cost_nusd=job.cost.total_nusd if job.cost else 0, cost_breakdown=_breakdown(job.cost),
        served_model=served_name(job), provider=provider_of(job),
        requested_model=job.requested_model, degraded_from_model=job.degraded_from,
        cache=cache,
        budget=router_pb2.BudgetOutcome(decision=job.decision,
                                        reservation_id=job.reservation_id,
                                        warnings=job.warnings, enforcement=job.enforcement),
        latency_ms=job.elapsed_ms(),
        time_to_first_token_ms=((job.first_token_ns - job.started_ns) // 1_000_000
                                if job.first_token_ns else job.elapsed_ms()),
        provider_latency_ms=job.provider_ns // 1_000_000, queue_wait_ms=job.queue_wait_ms)
    if a is not None:
        c.selection.CopyFrom(router_pb2.SelectionSummary(
            task_type=a.task, complexity=a.complexity, reason=selection_reason(job)))
    if job.compression is not None:
        c.compression.CopyFrom(job.compression)
    return c


def selection_reason(job: Job) -> str:
    a = job.analysis
    if a is None:
        return ""
    task = T.TaskType.Name(a.task).removeprefix("TASK_TYPE_").lower()
    level = T.Complexity.Name(a.complexity).removeprefix("COMPLEXITY_").lower()
    target = served_name(job) or (job.chosen.entry.name if job.chosen else "none")
    why = "forced by the caller" if job.req.preferences.forced_model else (
        "best score among eligible models")
    if job.degraded_from:
        why = f"budget degraded from {job.degraded_from}"
    return f"{task}/{level} → {target} ({why}; {a.reason})"


def usage_event(job: Job) -> events_pb2.UsageEvent:
    lk = job.lookup
    e = events_pb2.UsageEvent(
        schema_version=SCHEMA_VERSION, event_id=job.event_id, started_at=job.started_at,
        occurred_at=now_ts(), org_id=job.caller.org_id, project_id=job.caller.project_id,
        user_id=job.user_id, session_id=job.req.session_id, request_id=job.request_id,
        api_key_id=job.caller.api_key_id, provider=provider_of(job),
        requested_model=job.requested_model, served_model=served_name(job),
        provider_model_id=job.provider_model_id, degraded_from_model=job.degraded_from,
        task_type=job.analysis.task if job.analysis else 0, provider_attempts=job.attempts,
        usage=_usage(job.usage), usage_source=job.usage_source,
        cost_nusd=job.cost.total_nusd if job.cost else 0, cost_breakdown=_breakdown(job.cost),
        price_version=job.price_version, latency_ms=job.elapsed_ms(),
        time_to_first_token_ms=((job.first_token_ns - job.started_ns) // 1_000_000
                                if job.first_token_ns else 0),
        provider_latency_ms=job.provider_ns // 1_000_000, queue_wait_ms=job.queue_wait_ms,
        status=job.status, finish_reason=job.finish_reason, error_code=job.error_code,
        error_reason=job.error_reason, error_message=job.error_message[:500],
        budget_decision=job.decision, budget_level=job.budget_level,
        # Only a committed reservation is named: a released one charged nothing, and the
        # budget's rebuild and the ledger's reconciliation sum the events that name one.
        budget_limit_id=job.limit_id,
        budget_reservation_id=job.reservation_id if job.charged else "",
        stream=job.stream, tags=dict(job.req.tags))
    if job.reserved_at is not None:
        e.budget_reserved_at.CopyFrom(job.reserved_at)
    if job.hit and lk is not None:
        e.cache_hit = True
        e.cache_kind = lk.kind
        e.cache_similarity = lk.similarity
        e.cache_saved_tokens = lk.saved_tokens
        e.cache_saved_cost_nusd = lk.saved_cost_nusd
    r = job.compression
    if r is not None and r.saved_tokens > 0:
        e.compression_applied = True
        e.compression_strategy = r.strategy_used
        e.compression_original_tokens = r.original_tokens
        e.compression_saved_tokens = r.saved_tokens
        e.compression_saved_cost_nusd = r.saved_cost_nusd
        e.prefix_tokens_preserved = r.prefix_tokens_preserved
    return e
