"""The critical-path batcher: alone a call goes at once; under load calls are merged (and
wait for more when `linger` says so); a failed batch fails each caller; an answer for a
caller that left goes to `orphan`."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tokenrt.v1 import common_pb2
from tokenrt_router.batching import Batcher, ItemFailed


class Echo:
    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False,
                 short: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.fail = fail
        self.short = short

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("budget unreachable")
        return [i * 10 for i in items][: -1 if self.short else None]


async def test_alone_a_call_is_a_batch_of_one() -> None:
    send = Echo()
    b: Batcher[int, int] = Batcher(send, 100)
    assert await b.call(1) == 10
    assert await b.call(2) == 20
    assert send.batches == [[1], [2]]


async def test_calls_arriving_while_one_is_in_flight_go_together_in_order() -> None:
    gate = asyncio.Event()
    send = Echo(gate)
    b: Batcher[int, int] = Batcher(send, 3)
    calls = [asyncio.create_task(b.call(i)) for i in range(4)]
    await asyncio.sleep(0)  # the first call starts with what came in the same turn: 0-2
    calls += [asyncio.create_task(b.call(i)) for i in range(4, 9)]
    await asyncio.sleep(0)  # 3-8 wait for it
    gate.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(9)]
    assert send.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # at most 3 a call, in order


async def test_a_lingering_call_waits_for_the_items_that_arrive_meanwhile() -> None:
    send = Echo()
    waits: list[float] = []

    def linger() -> float:
        waits.append(0.2 if len(waits) == 0 else 0.0)  # the first call lingers
        return waits[-1]

    b: Batcher[int, int] = Batcher(send, 10, linger=linger)
    first = asyncio.create_task(b.call(1))
    await asyncio.sleep(0.05)  # the first call is waiting: these join it
    rest = [asyncio.create_task(b.call(i)) for i in (2, 3)]
    assert await asyncio.gather(first, *rest) == [10, 20, 30]
    assert await b.call(4) == 40  # no wait asked: sent at once, alone
    assert send.batches == [[1, 2, 3], [4]]
    assert waits == [0.2, 0.0]


async def test_a_failed_batch_fails_every_caller_and_the_next_batch_still_goes() -> None:
    gate = asyncio.Event()
    send = Echo(gate, fail=True)
    b: Batcher[int, int] = Batcher(send, 10)
    calls = [asyncio.create_task(b.call(i)) for i in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    send.fail = False
    assert await b.call(5) == 50


async def test_a_short_answer_is_an_error_for_each_caller_not_a_hang() -> None:
    b: Batcher[int, int] = Batcher(Echo(short=True), 10)
    with pytest.raises(RuntimeError, match="got 0 answers"):
        await asyncio.wait_for(b.call(1), 5)


async def test_the_answer_for_a_caller_that_left_goes_to_orphan() -> None:
    gate = asyncio.Event()
    orphans: list[int] = []
    b: Batcher[int, int] = Batcher(Echo(gate), 10, orphan=orphans.append)
    left = asyncio.create_task(b.call(7))
    stays = asyncio.create_task(b.call(8))
    await asyncio.sleep(0)
    left.cancel()
    gate.set()
    assert await stays == 80
    assert orphans == [70]


def test_an_item_error_reads_like_the_unary_calls_error() -> None:
    err = ItemFailed(common_pb2.ItemError(code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                          message="chain: org_id is empty"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "chain: org_id is empty"


async def test_a_batch_stays_under_its_weight_and_a_heavy_item_goes_alone() -> None:
    gate = asyncio.Event()
    send = Echo(gate)
    b: Batcher[int, int] = Batcher(send, 100, weigh=lambda i: i, max_weight=10)
    calls = [asyncio.create_task(b.call(i)) for i in (1, 4, 5, 2, 30, 3)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*calls) == [10, 40, 50, 20, 300, 30]
    assert send.batches == [[1, 4, 5], [2], [30], [3]]
