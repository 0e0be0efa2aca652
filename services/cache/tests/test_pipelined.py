"""The pipelined Redis connection (tokenrt_common.redis_pipelined) on real Redis / Valkey: replies reach
the right callers when many are pipelined, an error reply fails only its call, the URL's
password and database are used, a lost or hung server fails the waiting calls within
the timeout, and commands work again once it is back; the store's Lua scripts run over
it and are loaded again when Redis forgot them.

Stopping and hanging run on a private Valkey; the rest on the machine's Redis in the
cache tests' database, under a key prefix of their own.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog
from cache_procs import REDIS_URL
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tokenrt_cache.store import CacheStore
from tokenrt_common.connect import Infra
from tokenrt_common.redis_pipelined import PipelinedConnection
from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import PrivateValkey
from tokenrt_testkit.stack import stack_env


@pytest.fixture
def keys() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    prefix = f"test:cache:reads:{uuid.uuid4().hex[:8]}"
    yield client, prefix
    found = list(client.scan_iter(f"{prefix}:*"))
    if found:
        client.delete(*found)
    client.close()


async def test_pipelined_reads_answer_their_own_callers(keys: tuple[redis.Redis, str]) -> None:
    client, prefix = keys
    for i in range(200):
        client.hset(f"{prefix}:{i}", mapping={"r": f"value {i}".encode(), "n": i})
    client.set(f"{prefix}:string", "not a hash")
    reads = PipelinedConnection(REDIS_URL, timeout=5)
    try:
        calls = [reads.call(("HMGET", f"{prefix}:{i}", "r", "n")) for i in range(200)]
        wrong = reads.call(("HGETALL", f"{prefix}:string"))
        pair = reads.call(("HMGET", f"{prefix}:7", "r"), ("HGETALL", f"{prefix}:8"))
        missing = reads.call(("HMGET", f"{prefix}:none", "r"))
        replies = await asyncio.gather(*calls)
        assert replies == [[[f"value {i}".encode(), str(i).encode()]] for i in range(200)]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wrong
        assert await pair == [[b"value 7"], [b"r", b"value 8", b"n", b"8"]]
        assert await missing == [[None]]
        # The same connection goes on after the error reply.
        assert await reads.call(("HMGET", f"{prefix}:3", "n")) == [[b"3"]]
    finally:
        await reads.close()


async def test_url_password_and_database(valkey: PrivateValkey) -> None:
    admin = redis.Redis(port=valkey.port, socket_timeout=5)
    redis.Redis(port=valkey.port, db=3).hset("k", "r", b"in db 3")
    admin.hset("k", "r", b"in db 0")
    admin.config_set("requirepass", "s3cret")
    base = f"127.0.0.1:{valkey.port}"
    reads = PipelinedConnection(f"redis://:s3cret@{base}/3", timeout=5)
    refused = PipelinedConnection(f"redis://:wrong@{base}/3", timeout=5)
    try:
        assert await reads.call(("HMGET", "k", "r")) == [[b"in db 3"]]
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await refused.call(("HMGET", "k", "r"))
        # Reads queued during one failed connect all hear its error.
        both = [refused.call(("HMGET", "k", "r")) for _ in range(2)]
        for call in both:
            with pytest.raises(RedisConnectionError, match="WRONGPASS|invalid"):
                await call
    finally:
        await reads.close()
        await refused.close()


async def test_hung_then_down_then_back(valkey: PrivateValkey, tmp_path: Path) -> None:
    redis.Redis(port=valkey.port).hset("k", "r", b"v")
    reads = PipelinedConnection(valkey.url, timeout=0.5)
    try:
        assert await reads.call(("HMGET", "k", "r")) == [[b"v"]]
        assert valkey.process is not None
        valkey.process.send_signal(signal.SIGSTOP)  # connection open, no answers
        try:
            started = time.monotonic()
            with pytest.raises(RedisConnectionError, match="lost"):
                await asyncio.wait_for(reads.call(("HMGET", "k", "r")), 5)
            took = time.monotonic() - started
            assert 0.4 < took < 2.0, f"the hung read failed after {took:.2f} s"
        finally:
            valkey.process.send_signal(signal.SIGCONT)
        assert await asyncio.wait_for(reads.call(("HMGET", "k", "r")), 5) == [[b"v"]]

        valkey.stop()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(reads.call(("HMGET", "k", "r")), 5)
        valkey.start(tmp_path)
        redis.Redis(port=valkey.port).hset("k", "r", b"back")  # read at once, no back-off
        assert await asyncio.wait_for(reads.call(("HMGET", "k", "r")), 5) == [[b"back"]]
    finally:
        await reads.close()


async def test_rediss_speaks_tls(valkey: PrivateValkey) -> None:
    """A rediss:// URL makes the connection start TLS: this Valkey has no TLS, so the
    handshake never completes and the read fails, where the same server answers redis://.
    (No TLS-enabled server is available here to test a whole TLS session.)"""
    redis.Redis(port=valkey.port).hset("k", "r", b"v")
    plain = PipelinedConnection(f"redis://127.0.0.1:{valkey.port}/0", timeout=1)
    tls = PipelinedConnection(f"rediss://127.0.0.1:{valkey.port}/0?ssl_cert_reqs=none", timeout=1)
    try:
        assert await plain.call(("HMGET", "k", "r")) == [[b"v"]]
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await tls.call(("HMGET", "k", "r"))
    finally:
        await plain.close()
        await tls.close()


async def test_scripts_loaded_again_after_script_flush(valkey: PrivateValkey,
                                                      tmp_path: Path) -> None:
    settings = load_settings(stack_env(tmp_path, TOKENRT_REDIS_URL=valkey.url))
    infra = Infra(settings, frozenset({"redis"}), structlog.get_logger())
    infra.start()
    store = CacheStore(infra, "test:cache:scripts")
    key = "0123456789abcdef0123456789abcdef"

    async def put(body: bytes) -> tuple[bool, int]:
        return await store.store("o/p", key, body, saved_tokens=10, cost_nusd=7, now_ms=1,
                                 ttl_ms=60_000, model="m", tags=["t"], bucket="",
                                 semantic_value=b"", max_entries=10, bucket_size=4)

    admin = redis.Redis(port=valkey.port)
    try:
        assert await put(b"first") == (False, 0)
        admin.script_flush()  # as after a Redis restart: the scripts are gone
        assert await put(b"second") == (True, 0)  # NOSCRIPT -> loaded -> run
        found = await store.lookup("o/p", key, "")
        assert found.entry is not None and found.entry.response == b"second"
        stats = await store.stats("o/p", 2)
        assert stats.counters["stores"] == 2 and stats.entries == 1
        assert await store.invalidate("o/p", "tag", "t", 2) == 1
        assert (await store.lookup("o/p", key, "")).entry is None
    finally:
        await store.close()
        await infra.close()
