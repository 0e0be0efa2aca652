"""Bad input to every gRPC method of the six services, on the running stack.

Every method listed in the generated descriptors gets valid-shaped requests with absurd
values and raw bodies that are garbage, truncated, bit-flipped, carry invalid UTF-8 or
nest deeper than the decoder allows. Whatever arrives, the answer is OK or a status other
than UNKNOWN / INTERNAL, with a message; no call hangs to its deadline; the service is
still SERVING afterwards. The router under test is one of our own with an admin key
(wired to the session stack), so requests get past authentication into the pipeline.

`make fuzz` runs it with many more examples (TOKENRT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from fuzz_messages import (
    BAD_UTF8,
    Rpc,
    deep_struct_body,
    length_delimited,
    raw_bodies,
    request_messages,
    rpc_methods,
    string_fields,
    struct_path,
)
from fuzz_procs import KeyedRouter
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenrt.v1 import budget_pb2, common_pb2, ledger_pb2, router_pb2
from tokenrt_common.settings import SERVICES
from tokenrt_testkit.stack import Stack

RPCS = rpc_methods()
EXAMPLES = int(os.environ.get("TOKENRT_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck),
                # The normal suite runs the same examples every time; `make fuzz` explores.
                derandomize="TOKENRT_FUZZ_EXAMPLES" not in os.environ)
# Longer than any honest answer to bad input takes, even on a loaded machine.
CALL_TIMEOUT = 30.0
STREAM_ITEMS = 200
BAD = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass
class Target:
    service: str
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]

    def call(self, rpc: Rpc, body: bytes) -> grpc.RpcError | None:
        """Send `body` as the request; the error it ends with, or None."""
        try:
            if rpc.method.server_streaming:
                stream = self.channel.unary_stream(rpc.path)(
                    body, timeout=CALL_TIMEOUT, metadata=self.metadata)
                for i, _ in enumerate(stream):
                    if i >= STREAM_ITEMS:
                        stream.cancel()
                        break
            else:
                self.channel.unary_unary(rpc.path)(body, timeout=CALL_TIMEOUT,
                                                   metadata=self.metadata)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED:  # our own cancel above
                return None
            return err
        return None

    def alive(self) -> bool:
        try:
            reply = health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def targets(stack: Stack, fuzz_router: KeyedRouter) -> Iterator[dict[str, Target]]:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    found: dict[str, Target] = {}
    for service in SERVICES:
        if service == "router":
            address, metadata = fuzz_router.address, fuzz_router.metadata
        else:
            address, metadata = stack.settings.endpoint(service).address, ()
        found[service] = Target(service, grpc.insecure_channel(address, options=options),
                                metadata)
    yield found
    for target in found.values():
        target.channel.close()


def check(target: Target, rpc: Rpc, body: bytes, err: grpc.RpcError | None) -> None:
    """The answer to one bad request is acceptable, and the service lives on."""
    if err is None:
        return
    shown = body[:120]
    assert err.code() not in BAD, (
        f"{rpc.path} answered {err.code().name} ({err.details()!r}) to {len(body)} bytes "
        f"starting {shown!r}")
    assert err.details(), f"{rpc.path}: {err.code().name} without a message"
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        assert target.alive(), f"{rpc.path}: {target.service} died on {shown!r}"


def serving_after(target: Target, rpc: Rpc) -> None:
    deadline = time.monotonic() + 15
    while not target.alive():
        assert time.monotonic() < deadline, f"{target.service} not SERVING after {rpc.path}"
        time.sleep(0.2)


def test_every_service_method_is_fuzzed() -> None:
    """The methods come from the descriptors: a new RPC is fuzzed without edits here."""
    services = {r.service for r in RPCS}
    assert services == set(SERVICES)
    assert len(RPCS) >= 40
    assert "/tokenrt.v1.RouterService/StreamComplete" in {r.path for r in RPCS}


def fuzz_rpc(target: Target, rpc: Rpc, bodies: st.SearchStrategy[bytes]) -> None:
    @FUZZ
    @given(body=bodies)
    def fuzz(body: bytes) -> None:
        check(target, rpc, body, target.call(rpc, body))

    fuzz()
    serving_after(target, rpc)


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.id)
def test_absurd_values_in_valid_shaped_requests(targets: dict[str, Target], rpc: Rpc) -> None:
    fuzz_rpc(targets[rpc.service], rpc,
             request_messages(rpc).map(lambda m: m.SerializeToString()))


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.id)
def test_garbage_truncated_and_flipped_bodies(targets: dict[str, Target], rpc: Rpc) -> None:
    fuzz_rpc(targets[rpc.service], rpc, raw_bodies(rpc))


def test_invalid_utf8_in_any_string_field_is_invalid_argument(
    targets: dict[str, Target],
) -> None:
    """A string field that is not UTF-8 is refused before any handler sees it, with a
    message naming the message type and the UTF-8 problem."""
    sent = 0
    for rpc in RPCS:
        target = targets[rpc.service]
        for i, field in enumerate(string_fields(rpc.method.input_type)):
            body = length_delimited(field.number, BAD_UTF8[i % len(BAD_UTF8)])
            err = target.call(rpc, body)
            assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                f"{rpc.path}.{field.name}: {err and err.code()}")
            assert "UTF-8" in err.details(), err.details()
            assert rpc.method.input_type.full_name in err.details(), err.details()
            sent += 1
    assert sent >= 30


@pytest.mark.parametrize("levels,refused", [(2000, True), (20, False)])
def test_structs_nested_deep(targets: dict[str, Target], levels: int, refused: bool) -> None:
    """Struct (provider options) nests as deep as a caller likes: past the decoder's
    depth limit it is INVALID_ARGUMENT, within it an ordinary answer."""
    reached = [r for r in RPCS if struct_path(r.method.input_type)]
    assert reached, "no request carries a google.protobuf.Struct any more"
    for rpc in reached:
        target = targets[rpc.service]
        body = deep_struct_body(struct_path(rpc.method.input_type) or [], levels)
        err = target.call(rpc, body)
        check(target, rpc, body, err)
        if refused:
            assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc.path
            assert "not a valid message" in err.details()
        serving_after(target, rpc)


@given(st.data())
@FUZZ
def test_oversized_repeated_and_strings_stay_bounded(targets: dict[str, Target],
                                                     data: st.DataObject) -> None:
    """Any method, a body just under the message limit made of one repeated element."""
    rpc = data.draw(st.sampled_from(RPCS))
    fields = [f for f in rpc.method.input_type.fields if f.is_repeated]
    if not fields:
        return
    field = data.draw(st.sampled_from(fields))
    element = length_delimited(field.number, b"")
    body = element * (4_000_000 // len(element))
    target = targets[rpc.service]
    check(target, rpc, body, target.call(rpc, body))


def _bad_timestamp() -> ledger_pb2.GetReportRequest:
    request = ledger_pb2.GetReportRequest()
    request.filter.end_time.nanos = -(2**31)
    return request


# What the fuzzer found, as fixed examples: (method, request, code, words of the message).
FOUND = [
    ("/tokenrt.v1.BudgetService/RemoveLimit", budget_pb2.RemoveLimitRequest(limit_id="\x00"),
     grpc.StatusCode.INVALID_ARGUMENT, "0x00"),
    ("/tokenrt.v1.LedgerService/GetEvent", ledger_pb2.GetEventRequest(event_id="a\x00b"),
     grpc.StatusCode.INVALID_ARGUMENT, "0x00"),
    ("/tokenrt.v1.LedgerService/GetReport", _bad_timestamp(),
     grpc.StatusCode.INVALID_ARGUMENT, "filter.end_time is not a valid timestamp"),
    ("/tokenrt.v1.LedgerService/QueryUsage", ledger_pb2.QueryUsageRequest(page_token=":"),
     grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this service issued"),
    ("/tokenrt.v1.LedgerService/QueryUsage", ledger_pb2.QueryUsageRequest(
        order_by=ledger_pb2.USAGE_ORDER_TOKENS_DESC), grpc.StatusCode.OK, ""),
    ("/tokenrt.v1.LedgerService/QueryUsage", ledger_pb2.QueryUsageRequest(
        order_by=ledger_pb2.USAGE_ORDER_TOKENS_DESC,
        group_by=[ledger_pb2.USAGE_DIMENSION_MODEL]), grpc.StatusCode.OK, ""),
    ("/tokenrt.v1.RouterService/Complete", router_pb2.CompleteRequest(
        messages=[common_pb2.Message()] * 1_000_000),
     grpc.StatusCode.INVALID_ARGUMENT, "at most 100000 messages"),
]


@pytest.mark.parametrize("path,request_,code,words", FOUND,
                         ids=[f"{p.rsplit('/', 1)[1]}-{i}" for i, (p, *_) in enumerate(FOUND)])
def test_what_the_fuzzer_found(targets: dict[str, Target], path: str, request_: Message,
                               code: grpc.StatusCode, words: str) -> None:
    rpc = next(r for r in RPCS if r.path == path)
    err = targets[rpc.service].call(rpc, request_.SerializeToString())
    if code == grpc.StatusCode.OK:
        assert err is None, f"{path}: {err and err.code()} {err and err.details()}"
        return
    assert err is not None and err.code() == code, f"{path}: {err and err.code()}"
    assert words in err.details(), err.details()
