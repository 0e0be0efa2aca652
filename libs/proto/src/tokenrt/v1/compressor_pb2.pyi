from tokenrt.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompressionActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_ACTION_KIND_UNSPECIFIED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_DROPPED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_MERGED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_SUMMARIZED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_DEDUPLICATED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_WHITESPACE_COLLAPSED: _ClassVar[CompressionActionKind]
    COMPRESSION_ACTION_KIND_COMMENTS_REMOVED: _ClassVar[CompressionActionKind]
COMPRESSION_ACTION_KIND_UNSPECIFIED: CompressionActionKind
COMPRESSION_ACTION_KIND_DROPPED: CompressionActionKind
COMPRESSION_ACTION_KIND_MERGED: CompressionActionKind
COMPRESSION_ACTION_KIND_SUMMARIZED: CompressionActionKind
COMPRESSION_ACTION_KIND_DEDUPLICATED: CompressionActionKind
COMPRESSION_ACTION_KIND_WHITESPACE_COLLAPSED: CompressionActionKind
COMPRESSION_ACTION_KIND_COMMENTS_REMOVED: CompressionActionKind

class CompressRequest(_message.Message):
    __slots__ = ("model", "messages", "tools", "target_tokens", "strategy", "session_id", "tenant", "options", "dry_run")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    target_tokens: int
    strategy: _common_pb2.CompressionStrategy
    session_id: str
    tenant: _common_pb2.Tenant
    options: _common_pb2.CompressionOptions
    dry_run: bool
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., target_tokens: _Optional[int] = ..., strategy: _Optional[_Union[_common_pb2.CompressionStrategy, str]] = ..., session_id: _Optional[str] = ..., tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.CompressionOptions, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class CompressionAction(_message.Message):
    __slots__ = ("kind", "input_indexes", "output_index", "tokens_before", "tokens_after", "note")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INPUT_INDEXES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKENS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_AFTER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    kind: CompressionActionKind
    input_indexes: _containers.RepeatedScalarFieldContainer[int]
    output_index: int
    tokens_before: int
    tokens_after: int
    note: str
    def __init__(self, kind: _Optional[_Union[CompressionActionKind, str]] = ..., input_indexes: _Optional[_Iterable[int]] = ..., output_index: _Optional[int] = ..., tokens_before: _Optional[int] = ..., tokens_after: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class CompressionReport(_message.Message):
    __slots__ = ("original_tokens", "compressed_tokens", "target_tokens", "saved_tokens", "ratio_bp", "strategy_requested", "strategy_used", "reason", "actions", "prefix_tokens_preserved", "prefix_messages_preserved", "saved_cost_nusd", "prefix_cache_saving_nusd", "unchanged_messages", "unchanged_tokens", "summary_usage", "summary_cost_nusd", "accuracy")
    ORIGINAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TARGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RATIO_BP_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_USED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_TOKENS_PRESERVED_FIELD_NUMBER: _ClassVar[int]
    PREFIX_MESSAGES_PRESERVED_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_CACHE_SAVING_NUSD_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_USAGE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    original_tokens: int
    compressed_tokens: int
    target_tokens: int
    saved_tokens: int
    ratio_bp: int
    strategy_requested: _common_pb2.CompressionStrategy
    strategy_used: _common_pb2.CompressionStrategy
    reason: str
    actions: _containers.RepeatedCompositeFieldContainer[CompressionAction]
    prefix_tokens_preserved: int
    prefix_messages_preserved: int
    saved_cost_nusd: int
    prefix_cache_saving_nusd: int
    unchanged_messages: int
    unchanged_tokens: int
    summary_usage: _common_pb2.Usage
    summary_cost_nusd: int
    accuracy: _common_pb2.CountAccuracy
    def __init__(self, original_tokens: _Optional[int] = ..., compressed_tokens: _Optional[int] = ..., target_tokens: _Optional[int] = ..., saved_tokens: _Optional[int] = ..., ratio_bp: _Optional[int] = ..., strategy_requested: _Optional[_Union[_common_pb2.CompressionStrategy, str]] = ..., strategy_used: _Optional[_Union[_common_pb2.CompressionStrategy, str]] = ..., reason: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[CompressionAction, _Mapping]]] = ..., prefix_tokens_preserved: _Optional[int] = ..., prefix_messages_preserved: _Optional[int] = ..., saved_cost_nusd: _Optional[int] = ..., prefix_cache_saving_nusd: _Optional[int] = ..., unchanged_messages: _Optional[int] = ..., unchanged_tokens: _Optional[int] = ..., summary_usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., summary_cost_nusd: _Optional[int] = ..., accuracy: _Optional[_Union[_common_pb2.CountAccuracy, _Mapping]] = ...) -> None: ...

class CompressResponse(_message.Message):
    __slots__ = ("messages", "report")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    report: CompressionReport
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., report: _Optional[_Union[CompressionReport, _Mapping]] = ...) -> None: ...
