"""Fixtures: a real simulator process on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from aiohttp import ClientSession

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_router.refusal import DETAIL_KEY
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


def detail_of(exc: grpc.aio.AioRpcError) -> common_pb2.ErrorDetail:
    """The ErrorDetail a refused call carries in its trailing metadata."""
    for k, v in exc.trailing_metadata() or ():
        if k == DETAIL_KEY:
            return common_pb2.ErrorDetail.FromString(v)
    raise AssertionError("no ErrorDetail in the trailing metadata")
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


# -- routers with a bootstrap admin key and the key store (test_keys.py, test_http.py) --

ADMIN_KEY = "trk_h2_bootstrap_admin_" + uuid.uuid4().hex
ADMIN_ORG = "h2-ops-" + uuid.uuid4().hex[:6]
# What a router key looks like (trk_ + 43 url-safe characters); no log line may hold one.
SECRET_PATTERN = r"trk_[A-Za-z0-9_-]{20,}"


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


class RouterProc:
    """One router process of ours: its gRPC stub, HTTP base URL and log."""

    def __init__(self, proc: subprocess.Popen[bytes], address: str, env: dict[str, str],
                 log: Path) -> None:
        self.proc = proc
        self.address = address
        self.env = env
        self.log = log
        self.http = "http://" + env["TOKENRT_ROUTER_HTTP_ADDR"]

    def stub(self, ch: grpc.aio.Channel) -> router_pb2_grpc.RouterServiceStub:
        return router_pb2_grpc.RouterServiceStub(ch)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def launch_router(stack, sim_url: str, state: Path, **overrides: str) -> RouterProc:  # type: ignore[no-untyped-def]
    keys_file = state / "keys.yaml"
    keys_file.write_text(json.dumps([{"key": ADMIN_KEY, "org": ADMIN_ORG, "project": "ops",
                                      "admin": True, "name": "bootstrap"}]))
    proc, address, env = start_router(
        stack.env, state, TOKENRT_ROUTER_KEYS_FILE=str(keys_file),
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_ROUTER_PROVIDER_RETRIES="0",
        TOKENRT_ROUTER_KEYS_CACHE_SECONDS="1", **overrides)
    r = RouterProc(proc, address, env, state / "router.log")
    asyncio.run(_wait_ready(r))
    return r


async def _wait_ready(r: RouterProc) -> None:
    """Until the key store has migrated and the HTTP endpoint answers."""
    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(r.address) as ch, ClientSession() as http:
        while True:
            try:
                await r.stub(ch).ListApiKeys(router_pb2.ListApiKeysRequest(org_id=ADMIN_ORG),
                                             metadata=auth(ADMIN_KEY), timeout=5)
                async with http.get(r.http + "/v1/models") as resp:
                    if resp.status == 401:
                        return
            except (grpc.aio.AioRpcError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("router keys not ready: " + r.log.read_text()[-2000:])
            await asyncio.sleep(0.3)


@pytest.fixture(scope="session")
def keys_router(stack, sim_url: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    r = launch_router(stack, sim_url, tmp_path_factory.mktemp("h2-router"))
    yield r
    r.stop()


async def create_key(r: RouterProc, org: str, project: str = "web", user: str = "",
                     admin: bool = False, by: str = ADMIN_KEY) -> router_pb2.CreateApiKeyResponse:
    async with grpc.aio.insecure_channel(r.address) as ch:
        resp = await r.stub(ch).CreateApiKey(router_pb2.CreateApiKeyRequest(
            tenant=common_pb2.Tenant(org_id=org, project_id=project, user_id=user), name="test",
            admin=admin), metadata=auth(by), timeout=10)
    return resp


async def list_models(r: RouterProc, key: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(r.address) as ch:
        try:
            await r.stub(ch).ListModels(router_pb2.ListModelsRequest(), metadata=auth(key),
                                        timeout=5)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()


def assert_no_secrets(log: Path) -> str:
    """No router key (nor the bootstrap admin key) in a router's log; returns the log."""
    text = log.read_text()
    found = re.findall(SECRET_PATTERN, text)
    assert not found and ADMIN_KEY not in text, f"a key is in {log}: {found[:1]}"
    return text
