"""The cache's domain: tenant namespaces, the canonical request and its key, the policy.

Pure: no I/O. The key is a BLAKE2b-128 hash over the tenant namespace and a canonical
JSON form of the request that keeps every parameter that changes the answer and drops
what does not (map order, JSON whitespace, provider-assigned tool-call ids, defaults
spelled out or left implicit).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from google.protobuf import json_format

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache.replay import ChunkError, check_chunks

KEY_VERSION = "v1"
MAX_ID_CHARS = 256
MAX_TAG_CHARS = 256
MAX_TAGS = 32
_CONTROL = re.compile("[\x00-\x1f]")  # control characters, refused in ids
ROLES = frozenset(common_pb2.Role.values())
INCOMPLETE = frozenset({
    common_pb2.FINISH_REASON_UNSPECIFIED, common_pb2.FINISH_REASON_CONTENT_FILTER,
    common_pb2.FINISH_REASON_CANCELLED, common_pb2.FINISH_REASON_ERROR,
})


class RequestError(ValueError):
    """A request field is malformed; `field` names it, the message says what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# ---- tenants -----------------------------------------------------------------------

@dataclass(frozen=True)
class Tenant:
    org: str
    project: str = ""
    user: str = ""


def tenant_of(t: common_pb2.Tenant, *, need_project: bool, field: str = "tenant") -> Tenant:
    """Validate a protobuf tenant: org always, project when `need_project`."""
    for name, value in (("org_id", t.org_id), ("project_id", t.project_id),
                        ("user_id", t.user_id)):
        if len(value) > MAX_ID_CHARS:
            raise RequestError(f"{field}.{name}", f"{field}.{name} is longer than "
                               f"{MAX_ID_CHARS} characters")
        if _CONTROL.search(value):
            raise RequestError(f"{field}.{name}", f"{field}.{name} contains control characters")
    if not t.org_id:
        raise RequestError(f"{field}.org_id", f"{field}.org_id is required")
    if need_project and not t.project_id:
        raise RequestError(f"{field}.project_id", f"{field}.project_id is required")
    if t.user_id and not t.project_id:
        raise RequestError(f"{field}.project_id", f"{field}.user_id needs {field}.project_id")
    return Tenant(t.org_id, t.project_id, t.user_id)


def _q(part: str) -> str:
    return quote(part, safe="")


def namespace(t: Tenant, per_user: bool) -> str:
    """The tenant's namespace: `org/project`, or `org/project/~user` when per user.

    Ids are percent-encoded, so '/', '~', ':' and braces never come from an id and two
    different tenants never get the same namespace.
    """
    ns = f"{_q(t.org)}/{_q(t.project)}"
    return f"{ns}/~{_q(t.user)}" if per_user else ns


def scope_prefix(t: Tenant) -> str:
    """The namespaces under a tenant given by org [, project [, user]] start with this."""
    if not t.project:
        return f"{_q(t.org)}/"
    if not t.user:
        return f"{_q(t.org)}/{_q(t.project)}"
    return f"{_q(t.org)}/{_q(t.project)}/~{_q(t.user)}"


def under(ns: str, t: Tenant) -> bool:
    """Whether namespace `ns` lies in the scope of `t` (the org, project or user)."""
    prefix = scope_prefix(t)
    if not t.project:
        return ns.startswith(prefix)
    return ns == prefix or (not t.user and ns.startswith(prefix + "/~"))


def tenant_of_namespace(ns: str) -> Tenant:
    parts = ns.split("/")
    user = unquote(parts[2][1:]) if len(parts) > 2 else ""
    return Tenant(unquote(parts[0]), unquote(parts[1]), user)


# ---- canonical request and key ------------------------------------------------------

