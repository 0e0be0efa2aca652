"""Connections to NATS JetStream, PostgreSQL and Redis, with retry, backoff and readiness.

A service names what it needs; `Infra.start()` connects to each in the background,
retrying with capped exponential backoff, so a service starts (NOT_SERVING) even while
a dependency is down and becomes ready when it answers. `Infra.check()` is the
readiness probe behind the gRPC health status.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import nats
import redis.asyncio as aioredis
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tokenrt_common.settings import Settings

T = TypeVar("T")

DEPENDENCIES = ("nats", "postgres", "redis")


async def retry(
    connect: Callable[[], Awaitable[T]],
    *,
    what: str,
    log: structlog.stdlib.BoundLogger,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """Call `connect` until it succeeds, sleeping with capped, jittered exponential backoff."""
    delay = first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect()
        except Exception as exc:  # any failure to connect is retried; cancellation is not
            log.warning("dependency.connect_failed", dependency=what, attempt=attempt,
                        error=type(exc).__name__, detail=str(exc)[:200], retry_in_s=round(delay, 2))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, max_delay)


@dataclass
class Infra:
    """The connections one service holds. Attributes are None until connected."""

    settings: Settings
    needs: frozenset[str]
    log: structlog.stdlib.BoundLogger
    nats: NATS | None = None
    js: JetStreamContext | None = None
    pg: asyncpg.Pool | None = None
    redis: aioredis.Redis | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _connected: dict[str, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = self.needs - set(DEPENDENCIES)
        if unknown:
            raise ValueError(f"unknown dependencies {sorted(unknown)}; known: {DEPENDENCIES}")
        self._connected = {name: asyncio.Event() for name in self.needs}

    async def wait_for(self, name: str) -> None:
        """Return once the connection to `name` exists (it may still drop later)."""
        await self._connected[name].wait()

    def start(self) -> None:
        """Begin connecting to every needed dependency in the background."""
        if "redis" in self.needs:
            # redis-py connects lazily and reconnects by itself; nothing to wait for. A
            # blocking pool makes calls past its size wait instead of failing (which would
            # read as "Redis down"); one retry on a fresh connection covers the pooled
            # connections a Redis restart left dead.
            t = self.settings.dependency_timeout_seconds
            pool = aioredis.BlockingConnectionPool.from_url(
                self.settings.redis_url, max_connections=self.settings.redis_max_connections,
                timeout=t, socket_timeout=t, socket_connect_timeout=t, health_check_interval=10,
                retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])
            self.redis = aioredis.Redis(connection_pool=pool)
            self._connected["redis"].set()
        if "nats" in self.needs:
            self._tasks.append(asyncio.create_task(self._connect_nats(), name="connect-nats"))
        if "postgres" in self.needs:
            self._tasks.append(asyncio.create_task(self._connect_postgres(), name="connect-pg"))

    async def _connect_nats(self) -> None:
        timeout = self.settings.dependency_timeout_seconds

        async def connect() -> NATS:
            return await nats.connect(
                self.settings.nats_url,
                connect_timeout=timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=self._nats_error,
                disconnected_cb=self._nats_disconnected,
                reconnected_cb=self._nats_reconnected,
            )

        self.nats = await retry(connect, what="nats", log=self.log)
        self.js = self.nats.jetstream(timeout=timeout)
        self._connected["nats"].set()
        self.log.info("dependency.connected", dependency="nats")

    async def _connect_postgres(self) -> None:
        timeout = self.settings.dependency_timeout_seconds

        async def connect() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                self.settings.postgres_dsn, min_size=1, max_size=10, timeout=timeout,
                command_timeout=30,
            )

        self.pg = await retry(connect, what="postgres", log=self.log)
        self._connected["postgres"].set()
        self.log.info("dependency.connected", dependency="postgres")

    async def _nats_error(self, exc: Exception) -> None:
        self.log.warning("nats.error", error=type(exc).__name__, detail=str(exc)[:200])

    async def _nats_disconnected(self) -> None:
        self.log.warning("nats.disconnected")

    async def _nats_reconnected(self) -> None:
        self.log.info("nats.reconnected")

    async def check(self) -> dict[str, bool]:
        """Ask every needed dependency to answer now, each within the dependency timeout."""
        names = sorted(self.needs)
        results = await asyncio.gather(*(self._ping(name) for name in names),
                                       return_exceptions=True)
        return {name: result is True for name, result in zip(names, results, strict=True)}

    async def _ping(self, name: str) -> bool:
        timeout = self.settings.dependency_timeout_seconds
        async with asyncio.timeout(timeout):
            if name == "redis":
                return self.redis is not None and bool(await self.redis.ping())
            if name == "nats":
                if self.nats is None or self.js is None or not self.nats.is_connected:
                    return False
                await self.js.account_info()  # proves JetStream, not just the core server
                return True
            if name == "postgres":
                if self.pg is None:
                    return False
                async with self.pg.acquire() as conn:
                    return await conn.fetchval("SELECT 1") == 1
        return False

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nats is not None and not self.nats.is_closed:
            await asyncio.wait_for(self.nats.drain(), self.settings.dependency_timeout_seconds)
        if self.pg is not None:
            await asyncio.wait_for(self.pg.close(), self.settings.dependency_timeout_seconds)
        if self.redis is not None:
            await self.redis.aclose()
