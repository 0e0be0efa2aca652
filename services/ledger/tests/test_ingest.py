"""Exactly-once ingestion with real ledger processes: duplicates, a SIGKILL mid-batch and
a restart while two replicas share the consumer; and a poison message."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta

import asyncpg
import grpc
from nats.aio.client import Client as NATS

from tokenrt.v1 import events_pb2, ledger_pb2, ledger_pb2_grpc
from tokenrt_usage import ensure_streams, usage_subject
from tokenrt_usage.testing import make_event, random_events

from .conftest import LedgerEnv, wait_ready

N = 6000


async def _wait_count(pg: asyncpg.Connection, schema: str, want: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = await pg.fetchval(f'SELECT count(*) FROM "{schema}".usage_events')
        if n >= want:
            return n
        await asyncio.sleep(0.2)
    return n


async def _consumer_idle(nc: NATS, le: LedgerEnv, timeout: float = 60) -> None:
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await js.consumer_info(le.spec.name, le.settings.ledger_durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the consumer still has unacknowledged messages")


def _sums(events: list[events_pb2.UsageEvent]) -> tuple[int, int, int, int]:
    return (len(events), sum(e.usage.input_tokens for e in events),
            sum(e.usage.output_tokens for e in events), sum(e.cost_nusd for e in events))


async def test_every_event_once_across_duplicates_kill_and_two_replicas(
        ledger: LedgerEnv, pg: asyncpg.Connection, nc: NATS) -> None:
    ledger.env["TOKENRT_LEDGER_ACK_WAIT_SECONDS"] = "2"  # a killed replica's batch returns fast
    ledger.env["TOKENRT_LEDGER_BATCH_SIZE"] = "200"
    a, b = ledger.start("a"), ledger.start("b")
    await asyncio.gather(wait_ready(a.address), wait_ready(b.address))

    events = random_events(N, seed=7, spread=timedelta(days=40))
    pub = ledger.publisher()
    await pub.start()
    assert await pub.wait_ready(within=10)
    js = nc.jetstream()
    try:
        for i in range(0, N, 250):
            chunk = events[i:i + 250]
            await pub.publish_many(chunk)
            # Duplicates JetStream cannot catch (no Nats-Msg-Id): only the ledger can.
            for e in chunk[::10]:
                await js.publish(usage_subject(ledger.spec.subject_prefix, e.org_id, e.project_id),
                                 e.SerializeToString())
            if i == N // 2:  # mid-stream: kill replica a wherever it is, then bring it back
                os.kill(a.pid, signal.SIGKILL)
                a.wait(10)
                a = ledger.start("a")
    finally:
        await pub.close()
    await wait_ready(a.address)

    assert await _wait_count(pg, ledger.schema, N) == N
    await _consumer_idle(nc, ledger)
    s = f'"{ledger.schema}"'
    want = _sums(events)
    got = await pg.fetchrow(f"SELECT count(*), sum(input_tokens), sum(output_tokens), "
                            f"sum(cost_nusd) FROM {s}.usage_events")
    assert tuple(got) == want
    assert await pg.fetchval(f"SELECT count(DISTINCT event_id) FROM {s}.usage_events") == N
    for grain in ("minute", "hour", "day", "hour_user", "day_user"):
        rolled = await pg.fetchrow(f"SELECT sum(requests), sum(input_tokens), sum(output_tokens), "
                                   f"sum(cost_nusd) FROM {s}.rollup_{grain}")
        assert tuple(rolled) == want, grain

    # The query API agrees, over the whole range.
    async with grpc.aio.insecure_channel(b.address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        req = ledger_pb2.QueryUsageRequest()
        req.filter.start_time.FromSeconds(0)
        req.filter.end_time.GetCurrentTime()
        reply = await stub.QueryUsage(req, timeout=10)
    t = reply.total
    assert (t.requests, t.usage.input_tokens, t.usage.output_tokens, t.cost_nusd) == want
    assert t.ok_requests + t.cache_hit_requests + t.error_requests == N
    # Both replicas consumed (the restarted one included).
    for name in ("a-0", "b-1", "a-2"):
        assert "ledger.consuming" in (ledger.tmp / f"{name}.log").read_text()


async def test_poison_messages_go_to_the_dead_letter_stream(
        ledger: LedgerEnv, pg: asyncpg.Connection, nc: NATS) -> None:
    proc = ledger.start()
    await wait_ready(proc.address)
    js = nc.jetstream()
    await ensure_streams(js, ledger.spec)
    subject = usage_subject(ledger.spec.subject_prefix, "acme", "web")
    before, after = make_event(), make_event()
    nameless = make_event()
    nameless.event_id = ""
    garbage = b"\xff\xff\xff not a protobuf"
    await js.publish(subject, before.SerializeToString())
    await js.publish(subject, garbage)
    await js.publish(subject, nameless.SerializeToString())
    await js.publish(subject, after.SerializeToString())

    assert await _wait_count(pg, ledger.schema, 2, timeout=30) == 2
    ids = {r[0] for r in await pg.fetch(f'SELECT event_id FROM "{ledger.schema}".usage_events')}
    assert ids == {before.event_id, after.event_id}
    await _consumer_idle(nc, ledger)  # the poison was acked: nothing blocks

    info = await js.stream_info(ledger.spec.dlq_stream)
    assert info.state.messages == 2
    letters = [events_pb2.DeadLetter.FromString((await js.get_msg(ledger.spec.dlq_stream, seq)).data)
               for seq in (1, 2)]
    assert letters[0].data == garbage and letters[0].reason.startswith("decode:")
    assert letters[0].subject == subject and letters[0].stream_sequence == 2
    assert letters[1].reason == "invalid: missing event_id"
    assert letters[1].HasField("dead_lettered_at")
