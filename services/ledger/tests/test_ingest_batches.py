"""The ingest path's parts on real Postgres and NATS: every rollup equals the raw events
after batches with duplicates across hours, days and months; a fetch fills a whole batch
while the stream has a backlog and still returns after `wait` when it has not; the
watermark never passes a batch that is not committed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import api

from tokenrt_common.settings import load_settings
from tokenrt_ledger.core import ROLLUP_MEASURES, decode, months_of
from tokenrt_ledger.ingest import Batch, Ingestor
from tokenrt_ledger.pull import BatchPuller
from tokenrt_ledger.store import LedgerStore
from tokenrt_usage import ensure_streams, usage_subject
from tokenrt_usage.testing import random_events

from .conftest import PG_DSN, LedgerEnv


def test_months_of_covers_every_month_between_the_first_and_last_row() -> None:
    rows = [("a", datetime(2026, 11, 30, 23, 59, tzinfo=UTC)),
            ("b", datetime(2027, 2, 1, tzinfo=UTC)), ("c", datetime(2026, 12, 5, tzinfo=UTC))]
    assert months_of(rows) == {datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                               datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)}
    assert months_of([]) == set()


async def test_rollups_equal_the_raw_events_after_batches_with_duplicates(
        ledger: LedgerEnv, pg: asyncpg.Connection) -> None:
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
    assert pool is not None
    try:
        store = LedgerStore(pool, ledger.schema, structlog.get_logger())
        await store.migrate()
        start = datetime(2026, 10, 31, 22, 30, tzinfo=UTC)  # crosses an hour, a day, a month
        events = random_events(3000, seed=11, start=start, spread=timedelta(hours=3))
        now = datetime.now(UTC)
        rows = [decode(e.SerializeToString(), now) for e in events]
        new = 0
        for i in range(0, len(rows), 700):  # overlapping batches: every event comes twice
            new += await store.ingest(rows[i:i + 1000] + rows[i:i + 50])
        assert new == len(rows)
        assert await store.ingest(rows[:500]) == 0  # a redelivery changes nothing
    finally:
        await pool.close()

    s = f'"{ledger.schema}"'
    measures = ", ".join(f"{e} AS {m}" for m, e in ROLLUP_MEASURES.items())
    sums = ", ".join(f"sum({m})::bigint AS {m}" for m in ROLLUP_MEASURES)
    for table, grain, session in (("rollup_minute", "minute", "session_id"),
                                  ("rollup_hour", "hour", "session_id"),
                                  ("rollup_day", "day", "session_id"),
                                  ("rollup_hour_user", "hour", "''"),
                                  ("rollup_day_user", "day", "''")):
        keys = f"org_id, project_id, user_id, {session}, model, provider"
        raw = await pg.fetch(
            f"SELECT date_trunc('{grain}', occurred_at, 'UTC') AS b, {keys}, {measures} "
            f"FROM {s}.usage_events GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7")
        rolled = await pg.fetch(
            f"SELECT bucket_start AS b, {keys}, {sums} FROM {s}.{table} "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7")
        assert [tuple(r) for r in rolled] == [tuple(r) for r in raw], table
    total = await pg.fetchrow(f"SELECT count(*), sum(cost_nusd) FROM {s}.usage_events")
    assert tuple(total) == (len(events), sum(e.cost_nusd for e in events))


async def _puller(ledger: LedgerEnv, nc: NATS, batch: int) -> BatchPuller:
    js = nc.jetstream()
    await ensure_streams(js, ledger.spec)
    config = api.ConsumerConfig(durable_name="pull_test", ack_policy=api.AckPolicy.EXPLICIT,
                                max_ack_pending=batch * 4)
    await js.add_consumer(ledger.spec.name, config)
    puller = BatchPuller(nc, ledger.spec.name, "pull_test", batch, idle_seconds=2.0)
    await puller.start()
    return puller


async def test_a_fetch_fills_the_batch_while_the_stream_has_a_backlog(
        ledger: LedgerEnv, nc: NATS) -> None:
    js = nc.jetstream()
    await ensure_streams(js, ledger.spec)
    subject = usage_subject(ledger.spec.subject_prefix, "acme", "web")
    for _ in range(3000):
        await js.publish(subject, b"x" * 200)
    puller = await _puller(ledger, nc, batch=2000)
    try:
        # 1 ms is far less than receiving 2,000 messages takes: only the backlog rule
        # (the stream still holds more) keeps the fetch filling up to the whole batch.
        first = await puller.fetch(0.001)
        assert len(first) == 2000
        rest = await puller.fetch(0.001)
        assert len(rest) == 1000  # what was left; the stream then has no backlog
        for msg in first + rest:
            await msg.ack()
        # Nothing waiting: the fetch gives up after its idle time, with nothing.
        began = time.monotonic()
        assert await puller.fetch(0.001) == []
        assert time.monotonic() - began < 4
    finally:
        await puller.stop()


def test_the_watermark_waits_for_every_earlier_batch() -> None:
    ingestor = Ingestor(None, None, None, load_settings({}),  # type: ignore[arg-type]
                        structlog.get_logger())
    t2, t3 = (datetime(2026, 11, 1, 0, i, tzinfo=UTC) for i in (2, 3))
    first, second = Batch([], [], 0.0, None), Batch([], [], 0.0, t2)
    ingestor._order.extend([first, second])
    second.committed = True  # the second writer finished first
    ingestor._advance()
    assert ingestor.watermark is None  # the first batch's events may predate t2
    first.committed = True
    ingestor._advance()
    assert ingestor.watermark == t2 and not ingestor._order
    third = Batch([], [], 0.0, t3)
    ingestor._order.append(third)
    ingestor._advance()
    assert ingestor.watermark == t2  # not before the third batch commits
