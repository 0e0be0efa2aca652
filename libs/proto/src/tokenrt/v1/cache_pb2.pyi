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

class CacheMissReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_MISS_REASON_UNSPECIFIED: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_NOT_FOUND: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_BYPASSED: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_NOT_CACHEABLE: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_BELOW_THRESHOLD: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_GUARD_REJECTED: _ClassVar[CacheMissReason]
    CACHE_MISS_REASON_UNAVAILABLE: _ClassVar[CacheMissReason]

class CacheSkipReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_SKIP_REASON_UNSPECIFIED: _ClassVar[CacheSkipReason]
    CACHE_SKIP_REASON_NO_STORE: _ClassVar[CacheSkipReason]
    CACHE_SKIP_REASON_NOT_CACHEABLE: _ClassVar[CacheSkipReason]
    CACHE_SKIP_REASON_TOO_LARGE: _ClassVar[CacheSkipReason]
    CACHE_SKIP_REASON_INCOMPLETE: _ClassVar[CacheSkipReason]
    CACHE_SKIP_REASON_UNAVAILABLE: _ClassVar[CacheSkipReason]

class EmbeddingBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_BACKEND_UNSPECIFIED: _ClassVar[EmbeddingBackend]
    EMBEDDING_BACKEND_LOCAL_MODEL: _ClassVar[EmbeddingBackend]
    EMBEDDING_BACKEND_PROVIDER: _ClassVar[EmbeddingBackend]
    EMBEDDING_BACKEND_LEXICAL: _ClassVar[EmbeddingBackend]
CACHE_MISS_REASON_UNSPECIFIED: CacheMissReason
CACHE_MISS_REASON_NOT_FOUND: CacheMissReason
CACHE_MISS_REASON_BYPASSED: CacheMissReason
CACHE_MISS_REASON_NOT_CACHEABLE: CacheMissReason
CACHE_MISS_REASON_BELOW_THRESHOLD: CacheMissReason
CACHE_MISS_REASON_GUARD_REJECTED: CacheMissReason
CACHE_MISS_REASON_UNAVAILABLE: CacheMissReason
CACHE_SKIP_REASON_UNSPECIFIED: CacheSkipReason
CACHE_SKIP_REASON_NO_STORE: CacheSkipReason
CACHE_SKIP_REASON_NOT_CACHEABLE: CacheSkipReason
CACHE_SKIP_REASON_TOO_LARGE: CacheSkipReason
CACHE_SKIP_REASON_INCOMPLETE: CacheSkipReason
CACHE_SKIP_REASON_UNAVAILABLE: CacheSkipReason
EMBEDDING_BACKEND_UNSPECIFIED: EmbeddingBackend
EMBEDDING_BACKEND_LOCAL_MODEL: EmbeddingBackend
EMBEDDING_BACKEND_PROVIDER: EmbeddingBackend
EMBEDDING_BACKEND_LEXICAL: EmbeddingBackend

class CacheableRequest(_message.Message):
    __slots__ = ("model", "messages", "tools", "sampling")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tool]
    sampling: _common_pb2.SamplingParams
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.Tool, _Mapping]]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ...) -> None: ...

class CachedResponse(_message.Message):
    __slots__ = ("message", "finish_reason", "usage", "cost_nusd", "served_model", "provider", "origin_request_id", "chunks")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    SERVED_MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.Message
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    cost_nusd: int
    served_model: str
    provider: _common_pb2.Provider
    origin_request_id: str
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkBoundary]
    def __init__(self, message: _Optional[_Union[_common_pb2.Message, _Mapping]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_nusd: _Optional[int] = ..., served_model: _Optional[str] = ..., provider: _Optional[_Union[_common_pb2.Provider, str]] = ..., origin_request_id: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[ChunkBoundary, _Mapping]]] = ...) -> None: ...

class ChunkBoundary(_message.Message):
    __slots__ = ("text_end", "tool_calls")
    TEXT_END_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    text_end: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallPieceEnd]
    def __init__(self, text_end: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallPieceEnd, _Mapping]]] = ...) -> None: ...

