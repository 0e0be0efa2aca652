import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tokenrt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAIL_MODE_UNSPECIFIED: _ClassVar[FailMode]
    FAIL_MODE_OPEN: _ClassVar[FailMode]
    FAIL_MODE_CLOSED: _ClassVar[FailMode]

class SettlementOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLEMENT_OUTCOME_UNSPECIFIED: _ClassVar[SettlementOutcome]
    SETTLEMENT_OUTCOME_COMMITTED: _ClassVar[SettlementOutcome]
    SETTLEMENT_OUTCOME_LATE_COMMITTED: _ClassVar[SettlementOutcome]
    SETTLEMENT_OUTCOME_RELEASED: _ClassVar[SettlementOutcome]
    SETTLEMENT_OUTCOME_ALREADY_SETTLED: _ClassVar[SettlementOutcome]
FAIL_MODE_UNSPECIFIED: FailMode
FAIL_MODE_OPEN: FailMode
FAIL_MODE_CLOSED: FailMode
SETTLEMENT_OUTCOME_UNSPECIFIED: SettlementOutcome
SETTLEMENT_OUTCOME_COMMITTED: SettlementOutcome
SETTLEMENT_OUTCOME_LATE_COMMITTED: SettlementOutcome
SETTLEMENT_OUTCOME_RELEASED: SettlementOutcome
SETTLEMENT_OUTCOME_ALREADY_SETTLED: SettlementOutcome

