"""Per-session state in Redis: the only module that does I/O.

    tokenrt:compressor:v1:s:<id>           JSON {"sent": [...], "seen": [...]} (digests); TTL
    tokenrt:compressor:v1:sum:<id>:<span>  a cached summary (JSON); TTL

<id> hashes the tenant and the session id, so sessions of different tenants never meet.
Every call is bounded by a timeout; `Unavailable` means Redis is not connected (yet) or
did not answer in time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import xxhash

from tokenrt.v1 import common_pb2
from tokenrt_common.connect import Infra
from tokenrt_compressor.core import Session
from tokenrt_compressor.summary import Summary

PREFIX = "tokenrt:compressor:v1"


class Unavailable(Exception):
    """Redis is not connected (yet) or timed out."""


def session_id(tenant: common_pb2.Tenant, session: str) -> str:
    raw = json.dumps([tenant.org_id, tenant.project_id, tenant.user_id, session])
    return xxhash.xxh3_128_hexdigest(raw.encode())


class SessionStore:
    def __init__(self, infra: Infra, ttl_seconds: int, timeout_seconds: float) -> None:
        self._infra = infra
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds

    def _redis(self):  # type: ignore[no-untyped-def]
        if self._infra.redis is None:
            raise Unavailable("Redis is not connected yet")
        return self._infra.redis

    async def _call(self, coro):  # type: ignore[no-untyped-def]
        try:
            return await asyncio.wait_for(coro, self._timeout)
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise Unavailable(f"Redis did not answer: {type(exc).__name__}") from None
        except Exception as exc:  # redis-py's ConnectionError/TimeoutError are not OSError
            if type(exc).__module__.startswith("redis"):
                raise Unavailable(f"Redis failed: {type(exc).__name__}: {exc}") from None
            raise

    async def load(self, sid: str) -> Session:
        raw = await self._call(self._redis().get(f"{PREFIX}:s:{sid}"))
        if not raw:
            return Session()
        data = json.loads(raw)
        return Session(tuple(data.get("sent", ())), frozenset(data.get("seen", ())))

    async def save(self, sid: str, sent: Sequence[str], seen: Sequence[str]) -> None:
        value = json.dumps({"sent": list(sent), "seen": list(seen)}, separators=(",", ":"))
        await self._call(self._redis().set(f"{PREFIX}:s:{sid}", value, ex=self._ttl))

    async def summary(self, sid: str, span: str) -> Summary | None:
        raw = await self._call(self._redis().get(f"{PREFIX}:sum:{sid}:{span}"))
        return Summary(**json.loads(raw)) if raw else None

    async def put_summary(self, sid: str, span: str, summary: Summary) -> None:
        value = json.dumps(summary.__dict__, separators=(",", ":"))
        await self._call(self._redis().set(f"{PREFIX}:sum:{sid}:{span}", value, ex=self._ttl))
