"""Dependency failure policies, on router processes whose dependencies are dead ports."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import grpc
import pytest
import tiktoken

from tokenrt.v1 import common_pb2, router_pb2, router_pb2_grpc
from tokenrt_testkit.stack import free_ports
from tokenrt_usage.outbox import Outbox

from .conftest import ROUTER_KEY, detail_of, start_router

T = common_pb2
AUTH = (("authorization", f"Bearer {ROUTER_KEY}"),)


def request(mode: int = 0) -> router_pb2.CompleteRequest:
    return router_pb2.CompleteRequest(
        messages=[T.Message(role=T.ROLE_USER, content=[T.ContentPart(text="hi " + uuid.uuid4().hex)])],
        sampling=T.SamplingParams(temperature=0.0, max_output_tokens=16),
        preferences=router_pb2.RoutingPreferences(
            forced_model="sim/gpt-4o-mini",
            compression=router_pb2.CompressionPolicy(mode=mode, target_tokens=5)))


def dead(*services: str) -> dict[str, str]:
    ports = free_ports(len(services))
    return {f"TOKENRT_{s.upper()}_ADDR": f"127.0.0.1:{p}" for s, p in zip(services, ports, strict=True)}


@pytest.fixture
def everything_down(stack, sim_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    nats_port = free_ports(1)[0]
    proc, address, env = start_router(
        stack.env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-down/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_ROUTER_BUDGET_UNAVAILABLE="open",
        TOKENRT_NATS_URL=f"nats://127.0.0.1:{nats_port}", TOKENRT_RPC_TIMEOUT_SECONDS="0.5",
        **dead("budget", "cache", "compressor"))
    yield address, tmp_path
    proc.terminate()
    proc.wait(20)


async def test_open_budget_cache_compressor_and_nats_down_still_serves(everything_down) -> None:  # type: ignore[no-untyped-def]
    address, state = everything_down
    async with grpc.aio.insecure_channel(address) as ch:
        stub = router_pb2_grpc.RouterServiceStub(ch)
        c = (await stub.Complete(request(router_pb2.COMPRESSION_MODE_ALWAYS), metadata=AUTH,
                                 timeout=30)).completion
    assert "simulator" in c.message.content[0].text and c.cost_nusd > 0
    assert c.budget.enforcement == T.BUDGET_ENFORCEMENT_FAILED_OPEN
    assert not c.cache.hit and not c.HasField("compression")  # sent uncompressed: it fits
    for _ in range(50):  # the event is published off the path, into the outbox
        outbox = Outbox(state / "outbox.sqlite3")
        n = await outbox.count()
        await outbox.close()
        if n:
            break
        await asyncio.sleep(0.2)
    assert n >= 1


async def test_with_the_counter_down_the_prompt_is_bounded_from_above(stack, sim_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The estimate a reservation is made with when the counter cannot count is never below
    the exact count: punctuation and digits are about one token a byte (half the bytes, the
    old estimate, held less than the prompt would be charged)."""
    text = "a1!b2@c3#d4$e5%f6^g7&h8*" * 25  # 600 bytes, 576 tokens
    proc, address, _ = start_router(
        stack.env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-down/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_RPC_TIMEOUT_SECONDS="0.5",
        **dead("counter"))
    try:
        req = request()
        req.messages[0].content[0].text = text
        async with grpc.aio.insecure_channel(address) as ch:
            resp = await router_pb2_grpc.RouterServiceStub(ch).SelectModel(
                router_pb2.SelectModelRequest(request=req), metadata=AUTH, timeout=30)
    finally:
        proc.terminate()
        proc.wait(20)
    exact = len(tiktoken.get_encoding("o200k_base").encode(text)) + 3 + 1 + 3  # + framing
    assert exact == 583
    assert resp.input_tokens >= exact
    assert resp.input_tokens <= len(text.encode()) + 16  # and no more than its bytes