class ToolCallPieceEnd(_message.Message):
    __slots__ = ("index", "arguments_end")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_END_FIELD_NUMBER: _ClassVar[int]
    index: int
    arguments_end: int
    def __init__(self, index: _Optional[int] = ..., arguments_end: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("tenant", "request", "policy")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    request: CacheableRequest
    policy: _common_pb2.CachePolicy
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., request: _Optional[_Union[CacheableRequest, _Mapping]] = ..., policy: _Optional[_Union[_common_pb2.CachePolicy, _Mapping]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("hit", "kind", "similarity", "response", "saved_tokens", "saved_cost_nusd", "key", "miss_reason", "stored_at", "expires_at")
    HIT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MISS_REASON_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    hit: bool
    kind: _common_pb2.CacheKind
    similarity: float
    response: CachedResponse
    saved_tokens: int
    saved_cost_nusd: int
    key: str
    miss_reason: CacheMissReason
    stored_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, hit: _Optional[bool] = ..., kind: _Optional[_Union[_common_pb2.CacheKind, str]] = ..., similarity: _Optional[float] = ..., response: _Optional[_Union[CachedResponse, _Mapping]] = ..., saved_tokens: _Optional[int] = ..., saved_cost_nusd: _Optional[int] = ..., key: _Optional[str] = ..., miss_reason: _Optional[_Union[CacheMissReason, str]] = ..., stored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("tenant", "key", "request", "policy", "response")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    key: str
    request: CacheableRequest
    policy: _common_pb2.CachePolicy
    response: CachedResponse
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., key: _Optional[str] = ..., request: _Optional[_Union[CacheableRequest, _Mapping]] = ..., policy: _Optional[_Union[_common_pb2.CachePolicy, _Mapping]] = ..., response: _Optional[_Union[CachedResponse, _Mapping]] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("stored", "skip_reason", "key", "expires_at")
    STORED_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    skip_reason: CacheSkipReason
    key: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, stored: _Optional[bool] = ..., skip_reason: _Optional[_Union[CacheSkipReason, str]] = ..., key: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LookupBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[LookupRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[LookupRequest, _Mapping]]] = ...) -> None: ...

class LookupResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: LookupResponse
    error: _common_pb2.ItemError
    def __init__(self, response: _Optional[_Union[LookupResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class LookupBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LookupResult]
    def __init__(self, results: _Optional[_Iterable[_Union[LookupResult, _Mapping]]] = ...) -> None: ...

class StoreBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[StoreRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[StoreRequest, _Mapping]]] = ...) -> None: ...

class StoreResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: StoreResponse
    error: _common_pb2.ItemError
    def __init__(self, response: _Optional[_Union[StoreResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class StoreBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StoreResult, _Mapping]]] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("tenant", "key", "tag", "model", "all")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    key: str
    tag: str
    model: str
    all: bool
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., key: _Optional[str] = ..., tag: _Optional[str] = ..., model: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed_entries",)
    REMOVED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    removed_entries: int
    def __init__(self, removed_entries: _Optional[int] = ...) -> None: ...

class TenantCacheStats(_message.Message):
    __slots__ = ("tenant", "hits", "exact_hits", "semantic_hits", "misses", "hit_rate_bp", "stores", "skipped_stores", "entries", "stored_bytes", "saved_tokens", "saved_cost_nusd")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_BP_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STORES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAVED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAVED_COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    hits: int
    exact_hits: int
    semantic_hits: int
    misses: int
    hit_rate_bp: int
    stores: int
    skipped_stores: int
    entries: int
    stored_bytes: int
    saved_tokens: int
    saved_cost_nusd: int
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., hits: _Optional[int] = ..., exact_hits: _Optional[int] = ..., semantic_hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_rate_bp: _Optional[int] = ..., stores: _Optional[int] = ..., skipped_stores: _Optional[int] = ..., entries: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., saved_tokens: _Optional[int] = ..., saved_cost_nusd: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("tenants", "total")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantCacheStats]
    total: TenantCacheStats
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantCacheStats, _Mapping]]] = ..., total: _Optional[_Union[TenantCacheStats, _Mapping]] = ...) -> None: ...

class CacheTenantConfig(_message.Message):
    __slots__ = ("tenant", "semantic_enabled", "similarity_threshold", "embedding_backend", "embedding_model", "default_ttl_seconds", "max_entries", "max_entry_bytes", "per_user")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_ENABLED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_BACKEND_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PER_USER_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    semantic_enabled: bool
    similarity_threshold: float
    embedding_backend: EmbeddingBackend
    embedding_model: str
    default_ttl_seconds: int
    max_entries: int
    max_entry_bytes: int
    per_user: bool
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ..., semantic_enabled: _Optional[bool] = ..., similarity_threshold: _Optional[float] = ..., embedding_backend: _Optional[_Union[EmbeddingBackend, str]] = ..., embedding_model: _Optional[str] = ..., default_ttl_seconds: _Optional[int] = ..., max_entries: _Optional[int] = ..., max_entry_bytes: _Optional[int] = ..., per_user: _Optional[bool] = ...) -> None: ...

class GetTenantConfigRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.Tenant
    def __init__(self, tenant: _Optional[_Union[_common_pb2.Tenant, _Mapping]] = ...) -> None: ...

class GetTenantConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: CacheTenantConfig
    def __init__(self, config: _Optional[_Union[CacheTenantConfig, _Mapping]] = ...) -> None: ...

class SetTenantConfigRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: CacheTenantConfig
    def __init__(self, config: _Optional[_Union[CacheTenantConfig, _Mapping]] = ...) -> None: ...

class SetTenantConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: CacheTenantConfig
    def __init__(self, config: _Optional[_Union[CacheTenantConfig, _Mapping]] = ...) -> None: ...
