"""API key → caller (tenant): the static bootstrap map, keys stored hashed in Postgres
(schema `router`), a short-lived per-replica cache, and a limit on failed attempts.

A key itself is never stored or logged: only its SHA-256 (keys are 256-bit random
values, so a fast hash is enough) and its first characters (`key_prefix`).

* Static keys come from `TOKENRT_ROUTER_KEYS_FILE` (entries with `key_sha256` or, for
  development, `key`) and `TOKENRT_ROUTER_KEYS` (`key=org/project[/user]`, or
  `key=org/project/[user]/service` for a service key). An `admin` entry of the file is the
  bootstrap admin: it acts across organizations.
* Stored keys are made by `CreateApiKey` (`tokenrt keys create`). An admin stored key
  manages the keys of its own organization only.
* A service key (`service`, made only by the bootstrap admin: `tokenrt keys create
  --service`; or `service: true` in the keys file) may act for any tenant: a request
  names it in the `tokenrt-act-for-*` headers and is then that tenant's request (its
  budgets, cache namespace and usage), the service key's id still naming who made it.
* What a replica read about a key (valid, revoked, unknown) is trusted for
  `TOKENRT_ROUTER_KEYS_CACHE_SECONDS`: a revocation takes effect on every replica within
  that. While Postgres cannot be reached, keys already cached stay usable; others are
  refused with UNAVAILABLE (not UNAUTHENTICATED: they may be valid).
* A peer address that presents more than `TOKENRT_ROUTER_AUTH_MAX_FAILURES` unknown or
  revoked keys within the window is refused for `TOKENRT_ROUTER_AUTH_BLOCK_SECONDS`
  (RESOURCE_EXHAUSTED / HTTP 429), whatever key it sends. A request with no key at all is
  refused but not counted: it guesses nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import asyncpg
import grpc
import structlog
import yaml

from tokenrt.v1 import common_pb2
from tokenrt_common import migrations
from tokenrt_common.settings import Settings
from tokenrt_router.refusal import Refusal

T = common_pb2
S = grpc.StatusCode
KEY_PREFIX = "trk_"
SHOWN_PREFIX_CHARS = 8
MAX_CACHED_KEYS = 10_000
MAX_TRACKED_PEERS = 100_000


class KeyConfigError(ValueError):
    """The key map is malformed; the message says where."""


@dataclass(frozen=True)
class Caller:
    api_key_id: str
    org_id: str
    project_id: str
    user_id: str = ""
    admin: bool = False
    name: str = ""
    # From configuration (the bootstrap path), not from the key store.
    bootstrap: bool = False
    # May act for any tenant (a service key, e.g. the compressor's).
    service: bool = False

    @property
    def global_admin(self) -> bool:
        """Only a bootstrap admin key acts across organizations."""
        return self.admin and self.bootstrap

    def may_manage(self, org_id: str) -> bool:
        return self.admin and (self.bootstrap or org_id == self.org_id)

    def act_for(self, org_id: str, project_id: str, user_id: str) -> Caller:
        """This service key acting for a tenant: the tenant's request in every respect
        (no admin rights, no further acting), made by this key (`api_key_id`)."""
        assert self.service, "only a service key acts for a tenant"
        return Caller(self.api_key_id, org_id, project_id, user_id, name=self.name)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(authorization: str) -> str:
    """The key of an `authorization` value `Bearer <key>` ("" when it is not one)."""
    scheme, _, key = authorization.strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyMap:
    """The static keys from configuration (the bootstrap and admin path)."""

    def __init__(self, by_hash: dict[str, Caller]) -> None:
        self._by_hash = by_hash

    def __len__(self) -> int:
        return len(self._by_hash)

    def get(self, digest: str) -> Caller | None:
        return self._by_hash.get(digest)

    def authenticate(self, authorization: str) -> Caller | None:
        """The caller for an `authorization` header value (`Bearer <key>`), or None."""
        key = bearer(authorization)
        return self._by_hash.get(key_hash(key)) if key else None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyMap:
        by_hash: dict[str, Caller] = {}
        if settings.router_keys_file:
            path = Path(settings.router_keys_file)
            try:
                rows = yaml.safe_load(path.read_text()) or []
            except (OSError, yaml.YAMLError) as exc:
                raise KeyConfigError(f"TOKENRT_ROUTER_KEYS_FILE {path}: {exc}") from None
            if isinstance(rows, dict):
                rows = rows.get("keys") or []
            for i, row in enumerate(rows):
                where = f"{path} entry {i}"
                if not isinstance(row, dict) or not row.get("org") or not row.get("project"):
                    raise KeyConfigError(f"{where}: needs org and project")
                digest = str(row.get("key_sha256") or "")
                if not digest and row.get("key"):
                    digest = key_hash(str(row["key"]))
                if len(digest) != 64:
                    raise KeyConfigError(f"{where}: needs key_sha256 (64 hex digits) or key")
                by_hash[digest.lower()] = _caller(
                    digest, str(row["org"]), str(row["project"]), str(row.get("user") or ""),
                    bool(row.get("admin")), str(row.get("name") or ""),
                    bool(row.get("service")))
        for pair in filter(None, (p.strip() for p in settings.router_keys.split(";"))):
            key, eq, tenant = pair.partition("=")
            parts = tenant.split("/")
            if (not eq or not key or len(parts) not in (2, 3, 4) or not all(parts[:2])
                    or (len(parts) == 4 and parts[3] != "service")):
                raise KeyConfigError("TOKENRT_ROUTER_KEYS: write key=org/project[/user], or "
                                     "key=org/project/[user]/service for a service key; "
                                     "pairs separated by ';'")
            digest = key_hash(key.strip())
            by_hash[digest] = _caller(digest, parts[0], parts[1],
                                      parts[2] if len(parts) >= 3 else "", False, "",
                                      service=len(parts) == 4)
        return cls(by_hash)


def _caller(digest: str, org: str, project: str, user: str, admin: bool, name: str,
            service: bool = False) -> Caller:
    return Caller("key_" + digest[:12], org, project, user, admin, name, bootstrap=True,
                  service=service)


# -- the key store (Postgres) -------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """A stored key's metadata (never its secret)."""

    api_key_id: str
    key_sha256: str
    key_prefix: str
    name: str
    org_id: str
    project_id: str
    user_id: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    service: bool = False

    def caller(self) -> Caller:
        return Caller(self.api_key_id, self.org_id, self.project_id, self.user_id, self.admin,
                      self.name, service=self.service)


