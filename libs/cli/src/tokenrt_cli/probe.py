"""Ask NATS, Postgres and Redis whether they answer, each in its own protocol.

A probe never raises for a server that is down: it returns `Probe(answers=False)` with the
reason. Only what is printed here is masked (`mask_url`); passwords never reach a screen.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

INFRA: tuple[str, ...] = ("nats", "postgres", "redis")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {"nats": 4222, "postgres": 5432, "redis": 6379}
ENV_KEYS = {"nats": "TOKENRT_NATS_URL", "postgres": "TOKENRT_POSTGRES_DSN",
            "redis": "TOKENRT_REDIS_URL"}


@dataclass(frozen=True)
class Probe:
    """What one probe found. `answers` means the server spoke its protocol."""

    kind: str
    url: str  # masked
    answers: bool
    detail: str = ""
    # Postgres only: the server answered but the DSN's database does not exist.
    missing_database: bool = False


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***` (in the authority and in the query)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = parts.query
    if query:
        pairs = [(k, "***" if k.lower() in ("password", "pass", "token") else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def host_port(kind: str, url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[kind]


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


async def probe_nats(url: str, timeout_seconds: float) -> Probe:
    """Read the server's INFO line, the first thing a NATS server sends."""
    host, port = host_port("nats", url)
    masked = mask_url(url)
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return Probe("nats", masked, False, _reason(exc))
    if not line.startswith(b"INFO "):
        return Probe("nats", masked, False, "something answers there, but not a NATS server")
    try:
        info = json.loads(line[5:])
    except ValueError:
        return Probe("nats", masked, False, "malformed NATS INFO")
    detail = f"nats-server {info.get('version', '?')}"
    if not info.get("jetstream"):
        detail += ", JetStream not enabled"
    return Probe("nats", masked, True, detail)


async def probe_postgres(dsn: str, timeout_seconds: float) -> Probe:
    """Open a real connection; a missing database still counts as an answering server."""
    masked = mask_url(dsn)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_seconds)
    except asyncpg.InvalidCatalogNameError as exc:
        return Probe("postgres", masked, True, str(exc), missing_database=True)
    except asyncpg.PostgresError as exc:
        return Probe("postgres", masked, True, f"{type(exc).__name__}: {exc}")
    except (OSError, TimeoutError) as exc:
        return Probe("postgres", masked, False, _reason(exc))
    except asyncpg.InterfaceError as exc:  # a non-Postgres server confuses the client
        return Probe("postgres", masked, False, f"not a Postgres server ({exc})")
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close(timeout=timeout_seconds)
    return Probe("postgres", masked, True, f"PostgreSQL {version}")


async def probe_redis(url: str, timeout_seconds: float) -> Probe:
    """PING, the Redis way."""
    masked = mask_url(url)
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout_seconds,
                                     socket_timeout=timeout_seconds, retry_on_timeout=False)
    try:
        async with asyncio.timeout(timeout_seconds * 2):
            await client.ping()
    except redis.exceptions.AuthenticationError as exc:
        return Probe("redis", masked, True, f"authentication failed: {exc}")
    except redis.exceptions.ResponseError as exc:
        return Probe("redis", masked, True, f"error: {exc}")
    except (OSError, TimeoutError, redis.exceptions.RedisError) as exc:
        return Probe("redis", masked, False, _reason(exc))
    finally:
        await client.aclose()
    return Probe("redis", masked, True, "PONG")


async def probe(kind: str, url: str, timeout_seconds: float) -> Probe:
    probes = {"nats": probe_nats, "postgres": probe_postgres, "redis": probe_redis}
    return await probes[kind](url, timeout_seconds)


async def probe_all(urls: dict[str, str], timeout_seconds: float) -> dict[str, Probe]:
    """Probe every kind in `urls` at once."""
    results = await asyncio.gather(
        *(probe(kind, url, timeout_seconds) for kind, url in urls.items()))
    return {p.kind: p for p in results}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
