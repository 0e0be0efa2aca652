"""Work the answer does not wait for, coalesced into batched calls every few ms.

`Coalescer.add(item)` returns at once; a flush task sends what gathered in one call
(SettleBatch, StoreBatch, Calibrate, publish_many). A failed flush is retried with
backoff a few times, then logged with the number of items; usage events fail here only
when the publisher's durable outbox cannot write either. Events and settlements are
retried for as long as `patience_s` (the reservation's lifetime): a commit dropped while
the budget restarts would leave usage the budget never charges, so a hard limit could be
overspent; a commit that arrives after its reservation expired is still charged
(LATE_COMMITTED); an event dropped while the outbox's disk is full would be lost.

A flush may return the items it must send again (those a dependency refused as
unavailable); only they are retried. Items may carry a ticket (their journal record,
journal.py): `done(tickets)` is called once their batch is sent; a batch given up on
stays in the journal (not done) for the next router to replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog

Item = TypeVar("Item")
RETRIES = 3
MAX_BACKOFF_S = 5.0


Flush = Callable[[list[Item]], Awaitable[Sequence[Item] | None]]


def _nothing(tickets: list[Any]) -> None:
    pass


class Coalescer(Generic[Item]):
    def __init__(self, name: str, flush: Flush[Item], interval_s: float, max_batch: int,
                 log: structlog.stdlib.BoundLogger, patience_s: float = 0.0,
                 done: Callable[[list[Any]], None] = _nothing) -> None:
        self.name = name
        self._flush = flush
        self._done = done
        self._interval = interval_s
        self._patience = patience_s
        self._max = max_batch
        self._log = log
        self._items: list[Item] = []
        self._tickets: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.given_up = 0  # items given up on after their retries (for the metrics)

    def add(self, item: Item, ticket: Any = None) -> None:
        self._items.append(item)
        if ticket is not None:
            self._tickets.append(ticket)
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
        tickets, self._tickets = self._tickets, []
        task = asyncio.create_task(self._send(batch, tickets), name=f"offpath-{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Item], tickets: list[Any]) -> None:
        # Cancelled or given up on: not done, the journal keeps the items for the next
        # router (a usage event or a commit dropped here would be lost for good).
        if await self._retrying(batch) and tickets:
            self._done(tickets)

    async def _retrying(self, batch: list[Item]) -> bool:
        """Whether the batch went (False: given up on, and logged)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._patience
        attempt = 0
        while True:
            error = ""
            try:
                again = await self._flush(batch)
                if not again:
                    return True
                batch, error = list(again), "item unavailable"
            except Exception as exc:  # a dependency is down: retry, then give up loudly
                error = type(exc).__name__
            if attempt >= RETRIES and loop.time() >= give_up:
                self._log.error("router.offpath_failed", work=self.name, items=len(batch),
                                error=error, attempts=attempt + 1)
                self.given_up += len(batch)
                return False
            await asyncio.sleep(min(0.2 * 2 ** attempt, MAX_BACKOFF_S))
            attempt += 1

    async def drain(self) -> None:
        """Send what is pending and wait for every flush in flight (shutdown, tests)."""
        self._kick()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
