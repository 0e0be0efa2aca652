"""One service process at a time: readiness follows dependencies, SIGTERM drains,
bad configuration stops start-up with one clear line, a killed process shows UNREACHABLE."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt.v1 import counter_pb2
from tokenrt_common.server import LIVENESS
from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import PrivateValkey
from tokenrt_testkit.stack import Stack, free_ports, stack_env

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
COUNT_TEXT = "/tokenrt.v1.CounterService/CountText"


def start(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", f"tokenrt_{service}"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


async def health_of(address: str, service: str = "") -> int | None:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1)
            return reply.status
        except grpc.aio.AioRpcError:
            return None


async def wait_health(address: str, want: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = await health_of(address)
        if seen == want:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{address} health is {seen}, wanted {want}")


def count_text(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(COUNT_TEXT,
                               request_serializer=counter_pb2.CountTextRequest.SerializeToString,
                               response_deserializer=counter_pb2.CountTextResponse.FromString)


async def test_sigterm_lets_in_flight_calls_finish(tmp_path: Path, processes: list) -> None:
    env = stack_env(tmp_path, TOKENRT_FAULT_DELAY_MS="1500", TOKENRT_SHUTDOWN_GRACE_SECONDS="10")
    address = load_settings(env).endpoint("counter").address
    proc = start("counter", env, tmp_path / "counter.log")
    processes.append(proc)
    await wait_health(address, SERVING)
    request = counter_pb2.CountTextRequest(model="gpt-4o", text="hello world")

    async with grpc.aio.insecure_channel(address) as channel:
        began = time.monotonic()
        in_flight = asyncio.ensure_future(count_text(channel)(request, timeout=20))
        await asyncio.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as late:  # no new calls once draining
            await count_text(channel)(request, timeout=5)
        assert late.value.code() == grpc.StatusCode.UNAVAILABLE
        reply = await in_flight
    # The in-flight call got the service's real answer, not a cancellation.
    assert reply.tokens == 2 and reply.tokenizer == "o200k_base"
    assert time.monotonic() - began >= 1.5
    assert proc.wait(15) == 0
    log = (tmp_path / "counter.log").read_text()
    assert '"service.draining"' in log and '"service.stopped"' in log


async def test_serving_follows_the_dependency(tmp_path: Path, processes: list) -> None:
    """Redis down: NOT_SERVING but answering; Redis up on that port: SERVING."""
    (redis_port,) = free_ports(1)
    env = stack_env(tmp_path, TOKENRT_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                    TOKENRT_DEPENDENCY_TIMEOUT_SECONDS="0.5")
    address = load_settings(env).endpoint("counter").address
    processes.append(start("counter", env, tmp_path / "counter.log"))
    await wait_health(address, NOT_SERVING)
    await asyncio.sleep(1.5)
    assert await health_of(address) == NOT_SERVING
    # Alive all the same: a liveness probe must not restart it for a dependency's outage.
    assert await health_of(address, LIVENESS) == SERVING

    valkey = PrivateValkey(redis_port)
    valkey.start(tmp_path)
    try:
        await wait_health(address, SERVING, timeout=30)
    finally:
        valkey.stop()


@pytest.mark.parametrize("which", ["ADDR", "METRICS_PORT"])
def test_port_in_use_stops_startup_with_one_line(tmp_path: Path, which: str) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    value = f"127.0.0.1:{port}" if which == "ADDR" else str(port)
    env = stack_env(tmp_path, **{f"TOKENRT_COUNTER_{which}": value})
    try:
        result = subprocess.run([sys.executable, "-m", "tokenrt_counter"], env=env,
                                capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenrt-counter: cannot ")
    assert str(port) in lines[0] and f"TOKENRT_COUNTER_{which}" in lines[0]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"TOKENRT_BOGUS": "1"}, "tokenrt-counter: TOKENRT_BOGUS: unknown setting"),
        ({"TOKENRT_REDIS_URL": "redis//nowhere"}, "tokenrt-counter: TOKENRT_REDIS_URL: 'redis//nowhere'"),
    ],
)
def test_bad_configuration_stops_startup_with_one_line(
    tmp_path: Path, setting: dict[str, str], expected: str
) -> None:
    for command in ([sys.executable, "-m", "tokenrt_counter"],
                    [str(Path(sys.executable).parent / "tokenrt"), "serve", "counter"]):
        result = subprocess.run(command, env=stack_env(tmp_path, **setting),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, command
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert expected in result.stderr


def test_killed_service_shows_unreachable(tmp_path: Path) -> None:
    own = Stack(stack_env(tmp_path / "state"))
    own.up()
    try:
        pid = own.status()["services"]["ledger"]["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = own.status()
            if status["services"]["ledger"]["health"] == "UNREACHABLE":
                break
            time.sleep(0.2)
        assert status["services"]["ledger"]["health"] == "UNREACHABLE"
        others = {n: s["health"] for n, s in status["services"].items() if n != "ledger"}
        assert set(others.values()) == {"SERVING"}, others
    finally:
        own.down()
