import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tokenrt.v1 import common_pb2 as _common_pb2
from tokenrt.v1 import compressor_pb2 as _compressor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompressionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_MODE_UNSPECIFIED: _ClassVar[CompressionMode]
    COMPRESSION_MODE_AUTO: _ClassVar[CompressionMode]
    COMPRESSION_MODE_OFF: _ClassVar[CompressionMode]
    COMPRESSION_MODE_ALWAYS: _ClassVar[CompressionMode]
COMPRESSION_MODE_UNSPECIFIED: CompressionMode
COMPRESSION_MODE_AUTO: CompressionMode
COMPRESSION_MODE_OFF: CompressionMode
COMPRESSION_MODE_ALWAYS: CompressionMode

class CompressionPolicy(_message.Message):
    __slots__ = ("mode", "strategy", "target_tokens", "threshold_bp", "options")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_BP_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    mode: CompressionMode
    strategy: _common_pb2.CompressionStrategy
    target_tokens: int
    threshold_bp: int
    options: _common_pb2.CompressionOptions
    def __init__(self, mode: _Optional[_Union[CompressionMode, str]] = ..., strategy: _Optional[_Union[_common_pb2.CompressionStrategy, str]] = ..., target_tokens: _Optional[int] = ..., threshold_bp: _Optional[int] = ..., options: _Optional[_Union[_common_pb2.CompressionOptions, _Mapping]] = ...) -> None: ...

