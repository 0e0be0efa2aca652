"""The cache's Redis adapter: the only module that does I/O.

Layout, for a tenant namespace NS under the prefix P (all of a tenant's keys share the
hash tag `{NS}`, so each Lua script touches one slot):

    P:{NS}:e:<key>        hash   entry: r (CachedResponse bytes), tok, cost, at, exp (ms); TTL
    P:{NS}:idx            zset   key -> store sequence (entry count, oldest-first eviction)
    P:{NS}:exp            zset   key -> expiry (ms), to drop the indexes of expired entries
    P:{NS}:meta           hash   key -> {model, tags, bucket, bytes}, to undo every index
    P:{NS}:tag:<tag>      set    keys stored with the tag
    P:{NS}:model:<model>  set    keys of the model
    P:{NS}:sem:<bucket>   hash   key -> guard fingerprint + sketch (semantic candidates)
    P:{NS}:semz:<bucket>  zset   key -> store sequence (bounds the bucket)
    P:{NS}:stats          hash   hits, exact_hits, semantic_hits, misses, stores,
                                 skipped_stores, evictions, bytes, saved_tokens, saved_cost_nusd
    P:tenants             set    every namespace that has stats (for Stats and Invalidate)
    P:cfg:<org>[/<project>]      CacheTenantConfig bytes

Every call is bounded by the caller's asyncio timeout; `Unavailable` means Redis is not
connected yet.

A lookup reads only (one HMGET, plus the bucket's candidates in the same round trip for a
semantic lookup): its hit / miss counters are added up in memory and written by `flush`,
one round trip every few hundred milliseconds for every namespace (`Tally`). The reads,
the Lua scripts, the counters' flush and the tenant configs go over one connection of the
cache's own (`tokenrt_common.redis_pipelined.PipelinedConnection`: the commands of one
event-loop turn in one write, ~20 µs of CPU per command where redis-py costs ~100 µs);
only the admin calls' namespace registry read and SetTenantConfig use redis-py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from tokenrt_common.connect import Infra
from tokenrt_common.redis_pipelined import Command, PipelinedConnection, Scripts

SCRIPTS = ("semantic_hit", "store", "invalidate", "stats", "skip")
ENTRY_FIELDS = ("r", "tok", "cost", "at", "exp")
# Pending counters kept for namespaces while Redis is down, at most (then dropped).
MAX_PENDING_NAMESPACES = 100_000
INVALIDATE_BATCH = 500


class Unavailable(Exception):
    """Redis is not connected (yet)."""


@dataclass(frozen=True)
class Entry:
    key: str
    response: bytes
    saved_tokens: int
    saved_cost_nusd: int
    stored_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class Found:
    entry: Entry | None
    # Semantic candidates of the bucket (key -> packed value) when the exact key missed.
    candidates: dict[str, bytes]


@dataclass(frozen=True)
class NamespaceStats:
    counters: dict[str, int]
    entries: int


class Tally:
    """Lookup counters not yet written to Redis, per namespace."""

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, int]] = {}

    def add(self, ns: str, **counts: int) -> None:
        mine = self.pending.get(ns)
        if mine is None:
            if len(self.pending) >= MAX_PENDING_NAMESPACES:
                return
            mine = self.pending[ns] = {}
        for name, n in counts.items():
            mine[name] = mine.get(name, 0) + n

    def take(self) -> dict[str, dict[str, int]]:
        taken, self.pending = self.pending, {}
        return taken

    def give_back(self, taken: dict[str, dict[str, int]]) -> None:
        for ns, counts in taken.items():
            self.add(ns, **counts)


def _entry(key: str, v: list[Any]) -> Entry:
    return Entry(key, bytes(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]))


def _load_scripts() -> dict[str, str]:
    folder = resources.files("tokenrt_cache") / "lua"
    prelude = (folder / "prelude.lua").read_text()
    return {name: prelude + "\n" + (folder / f"{name}.lua").read_text() for name in SCRIPTS}


class CacheStore:
    def __init__(self, infra: Infra, prefix: str) -> None:
        self._infra = infra
        self._prefix = prefix
        self._registry = f"{prefix}:tenants"
        self.tally = Tally()
        # Reads and scripts: a lean connection of their own (redis_pipelined), not redis-py's.
        self._conn = PipelinedConnection(infra.settings.redis_url,
                                         infra.settings.dependency_timeout_seconds)
        self._scripts = Scripts(self._conn, _load_scripts())

    def _redis(self) -> aioredis.Redis:
        if self._infra.redis is None:
            raise Unavailable("redis is not connected yet")
        return self._infra.redis

    def _args(self, ns: str, *rest: Any) -> list[Any]:
        return [f"{self._prefix}:{{{ns}}}", self._registry, ns, *rest]

    async def _run(self, name: str, ns: str, *args: Any) -> Any:
        return await self._scripts.run(name, (f"{self._prefix}:{{{ns}}}:stats",),
                                       *self._args(ns, *args))

    # ---- entries -----------------------------------------------------------------

    def _key(self, ns: str, *parts: str) -> str:
        return ":".join((f"{self._prefix}:{{{ns}}}", *parts))

    async def lookup(self, ns: str, key: str, bucket: str) -> Found:
        """The entry of `key`, or (with a bucket) the bucket's semantic candidates, in one
        round trip on the read connection (shared with the lookups of the same loop
        turn). Reads only; the caller counts the outcome with `tally`."""
        read = ("HMGET", self._key(ns, "e", key), *ENTRY_FIELDS)
        if not bucket:
            (v,) = await self._conn.call(read)
            return Found(_entry(key, v) if v[0] is not None else None, {})
        v, flat = await self._conn.call(read, ("HGETALL", self._key(ns, "sem", bucket)))
        if v[0] is not None:
            return Found(_entry(key, v), {})
        return Found(None, {bytes(flat[i]).decode(): bytes(flat[i + 1])
                            for i in range(0, len(flat), 2)})

    async def close(self) -> None:
        await self._conn.close()

    async def flush(self) -> None:
        """Write the pending lookup counters (one round trip on the pipelined connection);
        on failure they stay pending."""
        taken = self.tally.take()
        if not taken:
            return
        commands: list[Command] = [("HINCRBY", self._key(ns, "stats"), name, n)
                                   for ns, counts in taken.items() for name, n in counts.items()]
        commands.append(("SADD", self._registry, *taken))
        try:
            await self._conn.call(*commands)
        except BaseException:
            self.tally.give_back(taken)
            raise

    async def semantic_hit(self, ns: str, keys: tuple[str, ...]) -> Entry | None:
        reply = await self._run("semantic_hit", ns, *keys)
        if not reply:
            return None
        return _entry(bytes(reply[0]).decode(), reply[1:])

    async def store(self, ns: str, key: str, response: bytes, *, saved_tokens: int,
                    cost_nusd: int, now_ms: int, ttl_ms: int, model: str, tags: list[str],
                    bucket: str, semantic_value: bytes, max_entries: int,
                    bucket_size: int) -> tuple[bool, int]:
        """Store one entry; returns (replaced an entry, entries evicted by the cap)."""
        meta = json.dumps({"m": model, "t": tags, "s": bucket, "b": len(response)},
                          ensure_ascii=False)
        replaced, evicted = await self._run(
            "store", ns, key, response, saved_tokens, cost_nusd, now_ms, ttl_ms, meta,
            semantic_value, max_entries, bucket_size)
        return bool(replaced), int(evicted)

    async def count_skip(self, ns: str) -> None:
        await self._run("skip", ns)

    async def invalidate(self, ns: str, kind: str, value: str, now_ms: int) -> int:
        removed = 0
        while True:
            n, seen = await self._run("invalidate", ns, kind, value, now_ms, INVALIDATE_BATCH)
            removed += int(n)
            if kind == "key" or int(seen) < INVALIDATE_BATCH:
                return removed

    async def stats(self, ns: str, now_ms: int) -> NamespaceStats:
        flat, entries = await self._run("stats", ns, now_ms)
        counters = {bytes(flat[i]).decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return NamespaceStats(counters, int(entries))

    async def namespaces(self) -> list[str]:
        members = await self._redis().smembers(self._registry)  # type: ignore[misc]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    # ---- tenant configs ----------------------------------------------------------

    def _cfg_key(self, scope: str) -> str:
        return f"{self._prefix}:cfg:{scope}"

    async def configs(self, org_scope: str, project_scope: str | None) -> list[bytes | None]:
        keys = [self._cfg_key(org_scope)]
        if project_scope is not None:
            keys.append(self._cfg_key(project_scope))
        (values,) = await self._conn.call(("MGET", *keys))
        return [bytes(v) if v is not None else None for v in values]

    async def set_config(self, scope: str, value: bytes) -> None:
        await self._redis().set(self._cfg_key(scope), value)