def _float(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise RequestError(field, f"{field} must be a finite number")
    return value + 0.0  # -0.0 and 0.0 are one value


def _json_text(text: str) -> list[str]:
    """JSON text with insignificant whitespace removed (key order kept: it can change
    the answer, e.g. the property order of structured outputs); other text verbatim."""
    if not text:
        return ["", ""]
    try:
        value = json.loads(text)
    except ValueError:
        return ["r", text]
    return ["j", json.dumps(value, ensure_ascii=False, separators=(",", ":"))]


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _image(i: int, j: int, img: common_pb2.ImagePart) -> list[Any]:
    field = f"request.messages[{i}].content[{j}].image"
    source = img.WhichOneof("source")
    if source is None:
        raise RequestError(field, f"{field} needs a url or data")
    if source == "data":
        if not img.media_type:
            raise RequestError(f"{field}.media_type", f"{field}.media_type is required with data")
        ref = "b:" + hashlib.blake2b(img.data, digest_size=16).hexdigest()
    else:
        ref = "u:" + img.url
    detail = img.detail or common_pb2.IMAGE_DETAIL_AUTO
    return ["i", ref, img.media_type, detail, _opt(img, "width_px"), _opt(img, "height_px")]


def _messages(messages: Any) -> list[Any]:
    ids: dict[str, str] = {}

    def call_id(raw: str) -> str:
        # Provider-assigned ids are random per call; only how they pair matters.
        if not raw:
            return ""
        return ids.setdefault(raw, f"#{len(ids)}")

    out: list[Any] = []
    for i, m in enumerate(messages):
        if m.role == common_pb2.ROLE_UNSPECIFIED or m.role not in ROLES:
            raise RequestError(f"request.messages[{i}].role",
                               f"request.messages[{i}].role must be set (system, user, ...)")
        parts: list[Any] = []
        for j, p in enumerate(m.content):
            kind = p.WhichOneof("part")
            if kind == "text":
                parts.append(["t", p.text])
            elif kind == "image":
                parts.append(_image(i, j, p.image))
            else:
                raise RequestError(f"request.messages[{i}].content[{j}]",
                                   f"request.messages[{i}].content[{j}] is empty")
        calls = [[call_id(c.id), c.name, _json_text(c.arguments_json)] for c in m.tool_calls]
        out.append([m.role, parts, m.name, calls, call_id(m.tool_call_id)])
    return out


def _sampling(s: common_pb2.SamplingParams, has_tools: bool) -> list[Any]:
    floats = {}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        floats[name] = _float(f"request.sampling.{name}", getattr(s, name)) \
            if s.HasField(name) else None
    rf = s.response_format
    fmt: list[Any] = [rf.type or common_pb2.RESPONSE_FORMAT_TYPE_TEXT]
    if rf.type == common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
        fmt += [rf.schema_name, _json_text(rf.json_schema), _opt(rf, "strict")]
    choice: list[Any] = []
    parallel = None
    if has_tools:
        mode = s.tool_choice.mode or common_pb2.TOOL_CHOICE_MODE_AUTO
        choice = [mode, s.tool_choice.tool_name if mode == common_pb2.TOOL_CHOICE_MODE_TOOL else ""]
        parallel = _opt(s, "parallel_tool_calls")
    options = json.dumps(json_format.MessageToDict(s.provider_options), sort_keys=True,
                         ensure_ascii=False, separators=(",", ":")) \
        if s.HasField("provider_options") else None
    return [
        floats["temperature"], floats["top_p"], _opt(s, "top_k"), _opt(s, "max_output_tokens"),
        sorted(set(s.stop_sequences)), _opt(s, "seed"), floats["presence_penalty"],
        floats["frequency_penalty"], fmt, choice, parallel, s.reasoning_effort,
        _opt(s, "reasoning_budget_tokens"), options,
    ]


def _frames(out: list[bytes], v: Any) -> None:
    """A self-delimiting binary encoding: every value says its type and length, so two
    different documents never encode to the same bytes."""
    kind = type(v)  # the two common kinds first, by exact type (isinstance chains cost)
    if kind is str:
        data = v.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif kind is list:
        out.append(b"[%d:" % len(v))
        for item in v:
            _frames(out, item)
    elif v is None:
        out.append(b"N")
    elif v is True:
        out.append(b"T")
    elif v is False:
        out.append(b"F")
    elif isinstance(v, int):
        out.append(b"i%d;" % v)
    elif isinstance(v, float):
        out.append(b"f" + v.hex().encode() + b";")
    elif isinstance(v, str):
        _frames(out, str(v))
    else:
        _frames(out, list(v))


def canonical(req: cache_pb2.CacheableRequest) -> bytes:
    """The canonical form of a request: equal exactly when the answers would be."""
    if not req.model.strip():
        raise RequestError("request.model", "request.model is required (the served model)")
    if not req.messages:
        raise RequestError("request.messages", "request.messages must hold at least one message")
    tools = [[t.name, t.description, _json_text(t.parameters_json_schema), _opt(t, "strict")]
             for t in req.tools]
    doc = [KEY_VERSION, req.model.strip(), _messages(req.messages), tools,
           _sampling(req.sampling, bool(req.tools))]
    out: list[bytes] = []
    _frames(out, doc)
    return b"".join(out)


def request_digest(req: cache_pb2.CacheableRequest) -> bytes:
    """SHA-256 of the canonical form (validates the request)."""
    return hashlib.sha256(canonical(req)).digest()


def key_of(ns: str, digest: bytes) -> str:
    """The exact key: SHA-256 (first 128 bits) over the namespace and the request's digest
    (SHA-256 of its canonical form).

    A cryptographic hash, so no one can craft a request that collides with another's.
    """
    h = hashlib.sha256(b"tokenrt-cache\x00")
    h.update(ns.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(digest)
    return h.hexdigest()[:32]


class DigestMemo:
    """Request digests of recently seen requests, by the request's serialized bytes: a
    repeated request (every hit is one) skips the canonical form (~50 µs of CPU for 2k
    tokens). Equal bytes are an equal request that was valid before, so a memo hit is
    always the right digest. Bounded by entries and by the bytes it keeps."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def digest(self, req: cache_pb2.CacheableRequest) -> bytes:
        """`request_digest(req)`, from memory when these exact bytes were seen."""
        raw = req.SerializeToString()
        found = self._items.get(raw)
        if found is not None:
            self._items.move_to_end(raw)
            return found
        digest = request_digest(req)  # raises RequestError: nothing is kept
        if len(raw) <= self._max_bytes // 16:
            self._items[raw] = digest
            self._bytes += len(raw)
            while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
                old, _digest = self._items.popitem(last=False)
                self._bytes -= len(old)
        return digest


def valid_key(key: str) -> bool:
    return len(key) == 32 and all(c in "0123456789abcdef" for c in key)


# ---- tenant configuration -----------------------------------------------------------

@dataclass(frozen=True)
class Defaults:
    """Service-wide defaults (from settings) that a tenant's zero fields fall back to."""

    ttl_seconds: int
    max_ttl_seconds: int
    max_entries: int
    max_entry_bytes: int
    similarity_threshold: float
    # The embedding backend of tenants that name none, and its threshold (cosine) when it
    # is not the lexical one.
    backend: cache_pb2.EmbeddingBackend.ValueType = cache_pb2.EMBEDDING_BACKEND_LEXICAL
    embedding_threshold: float = 0.85


BACKEND_NAMES = {"lexical": cache_pb2.EMBEDDING_BACKEND_LEXICAL,
                 "local": cache_pb2.EMBEDDING_BACKEND_LOCAL_MODEL,
                 "provider": cache_pb2.EMBEDDING_BACKEND_PROVIDER}


@dataclass(frozen=True)
class TenantConfig:
    semantic_enabled: bool
    similarity_threshold: float
    ttl_seconds: int
    max_entries: int
    max_entry_bytes: int
    per_user: bool
    embedding_model: str = ""
    backend: cache_pb2.EmbeddingBackend.ValueType = cache_pb2.EMBEDDING_BACKEND_LEXICAL


def check_config(c: cache_pb2.CacheTenantConfig,
                 available: frozenset[int] = frozenset({cache_pb2.EMBEDDING_BACKEND_LEXICAL})
                 ) -> Tenant:
    """Validate a config to save; returns the org / project it applies to. `available`:
    the embedding backends this service can run."""
    if c.tenant.user_id:
        raise RequestError("config.tenant.user_id", "configs apply to an org or a project; "
                           "clear config.tenant.user_id")
    tenant = tenant_of(c.tenant, need_project=False, field="config.tenant")
    if not (0.0 <= c.similarity_threshold <= 1.0) or math.isnan(c.similarity_threshold):
        raise RequestError("config.similarity_threshold",
                           "config.similarity_threshold must be between 0 and 1 (0 = default)")
    for name in ("default_ttl_seconds", "max_entries", "max_entry_bytes"):
        if getattr(c, name) < 0:
            raise RequestError(f"config.{name}", f"config.{name} must be 0 (default) or more")
    if c.embedding_backend not in cache_pb2.EmbeddingBackend.values():
        raise RequestError("config.embedding_backend",
                           f"config.embedding_backend {c.embedding_backend} is not a backend")
    if c.embedding_backend and c.embedding_backend not in available:
        names = ", ".join(sorted(cache_pb2.EmbeddingBackend.Name(b) for b in available))
        raise RequestError("config.embedding_backend",
                           f"{cache_pb2.EmbeddingBackend.Name(c.embedding_backend)} is not "
                           f"available on this service (available: {names}); see "
                           "docs/caching.md for what each needs")
    if len(c.embedding_model) > MAX_ID_CHARS:
        raise RequestError("config.embedding_model",
                           f"config.embedding_model is longer than {MAX_ID_CHARS} characters")
    return tenant


def effective(c: cache_pb2.CacheTenantConfig | None, d: Defaults) -> TenantConfig:
    """A stored config (or none) with the service defaults filled in."""
    c = c or cache_pb2.CacheTenantConfig()
    backend = c.embedding_backend or d.backend
    default_threshold = (d.similarity_threshold if backend == cache_pb2.EMBEDDING_BACKEND_LEXICAL
                         else d.embedding_threshold)
    return TenantConfig(
        semantic_enabled=c.semantic_enabled,
        similarity_threshold=c.similarity_threshold or default_threshold,
        ttl_seconds=min(c.default_ttl_seconds or d.ttl_seconds, d.max_ttl_seconds),
        max_entries=c.max_entries or d.max_entries,
        max_entry_bytes=c.max_entry_bytes or d.max_entry_bytes,
        per_user=c.per_user,
        embedding_model=c.embedding_model,
        backend=backend,
    )


def config_pb(t: Tenant, c: TenantConfig) -> cache_pb2.CacheTenantConfig:
    return cache_pb2.CacheTenantConfig(
        tenant=common_pb2.Tenant(org_id=t.org, project_id=t.project),
        semantic_enabled=c.semantic_enabled, similarity_threshold=c.similarity_threshold,
        embedding_backend=c.backend, embedding_model=c.embedding_model,
        default_ttl_seconds=c.ttl_seconds,
        max_entries=c.max_entries, max_entry_bytes=c.max_entry_bytes, per_user=c.per_user)


# ---- policy -------------------------------------------------------------------------

def deterministic(s: common_pb2.SamplingParams) -> bool:
    return s.HasField("temperature") and s.temperature == 0.0


def lookup_gate(policy: common_pb2.CachePolicy,
                s: common_pb2.SamplingParams) -> cache_pb2.CacheMissReason.ValueType | None:
    """Why a request must not be looked up, or None when it may be."""
    if policy.no_cache:
        return cache_pb2.CACHE_MISS_REASON_BYPASSED
    if not (policy.force or deterministic(s)):
        return cache_pb2.CACHE_MISS_REASON_NOT_CACHEABLE
    return None


def check_policy(policy: common_pb2.CachePolicy, field: str = "policy") -> None:
    if policy.HasField("ttl_seconds") and policy.ttl_seconds <= 0:
        raise RequestError(f"{field}.ttl_seconds", f"{field}.ttl_seconds must be at least 1 "
                           "(leave it unset for the tenant's default)")
    if len(policy.tags) > MAX_TAGS:
        raise RequestError(f"{field}.tags", f"{field}.tags holds more than {MAX_TAGS} tags")
    for i, tag in enumerate(policy.tags):
        if not tag or len(tag) > MAX_TAG_CHARS:
            raise RequestError(f"{field}.tags[{i}]", f"{field}.tags[{i}] must have 1 to "
                               f"{MAX_TAG_CHARS} characters")


def ttl_of(policy: common_pb2.CachePolicy, c: TenantConfig, d: Defaults) -> int:
    """Entry lifetime in seconds: the request's, else the tenant's; capped."""
    ttl = policy.ttl_seconds if policy.HasField("ttl_seconds") else c.ttl_seconds
    return max(1, min(ttl, d.max_ttl_seconds))


def store_gate(policy: common_pb2.CachePolicy, s: common_pb2.SamplingParams | None,
               response: cache_pb2.CachedResponse, size: int,
               c: TenantConfig) -> cache_pb2.CacheSkipReason.ValueType | None:
    """Why an answer must not be stored, or None when it may be.

    `s` is None when the caller passed only a key: the lookup that made the key already
    passed the determinism gate, so only force / no_store / size / completeness apply.
    """
    if policy.no_store:
        return cache_pb2.CACHE_SKIP_REASON_NO_STORE
    if s is not None and not (policy.force or deterministic(s)):
        return cache_pb2.CACHE_SKIP_REASON_NOT_CACHEABLE
    if response.finish_reason in INCOMPLETE:
        return cache_pb2.CACHE_SKIP_REASON_INCOMPLETE
    if size > c.max_entry_bytes:
        return cache_pb2.CACHE_SKIP_REASON_TOO_LARGE
    return None


def saved_tokens(response: cache_pb2.CachedResponse) -> int:
    """Tokens a hit avoids: input + output of the original call's usage."""
    return max(0, response.usage.input_tokens) + max(0, response.usage.output_tokens)


def check_response(r: cache_pb2.CachedResponse, field: str = "response") -> None:
    if r.cost_nusd < 0:
        raise RequestError(f"{field}.cost_nusd", f"{field}.cost_nusd must be 0 or more")
    u = r.usage
    for name in ("input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                 "output_tokens", "reasoning_tokens"):
        if getattr(u, name) < 0:
            raise RequestError(f"{field}.usage.{name}", f"{field}.usage.{name} must be 0 or more")
    if r.message.role not in (common_pb2.ROLE_ASSISTANT, common_pb2.ROLE_UNSPECIFIED):
        raise RequestError(f"{field}.message.role", f"{field}.message.role must be assistant")
    try:
        check_chunks(r, field)
    except ChunkError as exc:
        raise RequestError(exc.field, str(exc)) from None


def hit_rate_bp(hits: int, misses: int) -> int:
    """hits / (hits + misses) in basis points, rounded half-even; 0 with no lookups."""
    total = hits + misses
    if total <= 0:
        return 0
    q, r = divmod(hits * 10_000, total)
    if 2 * r > total or (2 * r == total and q % 2 == 1):
        q += 1
    return q
