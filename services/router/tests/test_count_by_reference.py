"""The router counts a repeated context by reference (tokenrt_counter.client.ByReference):
real router and counter processes; the counter is restarted so that the router's digests
are unknown to it and the resend can be seen in the counter's own call counts."""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
from pathlib import Path

import grpc

from tokenrt.v1 import common_pb2, counter_pb2, counter_pb2_grpc, router_pb2, router_pb2_grpc
from tokenrt_testkit.procs import ServiceProcess, start_service
from tokenrt_testkit.stack import with_fresh_ports

from .conftest import ROUTER_KEY, start_router

T = common_pb2
AUTH = (("authorization", f"Bearer {ROUTER_KEY}"),)
MODEL = "sim/gpt-4o-mini"


def ide_context() -> list[common_pb2.Message]:
    """A system prompt and ~150 KB of source files, as an IDE backend sends every time."""
    files = []
    for f in range(12):
        body = "\n".join(f"def f{f}_{i}(x: int) -> int:\n    return x * {i} + {f}  # step {i}"
                         for i in range(220))
        files.append(T.Message(role=T.ROLE_USER, content=[
            T.ContentPart(text=f"<file path='src/mod{f}.py'>\n{body}\n</file>")]))
    return [T.Message(role=T.ROLE_SYSTEM, content=[T.ContentPart(text="You are a coding "
                                                                 "assistant.")]), *files]


def question(context: list[common_pb2.Message], text: str) -> router_pb2.SelectModelRequest:
    return router_pb2.SelectModelRequest(request=router_pb2.CompleteRequest(
        session_id="s-" + uuid.uuid4().hex[:8],
        messages=[*context, T.Message(role=T.ROLE_USER, content=[T.ContentPart(text=text)])],
        sampling=T.SamplingParams(max_output_tokens=64),
        preferences=router_pb2.RoutingPreferences(preferred_model=MODEL)))


def batch_calls(counter: ServiceProcess) -> int:
    """CountMessagesBatch calls the counter answered OK (its tokenrt_grpc_requests_total)."""
    port = counter.env["TOKENRT_COUNTER_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0
    for labels, value in re.findall(r"^tokenrt_grpc_requests_total\{(.*)\} (\S+)$", text, re.M):
        if "CountMessagesBatch" in labels and 'code="OK"' in labels:
            total += int(float(value))
    return total


async def exact(stack, request: router_pb2.SelectModelRequest) -> int:  # type: ignore[no-untyped-def]
    """The count CountMessages gives the full request, from the session stack's counter."""
    async with grpc.aio.insecure_channel(stack.settings.endpoint("counter").address) as ch:
        resp = await counter_pb2_grpc.CounterServiceStub(ch).CountMessages(
            counter_pb2.CountMessagesRequest(model=MODEL, messages=request.request.messages,
                                             sampling=request.request.sampling), timeout=30)
    return resp.input_tokens


async def counted(router: router_pb2_grpc.RouterServiceStub,
                  request: router_pb2.SelectModelRequest) -> int:
    return (await router.SelectModel(request, metadata=AUTH, timeout=30)).input_tokens


async def test_a_repeated_context_goes_by_digest_and_counts_the_same(  # type: ignore[no-untyped-def]
        stack, sim_url: str, tmp_path: Path) -> None:
    env = with_fresh_ports(stack.env, "counter")
    counter = start_service("counter", env, tmp_path / "counter-1.log")
    router_proc, address, _ = start_router(
        env, tmp_path, TOKENRT_ROUTER_KEYS=f"{ROUTER_KEY}=org-ref-{uuid.uuid4().hex[:6]}/p",
        TOKENRT_ROUTER_SIM_BASE_URL=sim_url + "/v1")
    context = ide_context()
    first, second = question(context, "What does f3_7 return?"), \
        question(context, "Rename f0_1 to scale.")
    assert first.request.ByteSize() > 140_000
    try:
        async with grpc.aio.insecure_channel(address) as ch:
            router = router_pb2_grpc.RouterServiceStub(ch)
            want_first, want_second = await exact(stack, first), await exact(stack, second)

            assert await counted(router, first) == want_first  # sent in full
            calls = batch_calls(counter)
            assert await counted(router, second) == want_second  # by digest, known
            assert batch_calls(counter) == calls + 1

            # A new counter knows none of the digests: the router's references come back
            # unknown and the router sends those files again, in a second batch call.
            counter.stop()
            counter = start_service("counter", env, tmp_path / "counter-2.log")
            for _ in range(50):  # until the router's channel has reconnected
                got = await counted(router, first)
                if got == want_first:
                    break
                # The counter-down bound (bound.without_counter): never below the exact
                # count, never above the request's bytes.
                assert want_first < got <= first.request.ByteSize() + 16
                await asyncio.sleep(0.2)
            assert got == want_first
            assert batch_calls(counter) == 2

            # Concurrent requests (one batch, or a few) that all refer to the same files,
            # on a counter that knows them again: every count exact.
            asks = [question(context, f"Question {i}: explain f{i}_{i}.") for i in range(8)]
            wants = [await exact(stack, a) for a in asks]
            assert await asyncio.gather(*(counted(router, a) for a in asks)) == wants

            # Counter down: the router still answers, with its upper bound.
            counter.stop()
            assert want_second < await counted(router, second) <= second.request.ByteSize() + 16
    finally:
        router_proc.terminate()
        router_proc.wait(20)
        counter.stop()
