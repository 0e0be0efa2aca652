from tokenrt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelMatch(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_MATCH_UNSPECIFIED: _ClassVar[ModelMatch]
    MODEL_MATCH_EXACT: _ClassVar[ModelMatch]
    MODEL_MATCH_ALIAS: _ClassVar[ModelMatch]
    MODEL_MATCH_SNAPSHOT: _ClassVar[ModelMatch]
    MODEL_MATCH_FINE_TUNE: _ClassVar[ModelMatch]

class BillingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BILLING_MODE_UNSPECIFIED: _ClassVar[BillingMode]
    BILLING_MODE_STANDARD: _ClassVar[BillingMode]
    BILLING_MODE_BATCH: _ClassVar[BillingMode]
MODEL_MATCH_UNSPECIFIED: ModelMatch
MODEL_MATCH_EXACT: ModelMatch
MODEL_MATCH_ALIAS: ModelMatch
MODEL_MATCH_SNAPSHOT: ModelMatch
MODEL_MATCH_FINE_TUNE: ModelMatch
BILLING_MODE_UNSPECIFIED: BillingMode
BILLING_MODE_STANDARD: BillingMode
BILLING_MODE_BATCH: BillingMode

class ScriptFeatures(_message.Message):
    __slots__ = ("latin_chars", "cjk_chars", "code_chars", "digit_chars", "whitespace_chars", "other_chars", "message_count", "image_count")
    LATIN_CHARS_FIELD_NUMBER: _ClassVar[int]
    CJK_CHARS_FIELD_NUMBER: _ClassVar[int]
    CODE_CHARS_FIELD_NUMBER: _ClassVar[int]
    DIGIT_CHARS_FIELD_NUMBER: _ClassVar[int]
    WHITESPACE_CHARS_FIELD_NUMBER: _ClassVar[int]
    OTHER_CHARS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    latin_chars: int
    cjk_chars: int
    code_chars: int
    digit_chars: int
    whitespace_chars: int
    other_chars: int
    message_count: int
    image_count: int
    def __init__(self, latin_chars: _Optional[int] = ..., cjk_chars: _Optional[int] = ..., code_chars: _Optional[int] = ..., digit_chars: _Optional[int] = ..., whitespace_chars: _Optional[int] = ..., other_chars: _Optional[int] = ..., message_count: _Optional[int] = ..., image_count: _Optional[int] = ...) -> None: ...

class CountTextRequest(_message.Message):
    __slots__ = ("model", "text", "raw_utf8")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RAW_UTF8_FIELD_NUMBER: _ClassVar[int]
    model: str
    text: str
    raw_utf8: bytes
    def __init__(self, model: _Optional[str] = ..., text: _Optional[str] = ..., raw_utf8: _Optional[bytes] = ...) -> None: ...

class CountTextResponse(_message.Message):
    __slots__ = ("tokens", "accuracy", "model", "tokenizer")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    tokens: int
    accuracy: _common_pb2.CountAccuracy
    model: str
    tokenizer: str
    def __init__(self, tokens: _Optional[int] = ..., accuracy: _Optional[_Union[_common_pb2.CountAccuracy, _Mapping]] = ..., model: _Optional[str] = ..., tokenizer: _Optional[str] = ...) -> None: ...

class CountMessagesRequest(_message.Message):
    __slots__ = ("model", "messages", "tools", "sampling", "message_digests", "tool_digests")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    TOOL_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    sampling: _common_pb2.SamplingParams
    message_digests: _containers.RepeatedScalarFieldContainer[bytes]
    tool_digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., message_digests: _Optional[_Iterable[bytes]] = ..., tool_digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MessageTokens(_message.Message):
    __slots__ = ("index", "tokens", "image_tokens")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    index: int
    tokens: int
    image_tokens: int
    def __init__(self, index: _Optional[int] = ..., tokens: _Optional[int] = ..., image_tokens: _Optional[int] = ...) -> None: ...

class CountMessagesResponse(_message.Message):
    __slots__ = ("input_tokens", "messages", "tools_tokens", "overhead_tokens", "accuracy", "model", "tokenizer", "features", "unknown_messages", "unknown_tools")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_TOOLS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    messages: _containers.RepeatedCompositeFieldContainer[MessageTokens]
    tools_tokens: int
    overhead_tokens: int
    accuracy: _common_pb2.CountAccuracy
    model: str
    tokenizer: str
    features: ScriptFeatures
    unknown_messages: _containers.RepeatedScalarFieldContainer[int]
    unknown_tools: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, input_tokens: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[MessageTokens, _Mapping]]] = ..., tools_tokens: _Optional[int] = ..., overhead_tokens: _Optional[int] = ..., accuracy: _Optional[_Union[_common_pb2.CountAccuracy, _Mapping]] = ..., model: _Optional[str] = ..., tokenizer: _Optional[str] = ..., features: _Optional[_Union[ScriptFeatures, _Mapping]] = ..., unknown_messages: _Optional[_Iterable[int]] = ..., unknown_tools: _Optional[_Iterable[int]] = ...) -> None: ...

