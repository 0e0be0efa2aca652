"""Helpers of the counter tests: a real counter process on real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt_common.settings import load_settings
from tokenrt_testkit.stack import stack_env

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).parent))  # counter_corpus (import mode is importlib)
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
# The counter tests keep their calibration keys in their own Redis database.
REDIS_URL = os.environ.get("TOKENRT_COUNTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


@dataclass
class Proc:
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]


def start_counter(tmp: Path, name: str = "counter", want: int = 1, **overrides: str) -> Proc:
    """Start a counter process and wait until its health is `want` (1 SERVING, 2 NOT)."""
    env = stack_env(tmp, **{"TOKENRT_REDIS_URL": REDIS_URL, **overrides})
    address = load_settings(env).endpoint("counter").address
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tokenrt_counter"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"counter exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == want:
                    return Proc(address, proc, log, env)
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"counter at {address} never became SERVING:\n{log.read_text()[-3000:]}")


def stop(proc: Proc) -> None:
    if proc.process.poll() is None:
        proc.process.terminate()
        try:
            proc.process.wait(15)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait(5)


def clear_calibration() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    keys = list(client.scan_iter("tokenrt:counter:calib:v1:*"))
    if keys:
        client.delete(*keys)
    client.close()
