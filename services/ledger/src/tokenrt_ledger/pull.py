"""Batches from a JetStream pull consumer, with one outstanding pull request at a time.

nats-py's `fetch` waits for every message with its own timeout, which costs more CPU per
message than storing it does. Here messages land, through a subscription callback, in a
buffer that `fetch` drains: up to `batch` messages, or whatever arrived within `wait`
seconds of the first one — or, while the stream still holds more for the consumer (the
last message's `num_pending`), until the batch is full or `BACKLOG_FILL_SECONDS` have
passed: draining a backlog, full batches cost Postgres far less per event than the few
thousand a busy event loop receives in 50 ms.

It speaks the JetStream pull protocol directly: a request `{"batch": n, "expires": ns}`
to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, answered by up to n messages and,
when it ends early, a status message (404 / 408 / 409).
"""

from __future__ import annotations

import asyncio
import json
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NotJSMessageError

STATUS = "Status"
HEARTBEAT = "100"
CONFLICT = "409"
# A request that neither filled nor got its status this long after expiring is lost
# (e.g. NATS reconnected) and is replaced.
GRACE_SECONDS = 1.0
# Longest a fetch keeps filling a batch while the stream has a backlog.
BACKLOG_FILL_SECONDS = 0.5


class BatchPuller:
    def __init__(self, nc: NATS, stream: str, durable: str, batch: int,
                 idle_seconds: float = 1.0, api_prefix: str = "$JS.API") -> None:
        self.nc = nc
        self.batch = batch
        self.idle = idle_seconds
        self.subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: list[Msg] = []
        self._signal = asyncio.Event()
        self._seq = 0
        self._current = ""
        self._active_until = 0.0  # monotonic time the outstanding request expires (+grace)
        self._requested = 0
        self._delivered = 0
        self._pause_until = 0.0
        # After a fetch: it took everything received and the stream held nothing more for
        # the consumer when its last message was delivered.
        self.caught_up = False

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_msg,
                                            pending_msgs_limit=self.batch * 4)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(STATUS) if msg.headers else None
        if status is not None:
            if status != HEARTBEAT and msg.subject == self._current:
                self._active_until = 0.0  # that request is over
                if status == CONFLICT:  # e.g. too many waiting pulls: back off a little
                    self._pause_until = time.monotonic() + 0.1
                self._signal.set()
            return
        # Data messages carry their original subject, not the request's inbox; with one
        # request outstanding at a time they all answer it.
        self._buffer.append(msg)
        self._delivered += 1
        if self._delivered >= self._requested:
            self._active_until = 0.0
        self._signal.set()

    async def _ensure_request(self, expires: float) -> None:
        now = time.monotonic()
        if now < self._active_until or now < self._pause_until:
            return
        self._seq += 1
        self._current = f"{self._inbox}.{self._seq}"
        self._requested = max(1, self.batch - len(self._buffer))
        self._delivered = 0
        self._active_until = now + expires + GRACE_SECONDS
        request = {"batch": self._requested, "expires": int(expires * 1_000_000_000)}
        await self.nc.publish(self.subject, json.dumps(request).encode(), reply=self._current)

    async def _wait_signal(self, until: float) -> bool:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        self._signal.clear()
        try:
            await asyncio.wait_for(self._signal.wait(), min(remaining, 0.25))
        except TimeoutError:
            pass
        return True

    def _backlog(self) -> bool:
        """Whether the stream held more for the consumer after the last message received."""
        return bool(self._buffer) and _pending_after(self._buffer[-1]) > 0

    async def fetch(self, wait: float) -> list[Msg]:
        """Up to `batch` messages: [] after `idle_seconds` without any, else whatever
        arrived within `wait` seconds of the first (longer while there is a backlog)."""
        idle_end = time.monotonic() + self.idle
        while not self._buffer:
            await self._ensure_request(self.idle)
            if not await self._wait_signal(idle_end):
                return []
        now = time.monotonic()
        fill_end, cap = now + wait, now + max(wait, BACKLOG_FILL_SECONDS)
        while len(self._buffer) < self.batch:
            await self._ensure_request(max(wait, 0.01))
            if await self._wait_signal(fill_end):
                continue
            now = time.monotonic()
            if now >= cap or not self._backlog():
                break
            fill_end = min(cap, now + wait)
        out = self._buffer[: self.batch]
        del self._buffer[: self.batch]
        self.caught_up = not self._buffer and _pending_after(out[-1]) == 0
        return out


def _pending_after(msg: Msg) -> int:
    """Messages the stream held for the consumer when `msg` was delivered (-1: unknown)."""
    try:
        return int(msg.metadata.num_pending)
    except NotJSMessageError:
        return -1
