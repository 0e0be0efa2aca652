import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tokenrt.v1 import common_pb2 as _common_pb2
from tokenrt.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_DIMENSION_UNSPECIFIED: _ClassVar[UsageDimension]
    USAGE_DIMENSION_ORG: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROJECT: _ClassVar[UsageDimension]
    USAGE_DIMENSION_USER: _ClassVar[UsageDimension]
    USAGE_DIMENSION_SESSION: _ClassVar[UsageDimension]
    USAGE_DIMENSION_MODEL: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROVIDER: _ClassVar[UsageDimension]

class TimeGranularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_GRANULARITY_UNSPECIFIED: _ClassVar[TimeGranularity]
    TIME_GRANULARITY_MINUTE: _ClassVar[TimeGranularity]
    TIME_GRANULARITY_HOUR: _ClassVar[TimeGranularity]
    TIME_GRANULARITY_DAY: _ClassVar[TimeGranularity]

class UsageOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_ORDER_UNSPECIFIED: _ClassVar[UsageOrder]
    USAGE_ORDER_COST_DESC: _ClassVar[UsageOrder]
    USAGE_ORDER_TOKENS_DESC: _ClassVar[UsageOrder]
    USAGE_ORDER_REQUESTS_DESC: _ClassVar[UsageOrder]
USAGE_DIMENSION_UNSPECIFIED: UsageDimension
USAGE_DIMENSION_ORG: UsageDimension
USAGE_DIMENSION_PROJECT: UsageDimension
USAGE_DIMENSION_USER: UsageDimension
USAGE_DIMENSION_SESSION: UsageDimension
USAGE_DIMENSION_MODEL: UsageDimension
USAGE_DIMENSION_PROVIDER: UsageDimension
TIME_GRANULARITY_UNSPECIFIED: TimeGranularity
TIME_GRANULARITY_MINUTE: TimeGranularity
TIME_GRANULARITY_HOUR: TimeGranularity
TIME_GRANULARITY_DAY: TimeGranularity
USAGE_ORDER_UNSPECIFIED: UsageOrder
USAGE_ORDER_COST_DESC: UsageOrder
USAGE_ORDER_TOKENS_DESC: UsageOrder
USAGE_ORDER_REQUESTS_DESC: UsageOrder

