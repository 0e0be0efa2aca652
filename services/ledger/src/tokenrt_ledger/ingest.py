"""The ledger's JetStream side: a durable pull consumer shared by every replica.

Two stages run concurrently so that Postgres and NATS work overlap: the fetcher pulls
batches (up to `ledger_batch_size` messages, or whatever arrived within
`ledger_batch_wait_ms`) and decodes them; `ledger_writers` writers each store one batch
at a time in one transaction (on their own connection) and ack its messages after the
commit. A message that cannot be decoded
is published to the dead-letter subject with the reason and acked, so it never blocks
the stream. A crash between commit and ack only causes a redelivery, which the unique
event id turns into a no-op.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from tokenrt.v1 import events_pb2
from tokenrt_common.settings import Settings
from tokenrt_ledger.core import Rejected, Row, decode
from tokenrt_ledger.pull import BatchPuller
from tokenrt_ledger.store import LedgerStore
from tokenrt_usage.stream import StreamSpec, ensure_streams
from tokenrt_usage.subjects import usage_filter

FETCH_IDLE_SECONDS = 1.0


@dataclass
class Batch:
    rows: list[Row]
    msgs: list[Msg]  # every message of the batch, acked after the commit
    started: float  # monotonic time of the fetch that began the batch
    # Wall time of that fetch's start when it left nothing waiting in the stream: every
    # event published before it is stored once this batch and every earlier one are.
    watermark: datetime | None
    committed: bool = False


class Ingestor:
    def __init__(self, nc: NATS, js: JetStreamContext, store: LedgerStore, settings: Settings,
                 log: structlog.stdlib.BoundLogger) -> None:
        self.nc = nc
        self.js = js
        self.store = store
        self.spec = StreamSpec.from_settings(settings)
        self.durable = settings.ledger_durable
        self.batch_size = settings.ledger_batch_size
        self.wait = settings.ledger_batch_wait_ms / 1000
        self.ack_wait = settings.ledger_ack_wait_seconds
        self.writers = settings.ledger_writers
        self.log = log
        # Wall-clock time up to which every published event is known to be stored.
        # Batches in fetch order: the watermark only moves past committed ones (with
        # several writers a later batch can commit before an earlier one).
        self._order: deque[Batch] = deque()
        self.watermark: datetime | None = None
        self.inserted = 0
        self.dead_lettered = 0

    async def run(self) -> None:
        await ensure_streams(self.js, self.spec)
        config = api.ConsumerConfig(
            durable_name=self.durable, ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=float(self.ack_wait), max_deliver=-1,
            max_ack_pending=self.batch_size * 8, deliver_policy=api.DeliverPolicy.ALL)
        config.filter_subject = usage_filter(self.spec.subject_prefix)
        try:
            await self.js.consumer_info(self.spec.name, self.durable)
        except NotFoundError:
            await self.js.add_consumer(self.spec.name, config)  # same config: idempotent
        puller = BatchPuller(self.nc, self.spec.name, self.durable, self.batch_size,
                             idle_seconds=FETCH_IDLE_SECONDS)
        await puller.start()
        self.log.info("ledger.consuming", stream=self.spec.name, durable=self.durable)
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=self.writers)
        writers = [asyncio.create_task(self._write_forever(queue), name=f"ledger-writer-{i}")
                   for i in range(self.writers)]
        try:
            while True:
                batch = await self._next_batch(puller)
                if batch is not None:
                    await queue.put(batch)
                for writer in writers:
                    if writer.done():
                        writer.result()  # re-raise the writer's failure
        finally:
            for writer in writers:
                writer.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
            await puller.stop()

    async def _next_batch(self, puller: BatchPuller) -> Batch | None:
        started = time.monotonic()
        wall = datetime.now(UTC)
        try:
            msgs = await puller.fetch(self.wait)
        except Exception as exc:  # NATS away or reconnecting: try again shortly
            self.log.warning("ledger.fetch_failed", error=type(exc).__name__,
                             detail=str(exc)[:200])
            await asyncio.sleep(FETCH_IDLE_SECONDS)
            return None
        if not msgs:  # nothing waiting: everything before `wall` is stored once in flight is
            if self._order and self._order[-1].committed:
                self._order[-1].watermark = wall  # one marker however long a batch is stuck
            else:
                self._order.append(Batch([], [], started, wall, committed=True))
            self._advance()
            return None
        rows, good = [], []
        for msg in msgs:
            try:
                rows.append(decode(msg.data, wall))
                good.append(msg)
            except Rejected as exc:
                await self._dead_letter(msg, str(exc))
        batch = Batch(rows, good, started, wall if puller.caught_up else None)
        self._order.append(batch)
        return batch

    def _advance(self) -> None:
        """Move the watermark past every committed batch that has no uncommitted one before
        it."""
        while self._order and self._order[0].committed:
            done = self._order.popleft()
            if done.watermark is not None:
                self.watermark = done.watermark

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        letter = events_pb2.DeadLetter(
            data=msg.data, subject=msg.subject, headers=dict(msg.headers or {}), reason=reason,
            stream_sequence=meta.sequence.stream, delivery_count=meta.num_delivered)
        letter.dead_lettered_at.CopyFrom(Timestamp())
        letter.dead_lettered_at.GetCurrentTime()
        # The stream sequence identifies the message: a re-dead-lettered redelivery is deduped.
        msg_id = f"dlq-{self.spec.name}-{meta.sequence.stream}"
        await self.js.publish(self.spec.dlq_subject, letter.SerializeToString(),
                              headers={"Nats-Msg-Id": msg_id})
        await msg.ack()
        self.dead_lettered += 1
        self.log.warning("ledger.dead_lettered", reason=reason, subject=msg.subject,
                         stream_sequence=meta.sequence.stream)

    async def _write_forever(self, queue: asyncio.Queue[Batch]) -> None:
        while True:
            batch = await queue.get()
            new = await self._store(batch)
            publish = self.nc.publish
            for msg in batch.msgs:  # an empty message to the reply subject acks (+ACK)
                await publish(msg.reply)
            self.inserted += new
            batch.committed = True
            self._advance()
            self.log.debug("ledger.batch", messages=len(batch.msgs), new=new,
                           ms=round((time.monotonic() - batch.started) * 1000, 1))

    async def _store(self, batch: Batch) -> int:
        """Store the batch, holding on to it while Postgres is away (however long)."""
        delay = 0.1
        while True:
            try:
                return await self.store.ingest(batch.rows)
            except asyncpg.DataError:
                return await self._store_one_by_one(batch)
            except Exception as exc:  # connection lost, server restarting: retry the batch
                self.log.warning("ledger.ingest_failed", error=type(exc).__name__,
                                 detail=str(exc)[:200], retry_in_s=delay)
                for msg in batch.msgs:  # ask JetStream to wait instead of redelivering
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _store_one_by_one(self, batch: Batch) -> int:
        """A row Postgres refuses poisons its batch: store the others, dead-letter it."""
        new, keep = 0, []
        for row, msg in zip(batch.rows, batch.msgs, strict=True):
            try:
                new += await self.store.ingest([row])
                keep.append(msg)
            except asyncpg.DataError as exc:
                await self._dead_letter(msg, f"store: {exc}")
        batch.msgs = keep
        return new
