"""Real budget processes on real Redis, Postgres and NATS, isolated per test by their own
Redis key prefix, Postgres schema and organization ids."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
import redis.asyncio as aioredis

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_cli.infra import create_database
from tokenrt_common.settings import load_settings
from tokenrt_testkit.procs import PrivateValkey
from tokenrt_testkit.stack import INFRA_DEFAULTS, free_ports, stack_env, with_fresh_ports
from tokenrt_usage import StreamSpec

PG_DSN = os.environ.get("TOKENRT_POSTGRES_DSN", INFRA_DEFAULTS["TOKENRT_POSTGRES_DSN"])
REDIS_URL = os.environ.get("TOKENRT_REDIS_URL", INFRA_DEFAULTS["TOKENRT_REDIS_URL"])
K = common_pb2


@dataclass
class BudgetEnv:
    """One test's budget set-up: settings shared by its replicas, and the processes."""

    env: dict[str, str]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.env["TOKENRT_BUDGET_REDIS_PREFIX"]

    @property
    def schema(self) -> str:
        return self.env["TOKENRT_BUDGET_SCHEMA"]

    def start(self, **overrides: str) -> subprocess.Popen[bytes]:
        """One replica on its own ports."""
        env = with_fresh_ports(self.env, "budget")
        env.update(overrides)
        log = (self.tmp / f"budget-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "tokenrt_budget"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        proc.address = env["TOKENRT_BUDGET_ADDR"]  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("budget-*.log")))


async def wait_ready(address: str, timeout: float = 60) -> None:
    """Until the service answers limit queries (Postgres connected, schema migrated)."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        while True:
            try:
                await stub.ListLimits(budget_pb2.ListLimitsRequest(page_size=1), timeout=2)
                return
            except grpc.aio.AioRpcError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"budget at {address} not ready: {exc.details()}") from None
            await asyncio.sleep(0.1)


async def budget_env(tmp: Path, **overrides: str) -> AsyncIterator[BudgetEnv]:
    tag = uuid.uuid4().hex[:10]
    settings = dict(TOKENRT_POSTGRES_DSN=PG_DSN, TOKENRT_REDIS_URL=REDIS_URL,
                    TOKENRT_BUDGET_REDIS_PREFIX=f"tbudget{tag}",
                    TOKENRT_BUDGET_SCHEMA=f"budget_t{tag}",
                    TOKENRT_BUDGET_ALERT_SUBJECT_PREFIX=f"t{tag}.budget.v1.alerts",
                    TOKENRT_BUDGET_REBUILD_SOURCE="none",
                    TOKENRT_BUDGET_SWEEP_INTERVAL_SECONDS="0.5")
    env = stack_env(tmp, **{**settings, **overrides})
    be = BudgetEnv(env, tmp)
    yield be
    for proc in be.procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    pg = await asyncpg.connect(PG_DSN)
    await pg.execute(f'DROP SCHEMA IF EXISTS "{be.schema}" CASCADE')
    await pg.close()
    url = env["TOKENRT_REDIS_URL"]
    r = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = [k async for k in r.scan_iter(match=f"{be.prefix}:*", count=1000)]
        if keys:
            await r.delete(*keys)
    except Exception:
        pass  # a private Redis that is already gone
    await r.aclose()


@pytest.fixture(scope="session")
async def pg_ready() -> None:
    await create_database(PG_DSN, timeout_seconds=5)  # as `tokenrt up` does


@pytest.fixture(scope="module")
async def module_budget(tmp_path_factory: pytest.TempPathFactory,
                        pg_ready: None) -> AsyncIterator[BudgetEnv]:
    async for be in budget_env(tmp_path_factory.mktemp("budget")):
        yield be


@pytest.fixture(scope="module")
async def stub(module_budget: BudgetEnv) -> AsyncIterator[budget_pb2_grpc.BudgetServiceStub]:
    proc = module_budget.start()
    await wait_ready(proc.address)  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(proc.address) as channel:  # type: ignore[attr-defined]
        yield budget_pb2_grpc.BudgetServiceStub(channel)


@pytest.fixture
async def budget(tmp_path: Path, pg_ready: None) -> AsyncIterator[BudgetEnv]:
    async for be in budget_env(tmp_path):
        yield be


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:12]}"


def scope(text: str) -> common_pb2.Scope:
    kind, _, ids = text.partition(":")
    parts = ids.split("/")
    kinds = {"org": (K.SCOPE_KIND_ORG, ["org_id"]),
             "project": (K.SCOPE_KIND_PROJECT, ["org_id", "project_id"]),
             "user": (K.SCOPE_KIND_USER, ["org_id", "project_id", "user_id"]),
             "session": (K.SCOPE_KIND_SESSION, ["org_id", "project_id", "session_id"]),
             "api_key": (K.SCOPE_KIND_API_KEY, ["org_id", "api_key_id"])}
    k, names = kinds[kind]
    return common_pb2.Scope(kind=k, **dict(zip(names, parts, strict=True)))


def chain(org: str, project: str = "web", user: str = "alice", session: str = "s1"
          ) -> common_pb2.ScopeChain:
    return common_pb2.ScopeChain(scopes=[
        scope(f"org:{org}"), scope(f"project:{org}/{project}"),
        scope(f"user:{org}/{project}/{user}"),
        common_pb2.Scope(kind=K.SCOPE_KIND_SESSION, org_id=org, project_id=project,
                         user_id=user, session_id=session)])


def limit(scope_text: str, amount: int, *, metric: int = K.LIMIT_METRIC_TOKENS,
          period: int = K.LIMIT_PERIOD_DAY, action: int = K.LIMIT_ACTION_DENY,
          **kw: object) -> budget_pb2.Limit:
    return budget_pb2.Limit(scope=scope(scope_text), metric=metric, period=period,  # type: ignore[arg-type]
                            limit=amount, action=action, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    return free_ports(1)[0]


# --- a private Valkey and a real ledger, for the Redis-restart tests ---

@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[PrivateValkey]:
    v = PrivateValkey(free_port())
    v.start(tmp_path)
    yield v
    v.kill()


@pytest.fixture
async def with_ledger(tmp_path: Path, valkey: PrivateValkey, pg_ready: None
                      ) -> AsyncIterator[tuple[BudgetEnv, str]]:
    tag = uuid.uuid4().hex[:10]
    async for be in budget_env(
            tmp_path, TOKENRT_REDIS_URL=valkey.url,
            TOKENRT_BUDGET_REBUILD_SOURCE="ledger", TOKENRT_DEPENDENCY_TIMEOUT_SECONDS="0.5",
            TOKENRT_USAGE_STREAM=f"TBUDGET_{tag}", TOKENRT_USAGE_SUBJECT_PREFIX=f"t{tag}.usage.v1",
            TOKENRT_USAGE_DLQ_SUBJECT=f"t{tag}.usage.dlq.v1", TOKENRT_LEDGER_DURABLE=f"ledger_{tag}",
            TOKENRT_LEDGER_SCHEMA=f"ledger_t{tag}", TOKENRT_USAGE_RETENTION_DAYS="1"):
        log = (tmp_path / "ledger.log").open("wb")
        ledger = subprocess.Popen([sys.executable, "-m", "tokenrt_ledger"], env=be.env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            # The budget's first reserve of an org rebuilds from the ledger: it must answer
            # first (a slow ledger start made that reserve fail closed under load).
            address = be.env["TOKENRT_LEDGER_ADDR"]
            for _ in range(600):
                if await ledger_sum(address, "warm-up") >= 0:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the ledger never answered SumUsage: "
                                     + (tmp_path / "ledger.log").read_text()[-2000:])
            yield be, address
        finally:
            ledger.kill()
            ledger.wait(10)
            spec = StreamSpec.from_settings(load_settings(be.env))
            nc = await nats.connect(be.env["TOKENRT_NATS_URL"])
            for name in (spec.name, spec.dlq_stream):
                try:
                    await nc.jetstream().delete_stream(name)
                except Exception:
                    pass
            await nc.close()
            pg = await asyncpg.connect(PG_DSN)
            await pg.execute(f'DROP SCHEMA IF EXISTS "ledger_t{tag}" CASCADE')
            await pg.close()


async def ledger_sum(address: str, org: str) -> int:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = ledger_pb2_grpc.LedgerServiceStub(ch)
        q = ledger_pb2.SumUsageQuery(scope=scope(f"org:{org}"))
        q.start_time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
        q.end_time.FromDatetime(datetime(2100, 1, 1, tzinfo=UTC))
        try:
            reply = await stub.SumUsage(ledger_pb2.SumUsageRequest(queries=[q]), timeout=2)
        except grpc.aio.AioRpcError:
            return -1
        return reply.results[0].tokens