_COLUMNS = ("api_key_id, key_sha256, key_prefix, name, org_id, project_id, user_id, admin, "
            "created_at, revoked_at, last_used_at, service")


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(**dict(row))


class KeyStore:
    """The router's keys in Postgres. `pool` returns the pool, or None while there is none."""

    def __init__(self, pool: Callable[[], asyncpg.Pool | None], schema: str,
                 log: structlog.stdlib.BoundLogger) -> None:
        self._pool = pool
        self._s = migrations.ident(schema)
        self._schema = schema
        self.log = log
        self.ready = False

    def _get_pool(self) -> asyncpg.Pool:
        pool = self._pool()
        if pool is None or not self.ready:
            raise KeyStoreUnavailable("the key store (Postgres) is not connected yet")
        return pool

    async def migrate(self, wait: Callable[[], Awaitable[None]]) -> None:
        """Wait for Postgres, then apply missing `migrations/NNNN_*.sql` once (replicas
        take turns on an advisory lock), retrying until it works."""
        await wait()
        while True:
            pool = self._pool()
            try:
                assert pool is not None
                async with pool.acquire() as conn:
                    await migrations.migrate(conn, "tokenrt_router", self._schema, self.log)
                self.ready = True
                return
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.log.warning("router.keys_migrate_failed", error=type(exc).__name__,
                                 detail=str(exc)[:200])
                await asyncio.sleep(1.0)

    async def _run(self, query: str, *args: object) -> list[asyncpg.Record]:
        try:
            async with self._get_pool().acquire() as conn:
                return list(await conn.fetch(query, *args))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise KeyStoreUnavailable(f"the key store (Postgres) failed: "
                                      f"{type(exc).__name__}") from None

    async def lookup(self, digest: str) -> Caller | None:
        """The active key with this hash (noting its use), or None."""
        rows = await self._run(
            f"UPDATE {self._s}.api_keys SET last_used_at = now() WHERE key_sha256 = $1 "
            f"AND revoked_at IS NULL RETURNING {_COLUMNS}", digest)
        return _record(rows[0]).caller() if rows else None

    async def create(self, org_id: str, project_id: str, user_id: str, name: str,
                     admin: bool, service: bool = False) -> tuple[KeyRecord, str]:
        secret = new_secret()
        rows = await self._run(
            f"INSERT INTO {self._s}.api_keys (api_key_id, key_sha256, key_prefix, name, org_id, "
            f"project_id, user_id, admin, service) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            f"RETURNING {_COLUMNS}",
            "key_" + secrets.token_hex(8), key_hash(secret), secret[:SHOWN_PREFIX_CHARS], name,
            org_id, project_id, user_id, admin, service)
        return _record(rows[0]), secret

    async def get(self, api_key_id: str) -> KeyRecord | None:
        rows = await self._run(f"SELECT {_COLUMNS} FROM {self._s}.api_keys "
                               "WHERE api_key_id = $1", api_key_id)
        return _record(rows[0]) if rows else None

    async def revoke(self, api_key_id: str) -> KeyRecord | None:
        """Revoke (once: a revoked key keeps its first revocation time)."""
        rows = await self._run(
            f"UPDATE {self._s}.api_keys SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE api_key_id = $1 RETURNING {_COLUMNS}", api_key_id)
        return _record(rows[0]) if rows else None

    async def list(self, org_id: str, project_id: str, include_revoked: bool, limit: int,
                   after: str) -> list[KeyRecord]:
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM {self._s}.api_keys WHERE ($1 = '' OR org_id = $1) "
            "AND ($2 = '' OR project_id = $2) AND ($3 OR revoked_at IS NULL) "
            "AND api_key_id > $4 ORDER BY api_key_id LIMIT $5",
            org_id, project_id, include_revoked, after, limit)
        return [_record(r) for r in rows]


