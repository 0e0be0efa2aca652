"""Critical-path calls merged under load, with no added wait when the router is idle.

`Batcher.call(item)` sends at once when no batch is in flight; items that arrive while
one is go together in the next batch call as soon as it returns. At concurrency 1 each
call is a batch of one (no timer, no extra latency); at concurrency 64 one gRPC call
carries many requests, so the per-call cost of gRPC is paid once per batch.

That alone still sends mostly batches of one or two under load (the router hands its
requests on one at a time), so `linger` may name a wait before each call, for more items
to join it: the router waits a few milliseconds once many requests are being planned,
and never when one is alone. A batch's items are taken when its call starts.

An item whose caller went away (cancelled) before its answer came is handed to
`orphan`, so work done for nobody (a budget reservation) can be undone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import grpc

from tokenrt.v1 import common_pb2

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Answer]]], max_batch: int,
                 orphan: Callable[[Answer], None] | None = None,
                 weigh: Callable[[Item], int] | None = None, max_weight: int = 0,
                 linger: Callable[[], float] | None = None) -> None:
        """A batch holds at most `max_batch` items and, when `weigh` is given, items
        weighing at most `max_weight` together (a heavier item goes alone). `linger()`
        is asked before each call how long to wait for more items, in seconds."""
        self._send = send
        self._max = max_batch
        self._orphan = orphan
        self._weigh = weigh
        self._max_weight = max_weight
        self._linger = linger
        self._queue: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: Item) -> Answer:
        return await self.submit(item)

    def submit(self, item: Item) -> asyncio.Future[Answer]:
        """Send `item` (now or with the next batch); its answer comes in the future. A
        future cancelled before its answer came hands the answer to `orphan`."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._busy:
            self._next()
        return future

    def _next(self) -> None:
        self._busy = bool(self._queue)
        if self._busy:
            task = asyncio.create_task(self._run(), name="batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        n = min(len(self._queue), self._max)
        if self._weigh is not None and n > 1:
            total = 0
            for i, (item, _) in enumerate(self._queue[:n]):
                total += self._weigh(item)
                if total > self._max_weight and i > 0:
                    n = i
                    break
        batch, self._queue = self._queue[:n], self._queue[n:]
        return batch

    async def _run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Answer]]] = []
        try:
            wait = self._linger() if self._linger is not None else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
            batch = self._take()
            answers = await self._send([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(answers)} answers")
        except Exception as exc:  # the whole call failed: every caller sees why
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
                elif self._orphan is not None:
                    self._orphan(answer)
        finally:
            self._next()


class ItemFailed(Exception):
    """One item of a batch call answered with an ItemError. It reads like the AioRpcError
    the unary call would have raised (`code()`, `details()`), so one handler serves both."""

    def __init__(self, error: common_pb2.ItemError) -> None:
        super().__init__(error.message)
        self._code = _STATUS.get(error.code, grpc.StatusCode.UNKNOWN)
        self._details = error.message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


_STATUS = {s.value[0]: s for s in grpc.StatusCode}
