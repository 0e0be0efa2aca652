"""Cache processes for tests on the machine's Redis (own database and key prefix per
run), and a private Valkey that tests may stop."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis

from tokenrt.v1 import cache_pb2_grpc
from tokenrt_common.server import LIVENESS
from tokenrt_testkit.procs import ServiceProcess, start_service, stop_process
from tokenrt_testkit.stack import stack_env

REDIS_URL = os.environ.get("TOKENRT_CACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")


@dataclass
class Proc:
    """A cache process and the key prefix its entries live under."""

    service: ServiceProcess
    prefix: str

    @property
    def address(self) -> str:
        return self.service.address

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.service.process

    @property
    def log(self) -> Path:
        return self.service.log

    @property
    def env(self) -> dict[str, str]:
        return self.service.env

    def stub(self) -> cache_pb2_grpc.CacheServiceStub:
        return cache_pb2_grpc.CacheServiceStub(grpc.insecure_channel(self.address))


def start_cache(tmp: Path, *, redis_url: str = REDIS_URL, prefix: str | None = None,
                wait_serving: bool = True, **overrides: str) -> Proc:
    prefix = prefix or f"test:cache:{uuid.uuid4().hex[:8]}"
    env = stack_env(tmp, TOKENRT_REDIS_URL=redis_url, TOKENRT_CACHE_REDIS_PREFIX=prefix,
                    **overrides)
    # Without Redis the process serves (liveness) but is not ready.
    service = start_service("cache", env, tmp / f"cache-{uuid.uuid4().hex[:6]}.log",
                            health="" if wait_serving else LIVENESS)
    return Proc(service, prefix)


def stop(proc: Proc | subprocess.Popen[bytes]) -> None:
    stop_process(proc.process if isinstance(proc, Proc) else proc)


def clear_prefix(prefix: str, url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
