import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tokenrt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_STATUS_UNSPECIFIED: _ClassVar[UsageStatus]
    USAGE_STATUS_OK: _ClassVar[UsageStatus]
    USAGE_STATUS_CACHE_HIT: _ClassVar[UsageStatus]
    USAGE_STATUS_DENIED: _ClassVar[UsageStatus]
    USAGE_STATUS_THROTTLED: _ClassVar[UsageStatus]
    USAGE_STATUS_CANCELLED: _ClassVar[UsageStatus]
    USAGE_STATUS_ERROR: _ClassVar[UsageStatus]
USAGE_STATUS_UNSPECIFIED: UsageStatus
USAGE_STATUS_OK: UsageStatus
USAGE_STATUS_CACHE_HIT: UsageStatus
USAGE_STATUS_DENIED: UsageStatus
USAGE_STATUS_THROTTLED: UsageStatus
USAGE_STATUS_CANCELLED: UsageStatus
USAGE_STATUS_ERROR: UsageStatus

class UsageEvent(_message.Message):
    __slots__ = ("schema_version", "event_id", "started_at", "occurred_at", "recorded_at", "org_id", "project_id", "user_id", "session_id", "request_id", "api_key_id", "provider", "requested_model", "served_model", "provider_model_id", "degraded_from_model", "task_type", "provider_attempts", "usage", "usage_source", "cost_nusd", "cost_breakdown", "price_version", "cache_hit", "cache_kind", "cache_similarity", "cache_saved_tokens", "cache_saved_cost_nusd", "compression_applied", "compression_strategy", "compression_original_tokens", "compression_saved_tokens", "compression_saved_cost_nusd", "prefix_tokens_preserved", "latency_ms", "time_to_first_token_ms", "provider_latency_ms", "queue_wait_ms", "status", "finish_reason", "error_code", "error_reason", "error_message", "budget_decision", "budget_level", "budget_limit_id", "budget_reservation_id", "budget_reserved_at", "stream", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FROM_MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    COST_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_KIND_FIELD_NUMBER: _ClassVar[int]
    CACHE_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_APPLIED_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_ORIGINAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_TOKENS_PRESERVED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DECISION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEVEL_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_RESERVED_AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    event_id: str
    started_at: _timestamp_pb2.Timestamp
    occurred_at: _timestamp_pb2.Timestamp
    recorded_at: _timestamp_pb2.Timestamp
    org_id: str
    project_id: str
    user_id: str
    session_id: str
    request_id: str
    api_key_id: str
    provider: _common_pb2.Provider
    requested_model: str
    served_model: str
    provider_model_id: str
    degraded_from_model: str
    task_type: _common_pb2.TaskType
    provider_attempts: int
    usage: _common_pb2.Usage
    usage_source: _common_pb2.UsageSource
    cost_nusd: int
    cost_breakdown: _common_pb2.CostBreakdown
    price_version: str
    cache_hit: bool
    cache_kind: _common_pb2.CacheKind
    cache_similarity: float
    cache_saved_tokens: int
    cache_saved_cost_nusd: int
    compression_applied: bool
    compression_strategy: _common_pb2.CompressionStrategy
    compression_original_tokens: int
    compression_saved_tokens: int
    compression_saved_cost_nusd: int
    prefix_tokens_preserved: int
    latency_ms: int
    time_to_first_token_ms: int
    provider_latency_ms: int
    queue_wait_ms: int
    status: UsageStatus
    finish_reason: _common_pb2.FinishReason
    error_code: str
    error_reason: _common_pb2.ErrorReason
    error_message: str
    budget_decision: _common_pb2.BudgetDecision
    budget_level: _common_pb2.BudgetLevel
    budget_limit_id: str
    budget_reservation_id: str
    budget_reserved_at: _timestamp_pb2.Timestamp
    stream: bool
    tags: _containers.ScalarMap[str, str]
    def __init__(self, schema_version: _Optional[int] = ..., event_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., request_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., requested_model: _Optional[str] = ..., served_model: _Optional[str] = ..., provider_model_id: _Optional[str] = ..., degraded_from_model: _Optional[str] = ..., task_type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., provider_attempts: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., usage_source: _Optional[_Union[_common_pb2.UsageSource, str]] = ..., cost_nusd: _Optional[int] = ..., cost_breakdown: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., price_version: _Optional[str] = ..., cache_hit: _Optional[bool] = ..., cache_kind: _Optional[_Union[_common_pb2.CacheKind, str]] = ..., cache_similarity: _Optional[float] = ..., cache_saved_tokens: _Optional[int] = ..., cache_saved_cost_nusd: _Optional[int] = ..., compression_applied: _Optional[bool] = ..., compression_strategy: _Optional[_Union[_common_pb2.CompressionStrategy, str]] = ..., compression_original_tokens: _Optional[int] = ..., compression_saved_tokens: _Optional[int] = ..., compression_saved_cost_nusd: _Optional[int] = ..., prefix_tokens_preserved: _Optional[int] = ..., latency_ms: _Optional[int] = ..., time_to_first_token_ms: _Optional[int] = ..., provider_latency_ms: _Optional[int] = ..., queue_wait_ms: _Optional[int] = ..., status: _Optional[_Union[UsageStatus, str]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., error_code: _Optional[str] = ..., error_reason: _Optional[_Union[_common_pb2.ErrorReason, str]] = ..., error_message: _Optional[str] = ..., budget_decision: _Optional[_Union[_common_pb2.BudgetDecision, str]] = ..., budget_level: _Optional[_Union[_common_pb2.BudgetLevel, str]] = ..., budget_limit_id: _Optional[str] = ..., budget_reservation_id: _Optional[str] = ..., budget_reserved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[bool] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("data", "subject", "headers", "reason", "stream_sequence", "delivery_count", "dead_lettered_at")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_AT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    subject: str
    headers: _containers.ScalarMap[str, str]
    reason: str
    stream_sequence: int
    delivery_count: int
    dead_lettered_at: _timestamp_pb2.Timestamp
    def __init__(self, data: _Optional[bytes] = ..., subject: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., reason: _Optional[str] = ..., stream_sequence: _Optional[int] = ..., delivery_count: _Optional[int] = ..., dead_lettered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BudgetAlert(_message.Message):
    __slots__ = ("alert_id", "occurred_at", "previous_level", "level", "limit", "request_id")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_LEVEL_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    occurred_at: _timestamp_pb2.Timestamp
    previous_level: _common_pb2.BudgetLevel
    level: _common_pb2.BudgetLevel
    limit: _common_pb2.LimitState
    request_id: str
    def __init__(self, alert_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_level: _Optional[_Union[_common_pb2.BudgetLevel, str]] = ..., level: _Optional[_Union[_common_pb2.BudgetLevel, str]] = ..., limit: _Optional[_Union[_common_pb2.LimitState, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...