class KeyStoreUnavailable(Exception):
    """Postgres could not answer; the message says so (never names a key)."""


# -- authentication: cache, failed-attempt limit ------------------------------------


class FailureGuard:
    """Per peer address: failures in a sliding window; too many → refused for a while."""

    def __init__(self, max_failures: int, window_s: float, block_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def blocked_for(self, peer: str) -> float:
        """Seconds this peer is still refused (0 when it is not)."""
        until = self._blocked.get(peer)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._blocked[peer]
            return 0.0
        return left

    def failed(self, peer: str) -> None:
        now = self._clock()
        q = self._failures.setdefault(peer, deque())
        q.append(now)
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.max_failures:
            self._blocked[peer] = now + self.block_s
            q.clear()
        if len(self._failures) > MAX_TRACKED_PEERS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        for peer in [p for p, q in self._failures.items()
                     if not q or q[-1] <= now - self.window_s]:
            del self._failures[peer]
        for peer in [p for p, until in self._blocked.items() if until <= now]:
            del self._blocked[peer]


class Keys:
    """Authenticates callers: static keys, then stored keys through a short-lived cache."""

    def __init__(self, static: KeyMap, store: KeyStore | None, settings: Settings,
                 log: structlog.stdlib.BoundLogger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.static = static
        self.store = store
        self.ttl = settings.router_keys_cache_seconds
        self.guard = FailureGuard(settings.router_auth_max_failures,
                                  settings.router_auth_failure_window_seconds,
                                  settings.router_auth_block_seconds, clock)
        self.log = log
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Caller | None]] = {}

    async def caller(self, authorization: str, peer: str) -> Caller:
        """The caller of a request, or a Refusal (UNAUTHENTICATED, RESOURCE_EXHAUSTED when
        the peer made too many failed attempts, UNAVAILABLE when the store is down)."""
        peer = peer_host(peer)
        wait = self.guard.blocked_for(peer)
        if wait:
            raise Refusal(S.RESOURCE_EXHAUSTED, T.ERROR_REASON_AUTH_RATE_LIMITED,
                          f"too many failed authentications from {peer}; retry in "
                          f"{int(wait) + 1} s", T.ErrorDetail(retry_after_ms=int(wait * 1000) + 1))
        key = bearer(authorization)
        if not key:
            raise Refusal(S.UNAUTHENTICATED, T.ERROR_REASON_API_KEY_INVALID,
                          "missing API key: send `authorization: Bearer <key>`"
                          if not authorization.strip() else
                          "malformed authorization: send `authorization: Bearer <key>`")
        digest = key_hash(key)
        found = self.static.get(digest) or await self._stored(digest)
        if found is None:
            self.guard.failed(peer)
            self.log.info("router.auth_failed", peer=peer)
            raise Refusal(S.UNAUTHENTICATED, T.ERROR_REASON_API_KEY_INVALID,
                          "unknown or revoked API key")
        return found

    async def _stored(self, digest: str) -> Caller | None:
        if self.store is None:
            return None
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Caller | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = fut
        try:
            try:
                found = await self.store.lookup(digest)
            except KeyStoreUnavailable as exc:
                if hit is not None and hit[1] is not None:  # a key known valid stays usable
                    self.log.warning("router.keys_stale", reason=str(exc))
                    fut.set_result(hit[1])
                    return hit[1]
                raise Refusal(S.UNAVAILABLE, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                              f"{exc}; retry shortly",
                              T.ErrorDetail(retry_after_ms=1000)) from None
            self._remember(digest, found)
            fut.set_result(found)
            return found
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters get it, nobody else must
            raise
        finally:
            self._inflight.pop(digest, None)

    def _remember(self, digest: str, caller: Caller | None) -> None:
        self._cache[digest] = (self._clock() + self.ttl, caller)
        self._cache.move_to_end(digest)
        while len(self._cache) > MAX_CACHED_KEYS:
            self._cache.popitem(last=False)

    def forget(self, digest: str) -> None:
        """Drop what this replica cached about a key (after revoking it here)."""
        self._cache.pop(digest, None)

    def store_or_refuse(self) -> KeyStore:
        if self.store is None:
            raise Refusal(S.FAILED_PRECONDITION, T.ERROR_REASON_DEPENDENCY_UNAVAILABLE,
                          "this router has no key store (Postgres) configured")
        return self.store


def peer_host(peer: str) -> str:
    """The address part of a peer: gRPC's `ipv4:1.2.3.4:5678` / `ipv6:[::1]:5678`, or an
    HTTP remote address as is."""
    kind, sep, rest = unquote(peer).partition(":")
    if not sep or kind not in ("ipv4", "ipv6"):
        return peer
    host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 or rest.startswith("[") else rest
    return host.strip("[]")


def keys_for(settings: Settings, static: KeyMap, pool: Callable[[], asyncpg.Pool | None],
             log: structlog.stdlib.BoundLogger) -> Keys:
    """The router's authenticator: the static map and the Postgres key store."""
    return Keys(static, KeyStore(pool, settings.router_schema, log), settings, log)
