"""Publish UsageEvents to JetStream so that none is ever lost.

`publish(event)` sends the event with `Nats-Msg-Id` = event id and waits for the
JetStream ack. When NATS is unreachable, or the ack does not come in time, the
serialized event is committed to the durable outbox (see outbox.py) instead, and a
background task replays the outbox in order once NATS answers again. Either way, when
`publish` returns the event is durable: on the stream, or fsynced on local disk.
While the outbox holds anything, new events queue behind it, so events reach the stream
in the order they were published. A replayed event that had in fact reached the
stream is dropped by JetStream's duplicate window (and by the ledger's unique event id).
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from tokenrt.v1 import events_pb2
from tokenrt_common.connect import retry
from tokenrt_common.settings import Settings
from tokenrt_usage.acks import AckedSender
from tokenrt_usage.events import problems
from tokenrt_usage.outbox import Outbox
from tokenrt_usage.stream import StreamSpec, ensure_streams
from tokenrt_usage.subjects import usage_subject

REPLAY_CHUNK = 256
REPLAY_IDLE_SECONDS = 1.0


class Delivery(enum.Enum):
    """Where a published event is now."""

    ACKED = "acked"  # stored on the stream (JetStream acknowledged it)
    OUTBOX = "outbox"  # committed to the local outbox; replayed when NATS answers


def default_outbox_path(settings: Settings) -> Path:
    if settings.usage_outbox_path:
        return Path(settings.usage_outbox_path)
    return settings.state_path / "usage-outbox.sqlite3"


class Publisher:
    """Owns a NATS connection, the outbox and the replay task. `start()`, then publish."""

    def __init__(
        self,
        nats_url: str,
        spec: StreamSpec,
        outbox_path: str | Path,
        *,
        publish_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        log: structlog.stdlib.BoundLogger | None = None,
    ) -> None:
        self.spec = spec
        self._url = nats_url
        self._timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._log = log or structlog.get_logger("tokenrt.usage")
        self.outbox = Outbox(outbox_path)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._sender: AckedSender | None = None
        self._stream_ready = False
        self._pending = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings,
                      log: structlog.stdlib.BoundLogger | None = None) -> Publisher:
        return cls(settings.nats_url, StreamSpec.from_settings(settings),
                   default_outbox_path(settings),
                   publish_timeout=settings.usage_publish_timeout_seconds,
                   connect_timeout=settings.dependency_timeout_seconds, log=log)

    @property
    def pending(self) -> int:
        """Events in the outbox, not yet on the stream."""
        return self._pending

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Connect and replay in the background. An outbox that cannot be opened (folder
        unwritable, disk full) is logged, not raised: events still go to the stream while
        NATS answers, and each one the outbox cannot take fails its publish."""
        try:
            self._pending = await self.outbox.count()
        except (OSError, sqlite3.Error) as exc:
            self._pending = 0
            self._log.error("usage.outbox_unavailable", path=str(self.outbox.path),
                            error=str(exc)[:200])
        self._set_drained()
        self._tasks = [asyncio.create_task(self._connect(), name="usage-connect"),
                       asyncio.create_task(self._replay_forever(), name="usage-replay")]
        if self._pending:
            self._log.info("usage.outbox_found", pending=self._pending)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.close(), self._connect_timeout)
            except Exception as exc:  # closing is best effort
                self._log.warning("usage.close_failed", error=type(exc).__name__)
        await self.outbox.close()

    async def publish(self, event: events_pb2.UsageEvent) -> Delivery:
        """Store `event` durably (stream or outbox) and say where it went.

        ValueError when the event lacks what the ledger needs (event_id, org_id,
        occurred_at): such an event is a bug in the caller, not an outage.
        """
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Iterable[events_pb2.UsageEvent]) -> list[Delivery]:
        """Publish several events in order with one ack wait for all of them; those not
        acknowledged in time go to the outbox, in order."""
        rows: list[tuple[str, str, bytes]] = []
        request_ids: list[str] = []
        for event in events:
            found = problems(event)
            if found:
                raise ValueError(f"usage event cannot be published: {', '.join(found)}")
            rows.append((event.event_id,
                         usage_subject(self.spec.subject_prefix, event.org_id, event.project_id),
                         event.SerializeToString()))
            request_ids.append(event.request_id)
        sent = [False] * len(rows)
        if self._pending == 0:
            sent = await self._send(rows, request_ids)
        failed = [row for row, ok in zip(rows, sent, strict=True) if not ok]
        if failed:
            await self._to_outbox(failed)
        return [Delivery.ACKED if ok else Delivery.OUTBOX for ok in sent]

    async def wait_ready(self, within: float) -> bool:
        """Wait until connected with the stream set up; False when `within` seconds pass.

        Not needed before publishing (events go to the outbox meanwhile); useful in tests
        and benchmarks that want the direct path.
        """
        try:
            await asyncio.wait_for(self._ready.wait(), within)
            return True
        except TimeoutError:
            return False

    async def flush(self, within: float) -> bool:
        """Wait until the outbox is empty; False when `within` seconds pass first."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained.wait(), within)
            return True
        except TimeoutError:
            return False

    # --- internals ---

    async def _send(self, rows: list[tuple[str, str, bytes]],
                    request_ids: list[str] | None = None) -> list[bool]:
        """Publish (event_id, subject, data) rows in order; which ones JetStream acked."""
        if not self.connected or not self._stream_ready or self._sender is None:
            return [False] * len(rows)
        items = []
        for i, (event_id, subject, data) in enumerate(rows):
            headers = {"Nats-Msg-Id": event_id}
            if request_ids and request_ids[i]:
                headers["x-request-id"] = request_ids[i]
            items.append((subject, data, headers))
        sent = await self._sender.send(items, self._timeout)
        if not all(sent):  # timeout, no stream, disconnect: the outbox takes them
            self._log.warning("usage.publish_failed", events=len(rows) - sum(sent))
        return sent

    async def _to_outbox(self, rows: list[tuple[str, str, bytes]]) -> None:
        await self.outbox.append(rows)
        self._pending += len(rows)
        self._set_drained()
        self._wake.set()

    def _set_drained(self) -> None:
        if self._pending <= 0:
            self._drained.set()
        else:
            self._drained.clear()

    async def _connect(self) -> None:
        async def connect() -> NATS:
            return await nats.connect(
                self._url, connect_timeout=self._connect_timeout, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                error_cb=self._on_error, reconnected_cb=self._on_reconnected)

        self._nc = await retry(connect, what="nats", log=self._log, max_delay=1.0)
        self._js = self._nc.jetstream(timeout=self._timeout)
        sender = AckedSender(self._nc)
        await sender.start()
        self._sender = sender
        while not self._stream_ready:
            try:
                await ensure_streams(self._js, self.spec)
                self._stream_ready = True
                self._ready.set()
            except Exception as exc:  # JetStream not ready yet; keep events in the outbox
                self._log.warning("usage.stream_setup_failed", error=type(exc).__name__,
                                  detail=str(exc)[:200])
                await asyncio.sleep(1.0)
        self._log.info("usage.connected", stream=self.spec.name)
        self._wake.set()

    async def _on_error(self, exc: Exception) -> None:
        self._log.debug("usage.nats_error", error=type(exc).__name__)

    async def _on_reconnected(self) -> None:
        self._wake.set()

    async def _replay_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), REPLAY_IDLE_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            while self._pending > 0 and self.connected and self._stream_ready:
                if not await self._replay_chunk():
                    break

    async def _replay_chunk(self) -> bool:
        """Send the oldest outbox records in order; True when all of them went."""
        records = await self.outbox.head(REPLAY_CHUNK)
        if not records:
            self._pending = 0
            self._set_drained()
            return False
        acked = await self._send([(r.event_id, r.subject, r.data) for r in records])
        sent = None  # the last record of the acknowledged prefix
        for record, ok in zip(records, acked, strict=True):
            if not ok:
                break
            sent = record
        if sent is not None:
            await self.outbox.delete_through(sent.seq)
            done = sum(1 for r in records if r.seq <= sent.seq)
            self._pending = max(0, self._pending - done)
            self._set_drained()
            self._log.info("usage.outbox_replayed", events=done, pending=self._pending)
        return sent is records[-1]
