import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_KIND_UNSPECIFIED: _ClassVar[ScopeKind]
    SCOPE_KIND_ORG: _ClassVar[ScopeKind]
    SCOPE_KIND_PROJECT: _ClassVar[ScopeKind]
    SCOPE_KIND_USER: _ClassVar[ScopeKind]
    SCOPE_KIND_SESSION: _ClassVar[ScopeKind]
    SCOPE_KIND_API_KEY: _ClassVar[ScopeKind]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]
    ROLE_TOOL: _ClassVar[Role]
    ROLE_DEVELOPER: _ClassVar[Role]

class ImageDetail(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_DETAIL_UNSPECIFIED: _ClassVar[ImageDetail]
    IMAGE_DETAIL_AUTO: _ClassVar[ImageDetail]
    IMAGE_DETAIL_LOW: _ClassVar[ImageDetail]
    IMAGE_DETAIL_HIGH: _ClassVar[ImageDetail]

class ToolChoiceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CHOICE_MODE_UNSPECIFIED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_AUTO: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_NONE: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_REQUIRED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_TOOL: _ClassVar[ToolChoiceMode]

class ResponseFormatType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_FORMAT_TYPE_UNSPECIFIED: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_TEXT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_OBJECT: _ClassVar[ResponseFormatType]
    RESPONSE_FORMAT_TYPE_JSON_SCHEMA: _ClassVar[ResponseFormatType]

class ReasoningEffort(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASONING_EFFORT_UNSPECIFIED: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_MINIMAL: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_LOW: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_MEDIUM: _ClassVar[ReasoningEffort]
    REASONING_EFFORT_HIGH: _ClassVar[ReasoningEffort]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_TOOL_CALLS: _ClassVar[FinishReason]
    FINISH_REASON_CONTENT_FILTER: _ClassVar[FinishReason]
    FINISH_REASON_CANCELLED: _ClassVar[FinishReason]
    FINISH_REASON_ERROR: _ClassVar[FinishReason]

class UsageSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_SOURCE_UNSPECIFIED: _ClassVar[UsageSource]
    USAGE_SOURCE_PROVIDER_REPORTED: _ClassVar[UsageSource]
    USAGE_SOURCE_COUNTED: _ClassVar[UsageSource]
    USAGE_SOURCE_NONE: _ClassVar[UsageSource]

class Exactness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXACTNESS_UNSPECIFIED: _ClassVar[Exactness]
    EXACTNESS_EXACT: _ClassVar[Exactness]
    EXACTNESS_ESTIMATED: _ClassVar[Exactness]

class CountSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COUNT_SOURCE_UNSPECIFIED: _ClassVar[CountSource]
    COUNT_SOURCE_TIKTOKEN: _ClassVar[CountSource]
    COUNT_SOURCE_TOKENIZER: _ClassVar[CountSource]
    COUNT_SOURCE_PROVIDER_API: _ClassVar[CountSource]
    COUNT_SOURCE_CALIBRATED_ESTIMATE: _ClassVar[CountSource]
    COUNT_SOURCE_HEURISTIC: _ClassVar[CountSource]

class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_UNSPECIFIED: _ClassVar[Provider]
    PROVIDER_OPENAI: _ClassVar[Provider]
    PROVIDER_ANTHROPIC: _ClassVar[Provider]
    PROVIDER_GEMINI: _ClassVar[Provider]
    PROVIDER_OPENAI_COMPATIBLE: _ClassVar[Provider]
    PROVIDER_SIMULATOR: _ClassVar[Provider]

class ModelTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TIER_UNSPECIFIED: _ClassVar[ModelTier]
    MODEL_TIER_ECONOMY: _ClassVar[ModelTier]
    MODEL_TIER_STANDARD: _ClassVar[ModelTier]
    MODEL_TIER_PREMIUM: _ClassVar[ModelTier]

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_CHAT: _ClassVar[TaskType]
    TASK_TYPE_CODE_COMPLETION: _ClassVar[TaskType]
    TASK_TYPE_CODE_GENERATION: _ClassVar[TaskType]
    TASK_TYPE_CODE_EDIT: _ClassVar[TaskType]
    TASK_TYPE_REFACTOR: _ClassVar[TaskType]
    TASK_TYPE_CODE_REVIEW: _ClassVar[TaskType]
    TASK_TYPE_EXPLAIN: _ClassVar[TaskType]
    TASK_TYPE_DEBUG: _ClassVar[TaskType]
    TASK_TYPE_SUMMARIZE: _ClassVar[TaskType]
    TASK_TYPE_TRANSLATE: _ClassVar[TaskType]
    TASK_TYPE_REASONING: _ClassVar[TaskType]

class Complexity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPLEXITY_UNSPECIFIED: _ClassVar[Complexity]
    COMPLEXITY_LOW: _ClassVar[Complexity]
    COMPLEXITY_MEDIUM: _ClassVar[Complexity]
    COMPLEXITY_HIGH: _ClassVar[Complexity]

class BudgetDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_DECISION_UNSPECIFIED: _ClassVar[BudgetDecision]
    BUDGET_DECISION_ALLOW: _ClassVar[BudgetDecision]
    BUDGET_DECISION_DEGRADE: _ClassVar[BudgetDecision]
    BUDGET_DECISION_THROTTLE: _ClassVar[BudgetDecision]
    BUDGET_DECISION_QUEUE: _ClassVar[BudgetDecision]
    BUDGET_DECISION_DENY: _ClassVar[BudgetDecision]

class LimitMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_METRIC_UNSPECIFIED: _ClassVar[LimitMetric]
    LIMIT_METRIC_TOKENS: _ClassVar[LimitMetric]
    LIMIT_METRIC_COST: _ClassVar[LimitMetric]
    LIMIT_METRIC_REQUESTS: _ClassVar[LimitMetric]

class LimitPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_PERIOD_UNSPECIFIED: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_MINUTE: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_HOUR: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_DAY: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_WEEK: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_MONTH: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_TOTAL: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_ROLLING: _ClassVar[LimitPeriod]

class LimitAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_ACTION_UNSPECIFIED: _ClassVar[LimitAction]
    LIMIT_ACTION_ALLOW: _ClassVar[LimitAction]
    LIMIT_ACTION_DENY: _ClassVar[LimitAction]
    LIMIT_ACTION_DEGRADE: _ClassVar[LimitAction]
    LIMIT_ACTION_THROTTLE: _ClassVar[LimitAction]
    LIMIT_ACTION_QUEUE: _ClassVar[LimitAction]

class BudgetLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_LEVEL_UNSPECIFIED: _ClassVar[BudgetLevel]
    BUDGET_LEVEL_OK: _ClassVar[BudgetLevel]
    BUDGET_LEVEL_WARNING: _ClassVar[BudgetLevel]
    BUDGET_LEVEL_CRITICAL: _ClassVar[BudgetLevel]
    BUDGET_LEVEL_EXCEEDED: _ClassVar[BudgetLevel]

class BudgetEnforcement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_ENFORCEMENT_UNSPECIFIED: _ClassVar[BudgetEnforcement]
    BUDGET_ENFORCEMENT_ENFORCED: _ClassVar[BudgetEnforcement]
    BUDGET_ENFORCEMENT_FAILED_OPEN: _ClassVar[BudgetEnforcement]
    BUDGET_ENFORCEMENT_FAILED_CLOSED: _ClassVar[BudgetEnforcement]

class CacheKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_KIND_UNSPECIFIED: _ClassVar[CacheKind]
    CACHE_KIND_EXACT: _ClassVar[CacheKind]
    CACHE_KIND_SEMANTIC: _ClassVar[CacheKind]

class CompressionStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_STRATEGY_UNSPECIFIED: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_TRUNCATE: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_SELECTIVE_FORGET: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_INCREMENTAL: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_SUMMARIZE: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_CODE_AWARE: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_PREFIX_STABLE: _ClassVar[CompressionStrategy]
    COMPRESSION_STRATEGY_AUTO: _ClassVar[CompressionStrategy]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_ARGUMENT: _ClassVar[ErrorReason]
    ERROR_REASON_MESSAGE_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_MODEL_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_MODEL_CAPABILITY_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_CONTEXT_TOO_LONG: _ClassVar[ErrorReason]
    ERROR_REASON_COMPRESSION_TARGET_UNREACHABLE: _ClassVar[ErrorReason]
    ERROR_REASON_BUDGET_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_BUDGET_THROTTLED: _ClassVar[ErrorReason]
    ERROR_REASON_BUDGET_QUEUE_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_MAX_COST_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_DEGRADE_NOT_ALLOWED: _ClassVar[ErrorReason]
    ERROR_REASON_RESERVATION_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_LIMIT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_EVENT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_AUTH_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_TENANT_FORBIDDEN: _ClassVar[ErrorReason]
    ERROR_REASON_IDEMPOTENCY_CONFLICT: _ClassVar[ErrorReason]
    ERROR_REASON_DEPENDENCY_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_ERROR: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_OVERLOADED: _ClassVar[ErrorReason]
SCOPE_KIND_UNSPECIFIED: ScopeKind
SCOPE_KIND_ORG: ScopeKind
SCOPE_KIND_PROJECT: ScopeKind
SCOPE_KIND_USER: ScopeKind
SCOPE_KIND_SESSION: ScopeKind
SCOPE_KIND_API_KEY: ScopeKind
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
ROLE_TOOL: Role
ROLE_DEVELOPER: Role
IMAGE_DETAIL_UNSPECIFIED: ImageDetail
IMAGE_DETAIL_AUTO: ImageDetail
IMAGE_DETAIL_LOW: ImageDetail
IMAGE_DETAIL_HIGH: ImageDetail
TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode
TOOL_CHOICE_MODE_AUTO: ToolChoiceMode
TOOL_CHOICE_MODE_NONE: ToolChoiceMode
TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode
TOOL_CHOICE_MODE_TOOL: ToolChoiceMode
RESPONSE_FORMAT_TYPE_UNSPECIFIED: ResponseFormatType
RESPONSE_FORMAT_TYPE_TEXT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_OBJECT: ResponseFormatType
RESPONSE_FORMAT_TYPE_JSON_SCHEMA: ResponseFormatType
REASONING_EFFORT_UNSPECIFIED: ReasoningEffort
REASONING_EFFORT_MINIMAL: ReasoningEffort
REASONING_EFFORT_LOW: ReasoningEffort
REASONING_EFFORT_MEDIUM: ReasoningEffort
REASONING_EFFORT_HIGH: ReasoningEffort
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_TOOL_CALLS: FinishReason
FINISH_REASON_CONTENT_FILTER: FinishReason
FINISH_REASON_CANCELLED: FinishReason
FINISH_REASON_ERROR: FinishReason
USAGE_SOURCE_UNSPECIFIED: UsageSource
USAGE_SOURCE_PROVIDER_REPORTED: UsageSource
USAGE_SOURCE_COUNTED: UsageSource
USAGE_SOURCE_NONE: UsageSource
EXACTNESS_UNSPECIFIED: Exactness
EXACTNESS_EXACT: Exactness
EXACTNESS_ESTIMATED: Exactness
COUNT_SOURCE_UNSPECIFIED: CountSource
COUNT_SOURCE_TIKTOKEN: CountSource
COUNT_SOURCE_TOKENIZER: CountSource
COUNT_SOURCE_PROVIDER_API: CountSource
COUNT_SOURCE_CALIBRATED_ESTIMATE: CountSource
COUNT_SOURCE_HEURISTIC: CountSource
PROVIDER_UNSPECIFIED: Provider
PROVIDER_OPENAI: Provider
PROVIDER_ANTHROPIC: Provider
PROVIDER_GEMINI: Provider
PROVIDER_OPENAI_COMPATIBLE: Provider
PROVIDER_SIMULATOR: Provider
MODEL_TIER_UNSPECIFIED: ModelTier
MODEL_TIER_ECONOMY: ModelTier
MODEL_TIER_STANDARD: ModelTier
MODEL_TIER_PREMIUM: ModelTier
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_CHAT: TaskType
TASK_TYPE_CODE_COMPLETION: TaskType
TASK_TYPE_CODE_GENERATION: TaskType
TASK_TYPE_CODE_EDIT: TaskType
TASK_TYPE_REFACTOR: TaskType
TASK_TYPE_CODE_REVIEW: TaskType
TASK_TYPE_EXPLAIN: TaskType
TASK_TYPE_DEBUG: TaskType
TASK_TYPE_SUMMARIZE: TaskType
TASK_TYPE_TRANSLATE: TaskType
TASK_TYPE_REASONING: TaskType
COMPLEXITY_UNSPECIFIED: Complexity
COMPLEXITY_LOW: Complexity
COMPLEXITY_MEDIUM: Complexity
COMPLEXITY_HIGH: Complexity
BUDGET_DECISION_UNSPECIFIED: BudgetDecision
BUDGET_DECISION_ALLOW: BudgetDecision
BUDGET_DECISION_DEGRADE: BudgetDecision
BUDGET_DECISION_THROTTLE: BudgetDecision
BUDGET_DECISION_QUEUE: BudgetDecision
BUDGET_DECISION_DENY: BudgetDecision
LIMIT_METRIC_UNSPECIFIED: LimitMetric
LIMIT_METRIC_TOKENS: LimitMetric
LIMIT_METRIC_COST: LimitMetric
LIMIT_METRIC_REQUESTS: LimitMetric
LIMIT_PERIOD_UNSPECIFIED: LimitPeriod
LIMIT_PERIOD_MINUTE: LimitPeriod
LIMIT_PERIOD_HOUR: LimitPeriod
LIMIT_PERIOD_DAY: LimitPeriod
LIMIT_PERIOD_WEEK: LimitPeriod
LIMIT_PERIOD_MONTH: LimitPeriod
LIMIT_PERIOD_TOTAL: LimitPeriod
LIMIT_PERIOD_ROLLING: LimitPeriod
LIMIT_ACTION_UNSPECIFIED: LimitAction
LIMIT_ACTION_ALLOW: LimitAction
LIMIT_ACTION_DENY: LimitAction
LIMIT_ACTION_DEGRADE: LimitAction
LIMIT_ACTION_THROTTLE: LimitAction
LIMIT_ACTION_QUEUE: LimitAction
BUDGET_LEVEL_UNSPECIFIED: BudgetLevel
BUDGET_LEVEL_OK: BudgetLevel
BUDGET_LEVEL_WARNING: BudgetLevel
BUDGET_LEVEL_CRITICAL: BudgetLevel
BUDGET_LEVEL_EXCEEDED: BudgetLevel
BUDGET_ENFORCEMENT_UNSPECIFIED: BudgetEnforcement
BUDGET_ENFORCEMENT_ENFORCED: BudgetEnforcement
BUDGET_ENFORCEMENT_FAILED_OPEN: BudgetEnforcement
BUDGET_ENFORCEMENT_FAILED_CLOSED: BudgetEnforcement
CACHE_KIND_UNSPECIFIED: CacheKind
CACHE_KIND_EXACT: CacheKind
CACHE_KIND_SEMANTIC: CacheKind
COMPRESSION_STRATEGY_UNSPECIFIED: CompressionStrategy
COMPRESSION_STRATEGY_TRUNCATE: CompressionStrategy
COMPRESSION_STRATEGY_SELECTIVE_FORGET: CompressionStrategy
COMPRESSION_STRATEGY_INCREMENTAL: CompressionStrategy
COMPRESSION_STRATEGY_SUMMARIZE: CompressionStrategy
COMPRESSION_STRATEGY_CODE_AWARE: CompressionStrategy
COMPRESSION_STRATEGY_PREFIX_STABLE: CompressionStrategy
COMPRESSION_STRATEGY_AUTO: CompressionStrategy
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_ARGUMENT: ErrorReason
ERROR_REASON_MESSAGE_TOO_LARGE: ErrorReason
ERROR_REASON_MODEL_NOT_FOUND: ErrorReason
ERROR_REASON_MODEL_CAPABILITY_MISSING: ErrorReason
ERROR_REASON_CONTEXT_TOO_LONG: ErrorReason
ERROR_REASON_COMPRESSION_TARGET_UNREACHABLE: ErrorReason
ERROR_REASON_BUDGET_EXCEEDED: ErrorReason
ERROR_REASON_BUDGET_THROTTLED: ErrorReason
ERROR_REASON_BUDGET_QUEUE_TIMEOUT: ErrorReason
ERROR_REASON_MAX_COST_EXCEEDED: ErrorReason
ERROR_REASON_DEGRADE_NOT_ALLOWED: ErrorReason
ERROR_REASON_RESERVATION_NOT_FOUND: ErrorReason
ERROR_REASON_LIMIT_NOT_FOUND: ErrorReason
ERROR_REASON_EVENT_NOT_FOUND: ErrorReason
ERROR_REASON_API_KEY_NOT_FOUND: ErrorReason
ERROR_REASON_API_KEY_INVALID: ErrorReason
ERROR_REASON_AUTH_RATE_LIMITED: ErrorReason
ERROR_REASON_TENANT_FORBIDDEN: ErrorReason
ERROR_REASON_IDEMPOTENCY_CONFLICT: ErrorReason
ERROR_REASON_DEPENDENCY_UNAVAILABLE: ErrorReason
ERROR_REASON_PROVIDER_ERROR: ErrorReason
ERROR_REASON_PROVIDER_RATE_LIMITED: ErrorReason
ERROR_REASON_PROVIDER_TIMEOUT: ErrorReason
ERROR_REASON_PROVIDER_UNAVAILABLE: ErrorReason
ERROR_REASON_OVERLOADED: ErrorReason

class Tenant(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class Scope(_message.Message):
    __slots__ = ("kind", "org_id", "project_id", "user_id", "session_id", "api_key_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    kind: ScopeKind
    org_id: str
    project_id: str
    user_id: str
    session_id: str
    api_key_id: str
    def __init__(self, kind: _Optional[_Union[ScopeKind, str]] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class ScopeChain(_message.Message):
    __slots__ = ("scopes",)
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    scopes: _containers.RepeatedCompositeFieldContainer[Scope]
    def __init__(self, scopes: _Optional[_Iterable[_Union[Scope, _Mapping]]] = ...) -> None: ...

class ImagePart(_message.Message):
    __slots__ = ("url", "data", "media_type", "detail", "width_px", "height_px")
    URL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    url: str
    data: bytes
    media_type: str
    detail: ImageDetail
    width_px: int
    height_px: int
    def __init__(self, url: _Optional[str] = ..., data: _Optional[bytes] = ..., media_type: _Optional[str] = ..., detail: _Optional[_Union[ImageDetail, str]] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ...) -> None: ...

class ContentPart(_message.Message):
    __slots__ = ("text", "image")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: ImagePart
    def __init__(self, text: _Optional[str] = ..., image: _Optional[_Union[ImagePart, _Mapping]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "arguments_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    arguments_json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content", "name", "tool_calls", "tool_call_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: _containers.RepeatedCompositeFieldContainer[ContentPart]
    name: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_call_id: str
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[_Iterable[_Union[ContentPart, _Mapping]]] = ..., name: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_json_schema", "strict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json_schema: str
    strict: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json_schema: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "tool_name")
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    mode: ToolChoiceMode
    tool_name: str
    def __init__(self, mode: _Optional[_Union[ToolChoiceMode, str]] = ..., tool_name: _Optional[str] = ...) -> None: ...

class ResponseFormat(_message.Message):
    __slots__ = ("type", "schema_name", "json_schema", "strict")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_NAME_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    type: ResponseFormatType
    schema_name: str
    json_schema: str
    strict: bool
    def __init__(self, type: _Optional[_Union[ResponseFormatType, str]] = ..., schema_name: _Optional[str] = ..., json_schema: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_output_tokens", "stop_sequences", "seed", "presence_penalty", "frequency_penalty", "response_format", "tool_choice", "parallel_tool_calls", "reasoning_effort", "reasoning_budget_tokens", "provider_options")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_PENALTY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    REASONING_EFFORT_FIELD_NUMBER: _ClassVar[int]
    REASONING_BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_output_tokens: int
    stop_sequences: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    presence_penalty: float
    frequency_penalty: float
    response_format: ResponseFormat
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    reasoning_effort: ReasoningEffort
    reasoning_budget_tokens: int
    provider_options: _struct_pb2.Struct
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., stop_sequences: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ..., presence_penalty: _Optional[float] = ..., frequency_penalty: _Optional[float] = ..., response_format: _Optional[_Union[ResponseFormat, _Mapping]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ..., reasoning_effort: _Optional[_Union[ReasoningEffort, str]] = ..., reasoning_budget_tokens: _Optional[int] = ..., provider_options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ...) -> None: ...

class CostBreakdown(_message.Message):
    __slots__ = ("input_cost_nusd", "cached_input_cost_nusd", "cache_write_cost_nusd", "output_cost_nusd", "reasoning_cost_nusd", "total_cost_nusd")
    INPUT_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    REASONING_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    input_cost_nusd: int
    cached_input_cost_nusd: int
    cache_write_cost_nusd: int
    output_cost_nusd: int
    reasoning_cost_nusd: int
    total_cost_nusd: int
    def __init__(self, input_cost_nusd: _Optional[int] = ..., cached_input_cost_nusd: _Optional[int] = ..., cache_write_cost_nusd: _Optional[int] = ..., output_cost_nusd: _Optional[int] = ..., reasoning_cost_nusd: _Optional[int] = ..., total_cost_nusd: _Optional[int] = ...) -> None: ...

class CountAccuracy(_message.Message):
    __slots__ = ("exactness", "source", "error_bound_bp", "error_bound_tokens", "calibration_samples")
    EXACTNESS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_BOUND_BP_FIELD_NUMBER: _ClassVar[int]
    ERROR_BOUND_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    exactness: Exactness
    source: CountSource
    error_bound_bp: int
    error_bound_tokens: int
    calibration_samples: int
    def __init__(self, exactness: _Optional[_Union[Exactness, str]] = ..., source: _Optional[_Union[CountSource, str]] = ..., error_bound_bp: _Optional[int] = ..., error_bound_tokens: _Optional[int] = ..., calibration_samples: _Optional[int] = ...) -> None: ...

class TokenPrices(_message.Message):
    __slots__ = ("input_nusd_per_mtok", "cached_input_nusd_per_mtok", "cache_write_nusd_per_mtok", "output_nusd_per_mtok", "reasoning_nusd_per_mtok")
    INPUT_NUSD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_NUSD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_NUSD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NUSD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    REASONING_NUSD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    input_nusd_per_mtok: int
    cached_input_nusd_per_mtok: int
    cache_write_nusd_per_mtok: int
    output_nusd_per_mtok: int
    reasoning_nusd_per_mtok: int
    def __init__(self, input_nusd_per_mtok: _Optional[int] = ..., cached_input_nusd_per_mtok: _Optional[int] = ..., cache_write_nusd_per_mtok: _Optional[int] = ..., output_nusd_per_mtok: _Optional[int] = ..., reasoning_nusd_per_mtok: _Optional[int] = ...) -> None: ...

class ModelPrice(_message.Message):
    __slots__ = ("standard", "batch", "long_context_threshold_tokens", "long_context", "price_version", "source")
    STANDARD_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_THRESHOLD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    standard: TokenPrices
    batch: TokenPrices
    long_context_threshold_tokens: int
    long_context: TokenPrices
    price_version: str
    source: str
    def __init__(self, standard: _Optional[_Union[TokenPrices, _Mapping]] = ..., batch: _Optional[_Union[TokenPrices, _Mapping]] = ..., long_context_threshold_tokens: _Optional[int] = ..., long_context: _Optional[_Union[TokenPrices, _Mapping]] = ..., price_version: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ModelCapabilities(_message.Message):
    __slots__ = ("tools", "parallel_tool_calls", "vision", "json_mode", "json_schema", "reasoning", "streaming", "prompt_caching")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    VISION_FIELD_NUMBER: _ClassVar[int]
    JSON_MODE_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    PROMPT_CACHING_FIELD_NUMBER: _ClassVar[int]
    tools: bool
    parallel_tool_calls: bool
    vision: bool
    json_mode: bool
    json_schema: bool
    reasoning: bool
    streaming: bool
    prompt_caching: bool
    def __init__(self, tools: _Optional[bool] = ..., parallel_tool_calls: _Optional[bool] = ..., vision: _Optional[bool] = ..., json_mode: _Optional[bool] = ..., json_schema: _Optional[bool] = ..., reasoning: _Optional[bool] = ..., streaming: _Optional[bool] = ..., prompt_caching: _Optional[bool] = ...) -> None: ...

class TaskScore(_message.Message):
    __slots__ = ("task_type", "score")
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    task_type: TaskType
    score: int
    def __init__(self, task_type: _Optional[_Union[TaskType, str]] = ..., score: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "requested_name", "provider_model_id", "provider", "vendor", "tokenizer", "count_exactness", "context_window_tokens", "max_output_tokens", "default_output_tokens", "price", "capabilities", "tier", "degrade_to", "task_scores", "typical_time_to_first_token_ms", "typical_output_tokens_per_second", "base_model", "fine_tuned", "deprecated", "sunset_at", "replacement_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    COUNT_EXACTNESS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    DEGRADE_TO_FIELD_NUMBER: _ClassVar[int]
    TASK_SCORES_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_OUTPUT_TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNED_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    SUNSET_AT_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    requested_name: str
    provider_model_id: str
    provider: Provider
    vendor: str
    tokenizer: str
    count_exactness: Exactness
    context_window_tokens: int
    max_output_tokens: int
    default_output_tokens: int
    price: ModelPrice
    capabilities: ModelCapabilities
    tier: ModelTier
    degrade_to: str
    task_scores: _containers.RepeatedCompositeFieldContainer[TaskScore]
    typical_time_to_first_token_ms: int
    typical_output_tokens_per_second: int
    base_model: str
    fine_tuned: bool
    deprecated: bool
    sunset_at: _timestamp_pb2.Timestamp
    replacement_model: str
    def __init__(self, name: _Optional[str] = ..., requested_name: _Optional[str] = ..., provider_model_id: _Optional[str] = ..., provider: _Optional[_Union[Provider, str]] = ..., vendor: _Optional[str] = ..., tokenizer: _Optional[str] = ..., count_exactness: _Optional[_Union[Exactness, str]] = ..., context_window_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., default_output_tokens: _Optional[int] = ..., price: _Optional[_Union[ModelPrice, _Mapping]] = ..., capabilities: _Optional[_Union[ModelCapabilities, _Mapping]] = ..., tier: _Optional[_Union[ModelTier, str]] = ..., degrade_to: _Optional[str] = ..., task_scores: _Optional[_Iterable[_Union[TaskScore, _Mapping]]] = ..., typical_time_to_first_token_ms: _Optional[int] = ..., typical_output_tokens_per_second: _Optional[int] = ..., base_model: _Optional[str] = ..., fine_tuned: _Optional[bool] = ..., deprecated: _Optional[bool] = ..., sunset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replacement_model: _Optional[str] = ...) -> None: ...

class LimitState(_message.Message):
    __slots__ = ("limit_id", "scope", "metric", "period", "used", "reserved", "limit", "remaining", "utilization_bp", "level", "action", "period_start", "reset_at", "enforcement", "triggered")
    LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_BP_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    limit_id: str
    scope: Scope
    metric: LimitMetric
    period: LimitPeriod
    used: int
    reserved: int
    limit: int
    remaining: int
    utilization_bp: int
    level: BudgetLevel
    action: LimitAction
    period_start: _timestamp_pb2.Timestamp
    reset_at: _timestamp_pb2.Timestamp
    enforcement: BudgetEnforcement
    triggered: bool
    def __init__(self, limit_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., metric: _Optional[_Union[LimitMetric, str]] = ..., period: _Optional[_Union[LimitPeriod, str]] = ..., used: _Optional[int] = ..., reserved: _Optional[int] = ..., limit: _Optional[int] = ..., remaining: _Optional[int] = ..., utilization_bp: _Optional[int] = ..., level: _Optional[_Union[BudgetLevel, str]] = ..., action: _Optional[_Union[LimitAction, str]] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enforcement: _Optional[_Union[BudgetEnforcement, str]] = ..., triggered: _Optional[bool] = ...) -> None: ...

class CachePolicy(_message.Message):
    __slots__ = ("no_cache", "no_store", "force", "semantic", "ttl_seconds", "tags")
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    no_cache: bool
    no_store: bool
    force: bool
    semantic: bool
    ttl_seconds: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, no_cache: _Optional[bool] = ..., no_store: _Optional[bool] = ..., force: _Optional[bool] = ..., semantic: _Optional[bool] = ..., ttl_seconds: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class CompressionOptions(_message.Message):
    __slots__ = ("allow_whitespace_collapse", "allow_comment_removal", "allow_summarize", "summary_model")
    ALLOW_WHITESPACE_COLLAPSE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_COMMENT_REMOVAL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SUMMARIZE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_MODEL_FIELD_NUMBER: _ClassVar[int]
    allow_whitespace_collapse: bool
    allow_comment_removal: bool
    allow_summarize: bool
    summary_model: str
    def __init__(self, allow_whitespace_collapse: _Optional[bool] = ..., allow_comment_removal: _Optional[bool] = ..., allow_summarize: _Optional[bool] = ..., summary_model: _Optional[str] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("reason", "field", "limit", "actual", "remaining", "unit", "reset_at", "retry_after_ms", "limits", "budget_decision", "suggestions", "smallest_achievable_tokens", "request_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_DECISION_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    SMALLEST_ACHIEVABLE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    reason: ErrorReason
    field: str
    limit: int
    actual: int
    remaining: int
    unit: str
    reset_at: _timestamp_pb2.Timestamp
    retry_after_ms: int
    limits: _containers.RepeatedCompositeFieldContainer[LimitState]
    budget_decision: BudgetDecision
    suggestions: _containers.RepeatedScalarFieldContainer[str]
    smallest_achievable_tokens: int
    request_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, reason: _Optional[_Union[ErrorReason, str]] = ..., field: _Optional[str] = ..., limit: _Optional[int] = ..., actual: _Optional[int] = ..., remaining: _Optional[int] = ..., unit: _Optional[str] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_after_ms: _Optional[int] = ..., limits: _Optional[_Iterable[_Union[LimitState, _Mapping]]] = ..., budget_decision: _Optional[_Union[BudgetDecision, str]] = ..., suggestions: _Optional[_Iterable[str]] = ..., smallest_achievable_tokens: _Optional[int] = ..., request_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    detail: ErrorDetail
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., detail: _Optional[_Union[ErrorDetail, _Mapping]] = ...) -> None: ...
