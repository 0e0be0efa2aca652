"""Helpers of the counter tests: a real counter process on real Redis."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import redis

from tokenrt_common.server import LIVENESS
from tokenrt_testkit.procs import ServiceProcess, start_service
from tokenrt_testkit.stack import stack_env

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).parent))  # counter_corpus (import mode is importlib)
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
# The counter tests keep their calibration keys in their own Redis database.
REDIS_URL = os.environ.get("TOKENRT_COUNTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def start_counter(tmp: Path, name: str = "counter", ready: bool = True,
                  **overrides: str) -> ServiceProcess:
    """Start a counter process and wait until it is ready (`ready=False`: only alive)."""
    env = stack_env(tmp, **{"TOKENRT_REDIS_URL": REDIS_URL, **overrides})
    return start_service("counter", env, tmp / f"{name}.log",
                         health="" if ready else LIVENESS)


def stop(proc: ServiceProcess) -> None:
    proc.stop()


def clear_calibration() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    keys = list(client.scan_iter("tokenrt:counter:calib:v1:*"))
    if keys:
        client.delete(*keys)
    client.close()