class UsageFilter(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id", "session_id", "api_key_id", "models", "providers", "statuses", "start_time", "end_time")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    session_id: str
    api_key_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    providers: _containers.RepeatedScalarFieldContainer[_common_pb2.Provider]
    statuses: _containers.RepeatedScalarFieldContainer[_events_pb2.UsageStatus]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., providers: _Optional[_Iterable[_Union[_common_pb2.Provider, str]]] = ..., statuses: _Optional[_Iterable[_Union[_events_pb2.UsageStatus, str]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageTotals(_message.Message):
    __slots__ = ("requests", "ok_requests", "cache_hit_requests", "denied_requests", "throttled_requests", "cancelled_requests", "error_requests", "degraded_requests", "usage", "cost_nusd", "cache_saved_tokens", "cache_saved_cost_nusd", "compressed_requests", "compression_saved_tokens", "compression_saved_cost_nusd", "latency_ms_sum", "avg_latency_ms", "avg_time_to_first_token_ms", "success_rate_bp", "cache_hit_rate_bp")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OK_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DENIED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_SUM_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AVG_TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_BP_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_BP_FIELD_NUMBER: _ClassVar[int]
    requests: int
    ok_requests: int
    cache_hit_requests: int
    denied_requests: int
    throttled_requests: int
    cancelled_requests: int
    error_requests: int
    degraded_requests: int
    usage: _common_pb2.Usage
    cost_nusd: int
    cache_saved_tokens: int
    cache_saved_cost_nusd: int
    compressed_requests: int
    compression_saved_tokens: int
    compression_saved_cost_nusd: int
    latency_ms_sum: int
    avg_latency_ms: int
    avg_time_to_first_token_ms: int
    success_rate_bp: int
    cache_hit_rate_bp: int
    def __init__(self, requests: _Optional[int] = ..., ok_requests: _Optional[int] = ..., cache_hit_requests: _Optional[int] = ..., denied_requests: _Optional[int] = ..., throttled_requests: _Optional[int] = ..., cancelled_requests: _Optional[int] = ..., error_requests: _Optional[int] = ..., degraded_requests: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_nusd: _Optional[int] = ..., cache_saved_tokens: _Optional[int] = ..., cache_saved_cost_nusd: _Optional[int] = ..., compressed_requests: _Optional[int] = ..., compression_saved_tokens: _Optional[int] = ..., compression_saved_cost_nusd: _Optional[int] = ..., latency_ms_sum: _Optional[int] = ..., avg_latency_ms: _Optional[int] = ..., avg_time_to_first_token_ms: _Optional[int] = ..., success_rate_bp: _Optional[int] = ..., cache_hit_rate_bp: _Optional[int] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id", "session_id", "model", "provider", "bucket_start", "totals")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BUCKET_START_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    session_id: str
    model: str
    provider: _common_pb2.Provider
    bucket_start: _timestamp_pb2.Timestamp
    totals: UsageTotals
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., bucket_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("filter", "group_by", "granularity", "time_zone", "order_by", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    group_by: _containers.RepeatedScalarFieldContainer[UsageDimension]
    granularity: TimeGranularity
    time_zone: str
    order_by: UsageOrder
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., group_by: _Optional[_Iterable[_Union[UsageDimension, str]]] = ..., granularity: _Optional[_Union[TimeGranularity, str]] = ..., time_zone: _Optional[str] = ..., order_by: _Optional[_Union[UsageOrder, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows", "next_page_token", "total")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    next_page_token: str
    total: UsageTotals
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("filter", "series_granularity", "top_n", "time_zone")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SERIES_GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    series_granularity: TimeGranularity
    top_n: int
    time_zone: str
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., series_granularity: _Optional[_Union[TimeGranularity, str]] = ..., top_n: _Optional[int] = ..., time_zone: _Optional[str] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("total", "by_project", "by_model", "by_provider", "by_user", "by_session", "series")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BY_PROJECT_FIELD_NUMBER: _ClassVar[int]
    BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BY_USER_FIELD_NUMBER: _ClassVar[int]
    BY_SESSION_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    total: UsageTotals
    by_project: _containers.RepeatedCompositeFieldContainer[UsageRow]
    by_model: _containers.RepeatedCompositeFieldContainer[UsageRow]
    by_provider: _containers.RepeatedCompositeFieldContainer[UsageRow]
    by_user: _containers.RepeatedCompositeFieldContainer[UsageRow]
    by_session: _containers.RepeatedCompositeFieldContainer[UsageRow]
    series: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, total: _Optional[_Union[UsageTotals, _Mapping]] = ..., by_project: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., by_model: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., by_provider: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., by_user: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., by_session: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., series: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class GetEventResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.UsageEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.UsageEvent, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.UsageEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.UsageEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportEventsRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: UsageFilter
    def __init__(self, filter: _Optional[_Union[UsageFilter, _Mapping]] = ...) -> None: ...

class ExportEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.UsageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.UsageEvent, _Mapping]]] = ...) -> None: ...

class SumUsageQuery(_message.Message):
    __slots__ = ("scope", "start_time", "end_time")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SumUsageRequest(_message.Message):
    __slots__ = ("queries", "exclude_reservation_prefix", "exclude_reservation_ids")
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_RESERVATION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_RESERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SumUsageQuery]
    exclude_reservation_prefix: str
    exclude_reservation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queries: _Optional[_Iterable[_Union[SumUsageQuery, _Mapping]]] = ..., exclude_reservation_prefix: _Optional[str] = ..., exclude_reservation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SumUsageResult(_message.Message):
    __slots__ = ("query", "tokens", "cost_nusd", "requests")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    query: SumUsageQuery
    tokens: int
    cost_nusd: int
    requests: int
    def __init__(self, query: _Optional[_Union[SumUsageQuery, _Mapping]] = ..., tokens: _Optional[int] = ..., cost_nusd: _Optional[int] = ..., requests: _Optional[int] = ...) -> None: ...

class SumUsageResponse(_message.Message):
    __slots__ = ("results", "watermark")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SumUsageResult]
    watermark: _timestamp_pb2.Timestamp
    def __init__(self, results: _Optional[_Iterable[_Union[SumUsageResult, _Mapping]]] = ..., watermark: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("scope", "tolerance_bp")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_BP_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    tolerance_bp: int
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., tolerance_bp: _Optional[int] = ...) -> None: ...

class ReconcileRow(_message.Message):
    __slots__ = ("limit_id", "scope", "metric", "period_start", "period_end", "budget_used", "ledger_used", "drift", "within_tolerance")
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    BUDGET_USED_FIELD_NUMBER: _ClassVar[int]
    LEDGER_USED_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    WITHIN_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    limit_id: str
    scope: _common_pb2.Scope
    metric: _common_pb2.LimitMetric
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    budget_used: int
    ledger_used: int
    drift: int
    within_tolerance: bool
    def __init__(self, limit_id: _Optional[str] = ..., scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., metric: _Optional[_Union[_common_pb2.LimitMetric, str]] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., budget_used: _Optional[int] = ..., ledger_used: _Optional[int] = ..., drift: _Optional[int] = ..., within_tolerance: _Optional[bool] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("rows", "drifted_limits", "watermark")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_LIMITS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ReconcileRow]
    drifted_limits: int
    watermark: _timestamp_pb2.Timestamp
    def __init__(self, rows: _Optional[_Iterable[_Union[ReconcileRow, _Mapping]]] = ..., drifted_limits: _Optional[int] = ..., watermark: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
