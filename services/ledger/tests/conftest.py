"""Real ledger processes on real NATS and Postgres, isolated per test by their own
stream, subject prefix, durable consumer and Postgres schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
from nats.aio.client import Client as NATS

from tokenrt.v1 import ledger_pb2, ledger_pb2_grpc
from tokenrt_cli.infra import create_database
from tokenrt_common.settings import Settings, load_settings
from tokenrt_testkit.stack import INFRA_DEFAULTS, stack_env, with_fresh_ports
from tokenrt_usage import Publisher, StreamSpec
from tokenrt_usage.testing import random_events

PG_DSN = os.environ.get("TOKENRT_POSTGRES_DSN", INFRA_DEFAULTS["TOKENRT_POSTGRES_DSN"])
NATS_URL = os.environ.get("TOKENRT_NATS_URL", INFRA_DEFAULTS["TOKENRT_NATS_URL"])


@dataclass
class LedgerEnv:
    """Settings for one test's ledger processes and the processes started with them."""

    env: dict[str, str]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    @property
    def spec(self) -> StreamSpec:
        return StreamSpec.from_settings(self.settings)

    @property
    def schema(self) -> str:
        return self.settings.ledger_schema

    def start(self, name: str = "ledger") -> subprocess.Popen[bytes]:
        """Start one ledger replica (each on its own ports)."""
        env = with_fresh_ports(self.env, "ledger")
        log = (self.tmp / f"{name}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "tokenrt_ledger"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        proc.address = env["TOKENRT_LEDGER_ADDR"]  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def publisher(self) -> Publisher:
        return Publisher(NATS_URL, self.spec, self.tmp / f"outbox-{uuid.uuid4().hex}.sqlite3")


async def wait_ready(address: str, timeout: float = 60) -> None:
    """Until the ledger answers queries (connected, migrated)."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        while True:
            try:
                await stub.QueryUsage(ledger_pb2.QueryUsageRequest(), timeout=2)
                return
            except grpc.aio.AioRpcError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"ledger at {address} not ready: {exc.details()}") from None
            await asyncio.sleep(0.1)


@pytest.fixture(scope="session")
async def pg_ready() -> None:
    await create_database(PG_DSN, timeout_seconds=5)  # as `tokenrt up` does


@pytest.fixture
async def pg(pg_ready: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    yield conn
    await conn.close()


@pytest.fixture
async def nc() -> AsyncIterator[NATS]:
    conn = await nats.connect(NATS_URL, connect_timeout=2)
    yield conn
    await conn.close()


async def ledger_env(tmp_path: Path) -> AsyncIterator[LedgerEnv]:
    """An isolated ledger set-up; kills its processes and drops its streams and schema."""
    tag = uuid.uuid4().hex[:10]
    env = stack_env(
        tmp_path, TOKENRT_POSTGRES_DSN=PG_DSN, TOKENRT_NATS_URL=NATS_URL,
        TOKENRT_USAGE_STREAM=f"TLEDGER_{tag}", TOKENRT_USAGE_SUBJECT_PREFIX=f"t{tag}.usage.v1",
        TOKENRT_USAGE_DLQ_SUBJECT=f"t{tag}.usage.dlq.v1", TOKENRT_LEDGER_DURABLE=f"ledger_{tag}",
        TOKENRT_LEDGER_SCHEMA=f"ledger_t{tag}", TOKENRT_USAGE_RETENTION_DAYS="1")
    le = LedgerEnv(env, tmp_path)
    yield le
    for proc in le.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    conn = await nats.connect(NATS_URL)
    js = conn.jetstream()
    for name in (le.spec.name, le.spec.dlq_stream):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    await conn.close()
    pgc = await asyncpg.connect(PG_DSN)
    await pgc.execute(f'DROP SCHEMA IF EXISTS "{le.schema}" CASCADE')
    await pgc.close()


@pytest.fixture
async def ledger(tmp_path: Path, pg_ready: None) -> AsyncIterator[LedgerEnv]:
    async for le in ledger_env(tmp_path):
        yield le


@pytest.fixture(scope="module")
async def module_ledger(tmp_path_factory: pytest.TempPathFactory,
                        pg_ready: None) -> AsyncIterator[LedgerEnv]:
    async for le in ledger_env(tmp_path_factory.mktemp("ledger")):
        yield le


END = datetime.now(UTC).replace(second=0, microsecond=0)
START = END - timedelta(days=3)
N = 1500
# The environment that reaches the loaded ledger (for the CLI tests).
loaded_env: dict[str, str] = {}


@pytest.fixture(scope="module")
async def loaded(module_ledger: LedgerEnv
                 ) -> AsyncIterator[tuple[ledger_pb2_grpc.LedgerServiceStub, list]]:
    ledger = module_ledger
    pg = await asyncpg.connect(PG_DSN)
    proc = ledger.start()
    await wait_ready(proc.address)
    events = random_events(N, seed=3, start=START, spread=timedelta(days=3) - timedelta(minutes=1))
    pub = ledger.publisher()
    await pub.start()
    assert await pub.wait_ready(within=10)
    await pub.publish_many(events)
    await pub.close()
    for _ in range(300):
        if await pg.fetchval(f'SELECT count(*) FROM "{ledger.schema}".usage_events') == N:
            break
        await asyncio.sleep(0.1)
    await pg.close()
    loaded_env.clear()
    loaded_env.update(ledger.env, TOKENRT_LEDGER_ADDR=proc.address)  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(proc.address) as channel:
        yield ledger_pb2_grpc.LedgerServiceStub(channel), events