class CountBatchRequest(_message.Message):
    __slots__ = ("model", "texts")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class CountMessagesBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CountMessagesRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CountMessagesRequest, _Mapping]]] = ...) -> None: ...

class CountMessagesResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: CountMessagesResponse
    error: _common_pb2.ItemError
    def __init__(self, response: _Optional[_Union[CountMessagesResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class CountMessagesBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CountMessagesResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CountMessagesResult, _Mapping]]] = ...) -> None: ...

class CountBatchResponse(_message.Message):
    __slots__ = ("tokens", "total_tokens", "accuracy", "model", "tokenizer")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[int]
    total_tokens: int
    accuracy: _common_pb2.CountAccuracy
    model: str
    tokenizer: str
    def __init__(self, tokens: _Optional[_Iterable[int]] = ..., total_tokens: _Optional[int] = ..., accuracy: _Optional[_Union[_common_pb2.CountAccuracy, _Mapping]] = ..., model: _Optional[str] = ..., tokenizer: _Optional[str] = ...) -> None: ...

class ResolveModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ResolveModelResponse(_message.Message):
    __slots__ = ("model", "match")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelInfo
    match: ModelMatch
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., match: _Optional[_Union[ModelMatch, str]] = ...) -> None: ...

class ListCatalogRequest(_message.Message):
    __slots__ = ("provider", "name_contains", "include_deprecated", "page_size", "page_token")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    NAME_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    provider: _common_pb2.Provider
    name_contains: str
    include_deprecated: bool
    page_size: int
    page_token: str
    def __init__(self, provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., name_contains: _Optional[str] = ..., include_deprecated: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCatalogResponse(_message.Message):
    __slots__ = ("models", "next_page_token", "catalog_version")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    next_page_token: str
    catalog_version: str
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., catalog_version: _Optional[str] = ...) -> None: ...

class EstimateCostRequest(_message.Message):
    __slots__ = ("model", "usage", "billing_mode")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    BILLING_MODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    usage: _common_pb2.Usage
    billing_mode: BillingMode
    def __init__(self, model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., billing_mode: _Optional[_Union[BillingMode, str]] = ...) -> None: ...

class EstimateCostResponse(_message.Message):
    __slots__ = ("cost_nusd", "breakdown", "model", "price_version", "long_context_applied", "prices")
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRICE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LONG_CONTEXT_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    cost_nusd: int
    breakdown: _common_pb2.CostBreakdown
    model: str
    price_version: str
    long_context_applied: bool
    prices: _common_pb2.TokenPrices
    def __init__(self, cost_nusd: _Optional[int] = ..., breakdown: _Optional[_Union[_common_pb2.CostBreakdown, _Mapping]] = ..., model: _Optional[str] = ..., price_version: _Optional[str] = ..., long_context_applied: _Optional[bool] = ..., prices: _Optional[_Union[_common_pb2.TokenPrices, _Mapping]] = ...) -> None: ...

class CalibrationSample(_message.Message):
    __slots__ = ("model", "counted_input_tokens", "reported_input_tokens", "features", "request_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COUNTED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    counted_input_tokens: int
    reported_input_tokens: int
    features: ScriptFeatures
    request_id: str
    def __init__(self, model: _Optional[str] = ..., counted_input_tokens: _Optional[int] = ..., reported_input_tokens: _Optional[int] = ..., features: _Optional[_Union[ScriptFeatures, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CalibrateRequest(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[CalibrationSample]
    def __init__(self, samples: _Optional[_Iterable[_Union[CalibrationSample, _Mapping]]] = ...) -> None: ...

class CalibrationState(_message.Message):
    __slots__ = ("model", "samples", "error_bound_bp")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ERROR_BOUND_BP_FIELD_NUMBER: _ClassVar[int]
    model: str
    samples: int
    error_bound_bp: int
    def __init__(self, model: _Optional[str] = ..., samples: _Optional[int] = ..., error_bound_bp: _Optional[int] = ...) -> None: ...

class CalibrateResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "models")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    models: _containers.RepeatedCompositeFieldContainer[CalibrationState]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., models: _Optional[_Iterable[_Union[CalibrationState, _Mapping]]] = ...) -> None: ...