async def test_closed_budget_down_refuses(stack, sim_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, address, env = start_router(
        stack.env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-down/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_RPC_TIMEOUT_SECONDS="0.5",
        **dead("budget"))
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await router_pb2_grpc.RouterServiceStub(ch).Complete(request(), metadata=AUTH,
                                                                     timeout=30)
        # The reservation sent with the prompt's bound failed: the budget-down policy at
        # once, without a second call to the dead budget.
        assert metric(env, "tokenrt_router_speculative_reserves_total") == 1
        assert 'outcome="budget_down"' in metrics_text(env)
    finally:
        proc.terminate()
        proc.wait(20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "budget" in (info.value.details() or "")


def metrics_text(env: dict[str, str]) -> str:
    import urllib.request
    with urllib.request.urlopen(
            f"http://127.0.0.1:{env['TOKENRT_ROUTER_METRICS_PORT']}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(env: dict[str, str], name: str) -> float:
    """One sample of the router's /metrics."""
    text = metrics_text(env)
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in the router's metrics")


async def test_a_journal_that_cannot_write_is_seen_in_metrics_and_logs(stack, sim_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The journal's folder cannot be made (a file has its name): the router still answers,
    and says that it does so without the journal's promise, in its log and its metrics."""
    (tmp_path / "outbox.journal").write_text("not a folder")
    proc, address, env = start_router(
        stack.env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-nojournal/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1")
    try:
        assert metric(env, "tokenrt_router_journal_writing") == 0
        async with grpc.aio.insecure_channel(address) as ch:
            c = (await router_pb2_grpc.RouterServiceStub(ch).Complete(
                request(), metadata=AUTH, timeout=30)).completion
        assert c.cost_nusd > 0
        assert metric(env, "tokenrt_router_journal_unwritten_total") == 1
        assert metric(env, "tokenrt_router_journal_writing") == 0
    finally:
        proc.terminate()
        proc.wait(20)
    assert "router.journal_unavailable" in (tmp_path / "router.log").read_text()


async def test_past_its_in_flight_limit_the_router_turns_requests_away_and_serves_again(stack, sim_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two slow requests fill a router that takes two: a third is turned away at once
    (gRPC UNAVAILABLE / HTTP 503, OVERLOADED, a retry delay, nothing recorded) while the
    two are served; once they are done it takes requests again."""
    proc, address, env = start_router(
        stack.env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-full/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1", TOKENRT_ROUTER_MAX_IN_FLIGHT="2")
    slow = request()
    slow.preferences.forced_model = "sim/gpt-4.1-mini"
    try:
        async with aiohttp.ClientSession() as s:
            await s.post(sim_url + "/sim/pace", json={"model": "gpt-4.1-mini",
                                                      "latency_ms": 3000})
        async with grpc.aio.insecure_channel(address) as ch:
            stub = router_pb2_grpc.RouterServiceStub(ch)
            held = [asyncio.ensure_future(stub.Complete(slow, metadata=AUTH, timeout=30))
                    for _ in range(2)]
            for _ in range(100):
                if metric(env, "tokenrt_router_in_flight") == 2:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Complete(request(), metadata=AUTH, timeout=30)
            async with aiohttp.ClientSession() as s, s.post(
                    f"http://{env['TOKENRT_ROUTER_HTTP_ADDR']}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {ROUTER_KEY}"},
                    json={"model": "sim/gpt-4o-mini", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "hi"}]}) as r:
                http_status, retry_after = r.status, r.headers.get("Retry-After")
                http_body = await r.json()
            served = [(await call).completion for call in held]
            again = (await stub.Complete(request(), metadata=AUTH, timeout=30)).completion
        turned_away = metric(env, "tokenrt_router_turned_away_total")
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(sim_url + "/sim/faults")
        proc.terminate()
        proc.wait(20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "TOKENRT_ROUTER_MAX_IN_FLIGHT" in (info.value.details() or "")
    detail = detail_of(info.value)
    assert detail.reason == T.ERROR_REASON_OVERLOADED
    assert detail.retry_after_ms > 0 and detail.limit == 2
    assert http_status == 503 and retry_after == "1"
    assert http_body["error"]["code"] == "overloaded"
    assert all(c.cost_nusd > 0 for c in served) and again.cost_nusd > 0
    assert turned_away == 2
