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


ROUTER_KEY = "trk_test_router_key_1"
SIM_PROC: list[subprocess.Popen[bytes]] = []


def start_router(base_env: dict[str, str], state, **overrides: str):  # type: ignore[no-untyped-def]
    """A router process of our own on free ports; returns (process, address, env)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    env = dict(base_env)
    port, metrics, http = free_ports(3)
    env.update({
        "TOKENRT_ROUTER_ADDR": f"127.0.0.1:{port}",
        "TOKENRT_ROUTER_METRICS_PORT": str(metrics),
        "TOKENRT_ROUTER_HTTP_ADDR": f"127.0.0.1:{http}",
        "TOKENRT_USAGE_OUTBOX_PATH": str(state / "outbox.sqlite3"),
        "TIKTOKEN_CACHE_DIR": os.environ["TIKTOKEN_CACHE_DIR"],
    })
    env.update(overrides)
    log = open(state / "router.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tokenrt_router"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)

    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        while time.monotonic() < deadline:
            try:
                r = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service="liveness"), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        else:
            proc.kill()
            raise RuntimeError("router not serving: " + (state / "router.log").read_text()[-3000:])
    return proc, f"127.0.0.1:{port}", env


@pytest.fixture(scope="session")
def router_env(stack, sim_url: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A router process of our own (with a key map and the simulator as upstream) wired to
    the session stack's counter, budget, cache, compressor and ledger."""
    state = tmp_path_factory.mktemp("router")
    proc, address, env = start_router(
        stack.env, state, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-{os.getpid()}/proj",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_ROUTER_PROVIDER_RETRIES="1")
    yield {"address": address, "org": f"org-{os.getpid()}", "project": "proj",
           "env": env, "log": state / "router.log", "proc": proc}
    proc.terminate()
    proc.wait(20)
