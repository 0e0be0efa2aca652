"""Fixtures: a real simulator process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tokenrt_testkit.stack import free_ports

os.environ.setdefault("TIKTOKEN_CACHE_DIR", "/work/shared/tiktoken")


def start_sim(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_router.sim.cli", "sim",
                             "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1):
                return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("simulator did not start: " + proc.stderr.read().decode()[-2000:]
                       if proc.stderr else "")


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    proc, base = start_sim()
    yield base
    proc.terminate()
    proc.wait(10)
