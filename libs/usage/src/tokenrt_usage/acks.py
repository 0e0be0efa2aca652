"""Publish many messages to JetStream and wait for all their acks at once.

nats-py's `js.publish` waits for each ack with its own timer, which costs more CPU than
the publish itself. Here every message gets a reply subject under one inbox whose
subscription callback resolves a future per message, and one `asyncio.wait` covers the
whole batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

Item = tuple[str, bytes, dict[str, str]]  # subject, payload, headers


class AckedSender:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._next = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status"):  # 503: no stream takes the subject
            fut.set_result(False)
            return
        try:
            ack = json.loads(msg.data)
        except ValueError:
            fut.set_result(False)
            return
        fut.set_result(isinstance(ack, dict) and "error" not in ack and "seq" in ack)

    async def send(self, items: Sequence[Item], ack_within: float) -> list[bool]:
        """Publish `items` in order; True for each one JetStream acknowledged in time."""
        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        futures: list[asyncio.Future[bool]] = []
        try:
            for subject, data, headers in items:
                self._next += 1
                token = str(self._next)
                fut: asyncio.Future[bool] = loop.create_future()
                self._waiting[token] = fut
                tokens.append(token)
                futures.append(fut)
                await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}",
                                       headers=headers)
        except Exception:  # disconnected mid-batch: what was not sent counts as failed
            pass
        if futures:
            await asyncio.wait(futures, timeout=ack_within)
        out = []
        for token, fut in zip(tokens, futures, strict=True):
            self._waiting.pop(token, None)
            out.append(fut.done() and not fut.cancelled() and fut.result())
        out += [False] * (len(items) - len(out))
        return out