class RoutingPreferences(_message.Message):
    __slots__ = ("preferred_model", "forced_model", "max_cost_nusd", "allow_degrade", "task_type", "cache", "compression", "max_queue_wait_ms")
    PREFERRED_MODEL_FIELD_NUMBER: _ClassVar[int]
    FORCED_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DEGRADE_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    preferred_model: str
    forced_model: str
    max_cost_nusd: int
    allow_degrade: bool
    task_type: _common_pb2.TaskType
    cache: _common_pb2.CachePolicy
    compression: CompressionPolicy
    max_queue_wait_ms: int
    def __init__(self, preferred_model: _Optional[str] = ..., forced_model: _Optional[str] = ..., max_cost_nusd: _Optional[int] = ..., allow_degrade: _Optional[bool] = ..., task_type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., cache: _Optional[_Union[_common_pb2.CachePolicy, _Mapping]] = ..., compression: _Optional[_Union[CompressionPolicy, _Mapping]] = ..., max_queue_wait_ms: _Optional[int] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("request_id", "session_id", "user_id", "messages", "tools", "sampling", "preferences", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    user_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    sampling: _common_pb2.SamplingParams
    preferences: RoutingPreferences
    tags: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., preferences: _Optional[_Union[RoutingPreferences, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CacheOutcome(_message.Message):
    __slots__ = ("hit", "kind", "similarity", "saved_tokens", "saved_cost_nusd", "stored")
    HIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    kind: _common_pb2.CacheKind
    similarity: float
    saved_tokens: int
    saved_cost_nusd: int
    stored: bool
    def __init__(self, hit: _Optional[bool] = ..., kind: _Optional[_Union[_common_pb2.CacheKind, str]] = ..., similarity: _Optional[float] = ..., saved_tokens: _Optional[int] = ..., saved_cost_nusd: _Optional[int] = ..., stored: _Optional[bool] = ...) -> None: ...

class BudgetOutcome(_message.Message):
    __slots__ = ("decision", "reservation_id", "warnings", "enforcement")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    decision: _common_pb2.BudgetDecision
    reservation_id: str
    warnings: _containers.RepeatedCompositeFieldContainer[_common_pb2.LimitState]
    enforcement: _common_pb2.BudgetEnforcement
    def __init__(self, decision: _Optional[_Union[_common_pb2.BudgetDecision, str]] = ..., reservation_id: _Optional[str] = ..., warnings: _Optional[_Iterable[_Union[_common_pb2.LimitState, _Mapping]]] = ..., enforcement: _Optional[_Union[_common_pb2.BudgetEnforcement, str]] = ...) -> None: ...

class SelectionSummary(_message.Message):
    __slots__ = ("task_type", "complexity", "reason")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_type: _common_pb2.TaskType
    complexity: _common_pb2.Complexity
    reason: str
    def __init__(self, task_type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., complexity: _Optional[_Union[_common_pb2.Complexity, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("request_id", "event_id", "message", "finish_reason", "usage", "usage_source", "cost_nusd", "cost_breakdown", "served_model", "provider", "requested_model", "degraded_from_model", "cache", "compression", "budget", "selection", "latency_ms", "time_to_first_token_ms", "provider_latency_ms", "queue_wait_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    COST_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    event_id: str
    message: _common_pb2.Message
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    usage_source: _common_pb2.UsageSource
    cost_nusd: int
    cost_breakdown: _common_pb2.CostBreakdown
    served_model: str
    provider: _common_pb2.Provider
    requested_model: str
    degraded_from_model: str
    cache: CacheOutcome
    compression: _compressor_pb2.CompressionReport
    budget: BudgetOutcome
    selection: SelectionSummary
    latency_ms: int
    time_to_first_token_ms: int
    provider_latency_ms: int
    queue_wait_ms: int
    def __init__(self, request_id: _Optional[str] = ..., event_id: _Optional[str] = ..., message: _Optional[_Union[_common_pb2.Message, _Mapping]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., usage_source: _Optional[_Union[_common_pb2.UsageSource, str]] = ..., cost_nusd: _Optional[int] = ..., cost_breakdown: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., served_model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., requested_model: _Optional[str] = ..., degraded_from_model: _Optional[str] = ..., cache: _Optional[_Union[CacheOutcome, _Mapping]] = ..., compression: _Optional[_Union[_compressor_pb2.CompressionReport, _Mapping]] = ..., budget: _Optional[_Union[BudgetOutcome, _Mapping]] = ..., selection: _Optional[_Union[SelectionSummary, _Mapping]] = ..., latency_ms: _Optional[int] = ..., time_to_first_token_ms: _Optional[int] = ..., provider_latency_ms: _Optional[int] = ..., queue_wait_ms: _Optional[int] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("completion",)
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    completion: Completion
    def __init__(self, completion: _Optional[_Union[Completion, _Mapping]] = ...) -> None: ...

class StreamCompleteRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: CompleteRequest
    def __init__(self, request: _Optional[_Union[CompleteRequest, _Mapping]] = ...) -> None: ...

class CompletionStart(_message.Message):
    __slots__ = ("request_id", "served_model", "provider", "degraded_from_model", "cache_hit")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    served_model: str
    provider: _common_pb2.Provider
    degraded_from_model: str
    cache_hit: bool
    def __init__(self, request_id: _Optional[str] = ..., served_model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., degraded_from_model: _Optional[str] = ..., cache_hit: _Optional[bool] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments_json")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments_json: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class CompletionDelta(_message.Message):
    __slots__ = ("text", "tool_calls")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    text: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallDelta]
    def __init__(self, text: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallDelta, _Mapping]]] = ...) -> None: ...

class StreamCompleteResponse(_message.Message):
    __slots__ = ("start", "delta", "done")
    START_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    start: CompletionStart
    delta: CompletionDelta
    done: Completion
    def __init__(self, start: _Optional[_Union[CompletionStart, _Mapping]] = ..., delta: _Optional[_Union[CompletionDelta, _Mapping]] = ..., done: _Optional[_Union[Completion, _Mapping]] = ...) -> None: ...

class SelectModelRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: CompleteRequest
    def __init__(self, request: _Optional[_Union[CompleteRequest, _Mapping]] = ...) -> None: ...

class ScoreComponent(_message.Message):
    __slots__ = ("name", "points", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    points: int
    detail: str
    def __init__(self, name: _Optional[str] = ..., points: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class ModelCandidate(_message.Message):
    __slots__ = ("model", "provider", "score", "components", "eligible", "reasons", "estimated_cost_nusd", "fits_context", "needs_compression", "healthy", "budget_decision")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    FITS_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    NEEDS_COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DECISION_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: _common_pb2.Provider
    score: int
    components: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    eligible: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    estimated_cost_nusd: int
    fits_context: bool
    needs_compression: bool
    healthy: bool
    budget_decision: _common_pb2.BudgetDecision
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., score: _Optional[int] = ..., components: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ..., eligible: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., estimated_cost_nusd: _Optional[int] = ..., fits_context: _Optional[bool] = ..., needs_compression: _Optional[bool] = ..., healthy: _Optional[bool] = ..., budget_decision: _Optional[_Union[_common_pb2.BudgetDecision, str]] = ...) -> None: ...

class SelectModelResponse(_message.Message):
    __slots__ = ("model", "provider", "selection", "input_tokens", "input_accuracy", "candidates", "degraded_from_model")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: _common_pb2.Provider
    selection: SelectionSummary
    input_tokens: int
    input_accuracy: _common_pb2.CountAccuracy
    candidates: _containers.RepeatedCompositeFieldContainer[ModelCandidate]
    degraded_from_model: str
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., selection: _Optional[_Union[SelectionSummary, _Mapping]] = ..., input_tokens: _Optional[int] = ..., input_accuracy: _Optional[_Union[_common_pb2.CountAccuracy, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[ModelCandidate, _Mapping]]] = ..., degraded_from_model: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("include_unavailable",)
    INCLUDE_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    include_unavailable: bool
    def __init__(self, include_unavailable: _Optional[bool] = ...) -> None: ...

class RoutableModel(_message.Message):
    __slots__ = ("model", "available", "unavailable_reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    available: bool
    unavailable_reason: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[RoutableModel]
    def __init__(self, models: _Optional[_Iterable[_Union[RoutableModel, _Mapping]]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("api_key_id", "name", "tenant", "admin", "key_prefix", "created_at", "revoked_at", "last_used_at", "service")
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    api_key_id: str
    name: str
    tenant: _common_pb2.Tenant
    admin: bool
    key_prefix: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    service: bool
    def __init__(self, api_key_id: _Optional[str] = ..., name: _Optional[str] = ..., tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., admin: _Optional[bool] = ..., key_prefix: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[bool] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("tenant", "name", "admin", "service")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    name: str
    admin: bool
    service: bool
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., name: _Optional[str] = ..., admin: _Optional[bool] = ..., service: _Optional[bool] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("api_key", "secret")
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    api_key: ApiKey
    secret: str
    def __init__(self, api_key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("api_key_id",)
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    api_key_id: str
    def __init__(self, api_key_id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: ApiKey
    def __init__(self, api_key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("org_id", "project_id", "include_revoked", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    include_revoked: bool
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., include_revoked: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("api_keys", "next_page_token")
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    api_keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    next_page_token: str
    def __init__(self, api_keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
