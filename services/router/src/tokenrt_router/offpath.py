"""Work the answer does not wait for, coalesced into batched calls every few ms.

`Coalescer.add(item)` returns at once; a flush task sends what gathered in one call
(SettleBatch, StoreBatch, Calibrate, publish_many). A failed flush is retried with
backoff a few times, then logged with the number of items; usage events never fail here
(the publisher falls back to its durable outbox). Settlements are retried for as long as
`patience_s` (the reservation's lifetime): a commit dropped while the budget restarts
would leave usage the budget never charges, so a hard limit could be overspent; a commit
that arrives after its reservation expired is still charged (LATE_COMMITTED).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

Item = TypeVar("Item")
RETRIES = 3
MAX_BACKOFF_S = 5.0


class Coalescer(Generic[Item]):
    def __init__(self, name: str, flush: Callable[[list[Item]], Awaitable[None]],
                 interval_s: float, max_batch: int, log: structlog.stdlib.BoundLogger,
                 patience_s: float = 0.0) -> None:
        self.name = name
        self._flush = flush
        self._interval = interval_s
        self._patience = patience_s
        self._max = max_batch
        self._log = log
        self._items: list[Item] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: Item) -> None:
        self._items.append(item)
        if len(self._items) >= self._max:
            self._kick()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._kick)

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        batch, self._items = self._items, []
        task = asyncio.create_task(self._send(batch), name=f"offpath-{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._patience
        attempt = 0
        while True:
            try:
                await self._flush(batch)
                return
            except Exception as exc:  # a dependency is down: retry, then give up loudly
                if attempt >= RETRIES and loop.time() >= give_up:
                    self._log.error("router.offpath_failed", work=self.name, items=len(batch),
                                    error=type(exc).__name__, attempts=attempt + 1)
                    return
                await asyncio.sleep(min(0.2 * 2 ** attempt, MAX_BACKOFF_S))
                attempt += 1

    async def drain(self) -> None:
        """Send what is pending and wait for every flush in flight (shutdown, tests)."""
        self._kick()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
