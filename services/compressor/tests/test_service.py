"""The Compress RPC on a real compressor process with real Redis."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from compressor_chats import ASSISTANT, SYSTEM, TOOL, USER, call, ide_conversation, text

from tokenrt.v1 import common_pb2, compressor_pb2, compressor_pb2_grpc
from tokenrt_common.errors import DETAIL_KEY
from tokenrt_compressor import core
from tokenrt_compressor.counting import CounterMeter
from tokenrt_testkit.procs import ServiceProcess, start_service
from tokenrt_testkit.stack import free_ports, stack_env

REDIS_URL = os.environ.get("TOKENRT_COMPRESSOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")
S = common_pb2


def start(tmp: Path, health: str = "", **overrides: str) -> ServiceProcess:
    env = stack_env(tmp, **{"TOKENRT_REDIS_URL": REDIS_URL, **overrides})
    return start_service("compressor", env, tmp / "compressor.log", health=health)


def stop(proc: ServiceProcess) -> None:
    proc.stop()
    assert proc.process.returncode == 0, proc.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def compressor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    for key in client.scan_iter("tokenrt:compressor:*"):
        client.delete(key)
    client.close()
    proc = start(tmp_path_factory.mktemp("compressor"))
    yield proc
    stop(proc)


@pytest.fixture
async def stub(compressor: ServiceProcess) -> compressor_pb2_grpc.CompressorServiceStub:
    channel = grpc.aio.insecure_channel(compressor.address)
    yield compressor_pb2_grpc.CompressorServiceStub(channel)
    await channel.close()


TENANT = S.Tenant(org_id="acme", project_id="web", user_id="ann")


def test_start_up_warms_every_strategy_before_serving(compressor: ServiceProcess) -> None:
    """In-process (every strategy and tokenizer), then through its own port (every
    strategy, with a session), before the service reports SERVING."""
    events = [json.loads(line) for line in compressor.log.read_text().splitlines()
              if line.startswith("{")]
    names = [e["event"] for e in events]
    ready = events[names.index("compressor.ready")]
    assert set(ready["warm_up_strategy_ms"]) == set(core.STRATEGIES)
    calls = names.index("compressor.warm_up_calls")
    assert events[calls]["failed"] == {}
    served = [e["strategy"] for e in events[:calls] if e["event"] == "compressor.compressed"]
    assert len(served) == len(core.STRATEGIES)
    assert calls < names.index("service.health") and events[names.index("service.health")][
        "serving"]


def detail(err: grpc.aio.AioRpcError) -> S.ErrorDetail:
    for key, value in err.trailing_metadata() or ():
        if key == DETAIL_KEY:
            return S.ErrorDetail.FromString(value)
    raise AssertionError("no error detail")


async def test_compress_reports_exact_tokens_and_costs(stub, meter: CounterMeter) -> None:
    chat, named = ide_conversation(random.Random(11), files=12, turns=30, lines=40, asked=3)
    total = meter.total(chat, [])
    target = total // 4
    answer = await stub.Compress(compressor_pb2.CompressRequest(
        model="gpt-4o", messages=chat, target_tokens=target,
        strategy=S.COMPRESSION_STRATEGY_SELECTIVE_FORGET), timeout=30)
    r = answer.report
    assert r.original_tokens == total
    assert r.compressed_tokens == meter.total(list(answer.messages), []) <= target
    assert r.saved_tokens == total - r.compressed_tokens
    assert r.ratio_bp == round(r.compressed_tokens * 10000 / total)
    assert r.strategy_used == S.COMPRESSION_STRATEGY_SELECTIVE_FORGET
    assert r.saved_cost_nusd == r.saved_tokens * 2_500_000_000 // 1_000_000  # gpt-4o $2.50/M
    # Exact tiktoken counts; the counter marks tool-call rendering (undocumented) as a bound.
    assert r.accuracy.source == S.COUNT_SOURCE_TIKTOKEN
    dropped = [a for a in r.actions if a.kind == compressor_pb2.COMPRESSION_ACTION_KIND_DROPPED]
    assert sum(a.tokens_before for a in dropped) == r.saved_tokens
    assert answer.messages[-1] == chat[-1] and answer.messages[0] == chat[0]


async def test_prefix_stable_session_in_redis(stub, meter: CounterMeter) -> None:
    chat, _ = ide_conversation(random.Random(12), files=8, turns=20, lines=40, asked=2)
    req = dict(model="gpt-4o", session_id="s-prefix", tenant=TENANT)
    first = await stub.Compress(compressor_pb2.CompressRequest(
        messages=chat, target_tokens=meter.total(chat, []) // 2,
        strategy=S.COMPRESSION_STRATEGY_SELECTIVE_FORGET, **req), timeout=30)
    grown = [*chat, text(ASSISTANT, "answer " * 40), text(USER, "next question?")]
    target = first.report.compressed_tokens + 30
    dry = await stub.Compress(compressor_pb2.CompressRequest(
        messages=grown, target_tokens=target, dry_run=True, **req), timeout=30)
    assert dry.report.strategy_used == S.COMPRESSION_STRATEGY_PREFIX_STABLE
    assert "warm prefix" in dry.report.reason
    n = dry.report.prefix_messages_preserved
    assert n > 10 and list(dry.messages[:n]) == list(first.messages[:n])
    assert dry.report.prefix_tokens_preserved == meter.total(list(dry.messages[:n]), []) - 3
    # gpt-4o: $2.50 input, $1.25 cached input per million tokens.
    assert dry.report.prefix_cache_saving_nusd == dry.report.prefix_tokens_preserved * 1250
    again = await stub.Compress(compressor_pb2.CompressRequest(
        messages=grown, target_tokens=target, **req), timeout=30)
    assert again.report.prefix_messages_preserved == n  # the dry run changed nothing
    other = await stub.Compress(compressor_pb2.CompressRequest(
        messages=grown, target_tokens=target, model="gpt-4o", session_id="s-prefix",
        tenant=S.Tenant(org_id="other", project_id="web")), timeout=30)
    assert other.report.prefix_messages_preserved == 0  # sessions never cross tenants
    ttl = redis.Redis.from_url(REDIS_URL).ttl(next(iter(
        redis.Redis.from_url(REDIS_URL).scan_iter("tokenrt:compressor:v1:s:*"))))
    assert 0 < ttl <= 6 * 3600


async def test_incremental_reports_unchanged(stub, meter: CounterMeter) -> None:
    chat = [text(SYSTEM, "s"), text(USER, "q1 " * 100), text(ASSISTANT, "a1 " * 100),
            text(USER, "q2")]
    req = dict(model="gpt-4o", session_id="s-inc", tenant=TENANT,
               strategy=S.COMPRESSION_STRATEGY_INCREMENTAL)
    await stub.Compress(compressor_pb2.CompressRequest(messages=chat, target_tokens=10_000, **req))
    nxt = [*chat, text(ASSISTANT, "a2"), text(USER, "q3")]
    answer = await stub.Compress(compressor_pb2.CompressRequest(
        messages=nxt, target_tokens=10_000, **req))
    assert answer.report.unchanged_messages == 4
    assert answer.report.unchanged_tokens == sum(meter.measure(chat, []).per_message)
    assert "already under target" in answer.report.reason


async def test_summarize_through_the_service(stub, meter: CounterMeter) -> None:
    chat, _ = ide_conversation(random.Random(13), files=5, turns=10, lines=20, asked=1)
    target = meter.total(chat, []) // 2
    answer = await stub.Compress(compressor_pb2.CompressRequest(
        model="gpt-4o", messages=chat, target_tokens=target, session_id="s-sum", tenant=TENANT,
        strategy=S.COMPRESSION_STRATEGY_SUMMARIZE), timeout=30)
    kinds = [a.kind for a in answer.report.actions]
    assert compressor_pb2.COMPRESSION_ACTION_KIND_SUMMARIZED in kinds
    assert meter.total(list(answer.messages), []) == answer.report.compressed_tokens <= target
    assert answer.report.summary_cost_nusd == 0  # the offline summariser is free
    keys = list(redis.Redis.from_url(REDIS_URL).scan_iter("tokenrt:compressor:v1:sum:*"))
    assert keys


async def test_bad_input_gets_clear_statuses(stub, meter: CounterMeter) -> None:
    chat = [text(SYSTEM, "rules " * 200), text(USER, "old"), text(USER, "q")]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4oo", messages=chat,
                                                           target_tokens=10))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "gpt-4o" in detail(exc.value).suggestions
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", messages=chat,
                                                           target_tokens=0))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail(exc.value).field == "target_tokens"
    orphan = [text(USER, "a"), text(TOOL, "r", tool_call_id="zz"), text(USER, "b")]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", messages=orphan,
                                                           target_tokens=5))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail(exc.value).field == "messages[1].tool_call_id"
    missing = [text(USER, "a"), S.Message(role=ASSISTANT, tool_calls=[call("x", "f", {})]),
               text(USER, "b")]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", messages=missing,
                                                           target_tokens=5))
    assert "without a result" in exc.value.details()
    smallest = meter.total([chat[0], chat[2]], [])
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", messages=chat,
                                                           target_tokens=smallest - 1))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    d = detail(exc.value)
    assert d.reason == S.ERROR_REASON_COMPRESSION_TARGET_UNREACHABLE
    assert d.smallest_achievable_tokens == smallest
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(
            model="gpt-4o", messages=chat, target_tokens=50, session_id="x"))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", target_tokens=50))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = await stub.Compress(compressor_pb2.CompressRequest(model="gpt-4o", messages=chat,
                                                           target_tokens=smallest))
    assert ok.report.compressed_tokens == smallest  # the service is still up


async def test_redis_down_only_session_requests_fail(tmp_path: Path) -> None:
    port = free_ports(1)[0]  # nothing listens there
    proc = start(tmp_path, health="liveness", TOKENRT_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        chat = [text(SYSTEM, "s"), text(USER, "old " * 200), text(USER, "q")]
        async with grpc.aio.insecure_channel(proc.address) as channel:
            stub = compressor_pb2_grpc.CompressorServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.Compress(compressor_pb2.CompressRequest(
                    model="gpt-4o", messages=chat, target_tokens=50, session_id="s",
                    tenant=TENANT), timeout=10)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            assert detail(exc.value).reason == S.ERROR_REASON_DEPENDENCY_UNAVAILABLE
            ok = await stub.Compress(compressor_pb2.CompressRequest(
                model="gpt-4o", messages=chat, target_tokens=50), timeout=10)
            assert list(ok.messages) == [chat[0], chat[2]]
    finally:
        stop(proc)