class Limit(_message.Message):
    __slots__ = ("limit_id", "scope", "metric", "period", "rolling_window_seconds", "time_zone", "limit", "warning_threshold_bp", "critical_threshold_bp", "action", "fail_mode", "name", "created_at", "updated_at", "last_reset_at")
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ROLLING_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WARNING_THRESHOLD_BP_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_THRESHOLD_BP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FAIL_MODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RESET_AT_FIELD_NUMBER: _ClassVar[int]
    limit_id: str
    scope: _common_pb2.Scope
    metric: _common_pb2.LimitMetric
    period: _common_pb2.LimitPeriod
    rolling_window_seconds: int
    time_zone: str
    limit: int
    warning_threshold_bp: int
    critical_threshold_bp: int
    action: _common_pb2.LimitAction
    fail_mode: FailMode
    name: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    last_reset_at: _timestamp_pb2.Timestamp
    def __init__(self, limit_id: _Optional[str] = ..., scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., metric: _Optional[_Union[_common_pb2.LimitMetric, str]] = ..., period: _Optional[_Union[_common_pb2.LimitPeriod, str]] = ..., rolling_window_seconds: _Optional[int] = ..., time_zone: _Optional[str] = ..., limit: _Optional[int] = ..., warning_threshold_bp: _Optional[int] = ..., critical_threshold_bp: _Optional[int] = ..., action: _Optional[_Union[_common_pb2.LimitAction, str]] = ..., fail_mode: _Optional[_Union[FailMode, str]] = ..., name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("chain", "estimated_tokens", "estimated_cost_nusd", "requests", "ttl_seconds", "idempotency_key", "request_id", "model", "degraded", "dry_run")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    chain: _common_pb2.ScopeChain
    estimated_tokens: int
    estimated_cost_nusd: int
    requests: int
    ttl_seconds: int
    idempotency_key: str
    request_id: str
    model: str
    degraded: bool
    dry_run: bool
    def __init__(self, chain: _Optional[_Union[_common_pb2.ScopeChain, _Mapping]] = ..., estimated_tokens: _Optional[int] = ..., estimated_cost_nusd: _Optional[int] = ..., requests: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., degraded: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation_id", "decision", "retry_after_ms", "limits", "expires_at", "enforcement")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    decision: _common_pb2.BudgetDecision
    retry_after_ms: int
    limits: _containers.RepeatedCompositeFieldContainer[_common_pb2.LimitState]
    expires_at: _timestamp_pb2.Timestamp
    enforcement: _common_pb2.BudgetEnforcement
    def __init__(self, reservation_id: _Optional[str] = ..., decision: _Optional[_Union[_common_pb2.BudgetDecision, str]] = ..., retry_after_ms: _Optional[int] = ..., limits: _Optional[_Iterable[_Union[_common_pb2.LimitState, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enforcement: _Optional[_Union[_common_pb2.BudgetEnforcement, str]] = ...) -> None: ...

class ReserveBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ReserveRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ReserveRequest, _Mapping]]] = ...) -> None: ...

class ReserveResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: ReserveResponse
    error: _common_pb2.ItemError
    def __init__(self, response: _Optional[_Union[ReserveResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class ReserveBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReserveResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReserveResult, _Mapping]]] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("reservation_id", "actual_tokens", "actual_cost_nusd", "chain", "request_id")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    actual_tokens: int
    actual_cost_nusd: int
    chain: _common_pb2.ScopeChain
    request_id: str
    def __init__(self, reservation_id: _Optional[str] = ..., actual_tokens: _Optional[int] = ..., actual_cost_nusd: _Optional[int] = ..., chain: _Optional[_Union[_common_pb2.ScopeChain, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("outcome", "limits")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    outcome: SettlementOutcome
    limits: _containers.RepeatedCompositeFieldContainer[_common_pb2.LimitState]
    def __init__(self, outcome: _Optional[_Union[SettlementOutcome, str]] = ..., limits: _Optional[_Iterable[_Union[_common_pb2.LimitState, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_id", "request_id")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    request_id: str
    def __init__(self, reservation_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: SettlementOutcome
    def __init__(self, outcome: _Optional[_Union[SettlementOutcome, str]] = ...) -> None: ...

class Settlement(_message.Message):
    __slots__ = ("commit", "release")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    commit: CommitRequest
    release: ReleaseRequest
    def __init__(self, commit: _Optional[_Union[CommitRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ...) -> None: ...

class SettleBatchRequest(_message.Message):
    __slots__ = ("settlements",)
    SETTLEMENTS_FIELD_NUMBER: _ClassVar[int]
    settlements: _containers.RepeatedCompositeFieldContainer[Settlement]
    def __init__(self, settlements: _Optional[_Iterable[_Union[Settlement, _Mapping]]] = ...) -> None: ...

class SettlementResult(_message.Message):
    __slots__ = ("commit", "release", "error")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    commit: CommitResponse
    release: ReleaseResponse
    error: _common_pb2.ItemError
    def __init__(self, commit: _Optional[_Union[CommitResponse, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class SettleBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SettlementResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SettlementResult, _Mapping]]] = ...) -> None: ...

class SetLimitRequest(_message.Message):
    __slots__ = ("limit", "validate_only")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    validate_only: bool
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class SetLimitResponse(_message.Message):
    __slots__ = ("limit", "created")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    created: bool
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class RemoveLimitRequest(_message.Message):
    __slots__ = ("limit_id",)
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    limit_id: str
    def __init__(self, limit_id: _Optional[str] = ...) -> None: ...

class RemoveLimitResponse(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: Limit
    def __init__(self, limit: _Optional[_Union[Limit, _Mapping]] = ...) -> None: ...

class ListLimitsRequest(_message.Message):
    __slots__ = ("scope", "org_id", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    org_id: str
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., org_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListLimitsResponse(_message.Message):
    __slots__ = ("limits", "next_page_token")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    next_page_token: str
    def __init__(self, limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("scope", "include_descendants")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DESCENDANTS_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    include_descendants: bool
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., include_descendants: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("limits", "enforcement")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[_common_pb2.LimitState]
    enforcement: _common_pb2.BudgetEnforcement
    def __init__(self, limits: _Optional[_Iterable[_Union[_common_pb2.LimitState, _Mapping]]] = ..., enforcement: _Optional[_Union[_common_pb2.BudgetEnforcement, str]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("scope", "limit_id")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    limit_id: str
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ..., limit_id: _Optional[str] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("limits_reset", "reset_at")
    LIMITS_RESET_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    limits_reset: int
    reset_at: _timestamp_pb2.Timestamp
    def __init__(self, limits_reset: _Optional[int] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RebuildCountersRequest(_message.Message):
    __slots__ = ("scope",)
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    scope: _common_pb2.Scope
    def __init__(self, scope: _Optional[_Union[_common_pb2.Scope, _Mapping]] = ...) -> None: ...

class RebuildCountersResponse(_message.Message):
    __slots__ = ("limits_rebuilt", "ledger_watermark")
    LIMITS_REBUILT_FIELD_NUMBER: _ClassVar[int]
    LEDGER_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    limits_rebuilt: int
    ledger_watermark: _timestamp_pb2.Timestamp
    def __init__(self, limits_rebuilt: _Optional[int] = ..., ledger_watermark: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
