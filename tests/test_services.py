"""The running stack: six processes SERVING, reflection, metrics, request ids,
and honest UNIMPLEMENTED answers for what later issues will build."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tokenrt_common.settings import SERVICES
from tokenrt_testkit.stack import Stack

SERVICE_NAMES = {s: f"tokenrt.v1.{s.capitalize()}Service" for s in SERVICES}


def test_status_reports_all_six_serving(stack: Stack) -> None:
    status = stack.status()
    assert set(status["services"]) == set(SERVICES)
    for name, entry in status["services"].items():
        assert entry["health"] == "SERVING", name
        assert entry["address"] == stack.settings.endpoint(name).address
    for dependency in ("nats", "postgres", "redis"):
        assert status["infra"][dependency]["answers"] is True


@pytest.mark.parametrize("service", SERVICES)
async def test_health_and_reflection(stack: Stack, service: str) -> None:
    address = stack.settings.endpoint(service).address
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAMES[service]):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            listed = {s.name for s in reply.list_services_response.service}
            break
        assert SERVICE_NAMES[service] in listed
        assert "grpc.health.v1.Health" in listed


def _methods(service: str) -> list[tuple[str, object]]:
    pb2 = importlib.import_module(f"tokenrt.v1.{service}_pb2")
    descriptor = pb2.DESCRIPTOR.services_by_name[SERVICE_NAMES[service].split(".")[-1]]
    return [(m.name, m) for m in descriptor.methods]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_rpc_answers_with_a_status_that_means_something(
    stack: Stack, service: str
) -> None:
    """An empty request to every RPC gets an answer or a deliberate status: UNIMPLEMENTED
    (with a message) for what is not built yet, never UNKNOWN or INTERNAL, never a crash."""
    pb2 = importlib.import_module(f"tokenrt.v1.{service}_pb2")
    address = stack.settings.endpoint(service).address
    async with grpc.aio.insecure_channel(address) as channel:
        for name, method in _methods(service):
            request_type = getattr(pb2, method.input_type.name)
            response_type = getattr(pb2, method.output_type.name)
            path = f"/{SERVICE_NAMES[service]}/{name}"
            kwargs = {"request_serializer": request_type.SerializeToString,
                      "response_deserializer": response_type.FromString}
            if method.client_streaming and method.server_streaming:
                call = channel.stream_stream(path, **kwargs)(iter([request_type()]), timeout=5)
            elif method.server_streaming:
                call = channel.unary_stream(path, **kwargs)(request_type(), timeout=5)
            elif method.client_streaming:
                call = channel.stream_unary(path, **kwargs)(iter([request_type()]), timeout=5)
            else:
                call = channel.unary_unary(path, **kwargs)(request_type(), timeout=5)
            try:
                if method.server_streaming:
                    async for _ in call:
                        pass
                else:
                    await call
            except grpc.aio.AioRpcError as err:
                code = err.code()
                assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), path
                assert err.details(), f"{path}: {code.name} without a message"
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    assert f"{path[1:]} is not implemented yet" in err.details()
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_metrics_count_calls_by_method_and_code(stack: Stack) -> None:
    endpoint = stack.settings.endpoint("ledger")
    path = "/grpc.health.v1.Health/Check"

    def count(code: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{endpoint.metrics_port}/metrics",
                                      timeout=5).read().decode()
        for line in text.splitlines():
            if (line.startswith("tokenrt_grpc_requests_total{") and f'method="{path}"' in line
                    and f'code="{code}"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok, not_found = count("OK"), count("NOT_FOUND")
    async with grpc.aio.insecure_channel(endpoint.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=5)
    assert count("OK") == ok + 3
    # A refused call's status reaches the client before the server has counted it.
    for _ in range(50):
        if count("NOT_FOUND") > not_found:
            break
        await asyncio.sleep(0.1)
    assert count("NOT_FOUND") == not_found + 1


async def test_request_id_reaches_the_logs(stack: Stack) -> None:
    endpoint = stack.settings.endpoint("cache")
    name, method = _methods("cache")[0]
    pb2 = importlib.import_module("tokenrt.v1.cache_pb2")
    request_type = getattr(pb2, method.input_type.name)
    rid = f"test-{time.time_ns()}"
    async with grpc.aio.insecure_channel(endpoint.address) as channel:
        call = channel.unary_unary(f"/{SERVICE_NAMES['cache']}/{name}",
                                   request_serializer=request_type.SerializeToString,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError):
            await call(request_type(), timeout=5, metadata=(("x-request-id", rid),))
    # The servicer logs nothing for UNIMPLEMENTED; the interceptor logs the call at debug
    # level only, so look for the id in the access event.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = [json.loads(line) for line in stack.log_path("cache").read_text().splitlines()
                  if line.startswith("{")]
        if any(e.get("request_id") == rid for e in events):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"request id {rid} not found in {stack.log_path('cache')}")


async def test_a_message_over_the_size_limit_is_refused_and_the_service_stays_up(
    stack: Stack,
) -> None:
    from tokenrt.v1 import counter_pb2

    limit = stack.settings.grpc_max_message_bytes
    address = stack.settings.endpoint("counter").address
    huge = counter_pb2.CountTextRequest(model="gpt-4o", text="a" * (limit + 1024))
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 2 * limit)]
    ) as channel:
        call = channel.unary_unary("/tokenrt.v1.CounterService/CountText",
                                   request_serializer=counter_pb2.CountTextRequest.SerializeToString,
                                   response_deserializer=counter_pb2.CountTextResponse.FromString)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(huge, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(limit) in err.value.details()
        small = await call(counter_pb2.CountTextRequest(model="gpt-4o", text="hello world"),
                           timeout=5)
        assert small.tokens == 2
