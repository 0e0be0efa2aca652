"""One lean, pipelined Redis connection for the commands on a request path: the cache's
lookup reads (HMGET, HGETALL) and Lua scripts (EVALSHA), and any other service's.

A lookup hit's own budget is about 0.3 ms of CPU, and redis-py spends about 0.1 ms of
CPU on one command here (pool checkout with a health read, the pipeline object, the
retry and observability wrappers, a timeout per read). This connection writes the
commands queued in one event-loop turn with one `write`, and hands the replies back in
order (Redis answers a connection's commands in the order they came) with hiredis's
parser: about 20 µs per command. A caller that stops waiting leaves its command to
finish; its reply is dropped, and the connection stays usable.

Bounded: a command not answered within `timeout` closes the connection, which fails
every command still waiting on it (ConnectionError, a RedisError); the next command
reconnects. There is at most one connect in flight: the commands queued while it runs
are sent when it succeeds, or all fail with its error (so a down Redis is dialled once
per failed attempt, not once per command, and a command after it is back succeeds at
once). The connection is made from the same URL as redis-py's: user, password, database,
TLS (`rediss://`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

Command = tuple[str | bytes | int | float, ...]


def _pack(command: Command) -> bytes:
    return bytes(hiredis.pack_command(command))  # type: ignore[arg-type]  # stub: a 1-tuple


class _Waiter:
    """One call's commands: its future gets the list of their replies."""

    __slots__ = ("future", "count", "replies", "sent")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, sent: float) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.sent = sent


class _Replies(asyncio.Protocol):
    """The socket side: replies parsed as they arrive, each to the oldest waiter."""

    def __init__(self, on_lost: Callable[[_Replies], None]) -> None:
        self._parser = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[_Waiter] = deque()  # Redis answers in this order
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                waiter = self.waiting[0]
                waiter.replies.append(reply)
                if len(waiter.replies) < waiter.count:
                    continue
                self.waiting.popleft()
                if waiter.future.done():  # its caller stopped waiting
                    continue
                error = next((r for r in waiter.replies if isinstance(r, hiredis.ReplyError)),
                             None)
                if error is not None:
                    waiter.future.set_exception(ResponseError(str(error)))
                else:
                    waiter.future.set_result(waiter.replies)
        except (hiredis.ProtocolError, IndexError):  # garbled, or a reply nobody asked for
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = RedisConnectionError(f"connection to redis lost: {exc or 'closed by redis'}")
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(error)
        self._on_lost(self)

    def send(self, data: bytes, waiters: list[_Waiter]) -> None:
        assert self.transport is not None
        self.waiting.extend(waiters)
        self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class PipelinedConnection:
    """Commands in, one future per call with their replies out. One per event loop."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._conn: _Replies | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queued: list[bytes] = []
        self._waiters: list[_Waiter] = []
        self._flush_soon = False
        self._watchdog: asyncio.TimerHandle | None = None

    def call(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue commands for this loop turn's write; the future gets their replies in
        order (an error reply raises ResponseError)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.extend(_pack(c) for c in commands)
        self._waiters.append(_Waiter(future, len(commands), 0.0))
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._waiters:
            return
        conn = self._conn
        if conn is None or conn.transport is None:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            return  # sent once connected
        data, waiters = b"".join(self._queued), self._waiters
        self._queued, self._waiters = [], []
        now = time.monotonic()
        for w in waiters:
            w.sent = now
        conn.send(data, waiters)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._timeout, self._watch)

    def _watch(self) -> None:
        """Close a connection whose oldest command has waited past the timeout."""
        self._watchdog = None
        conn = self._conn
        if conn is None or not conn.waiting:
            return
        left = conn.waiting[0].sent + self._timeout - time.monotonic()
        if left <= 0:
            conn.abort()  # connection_lost fails every waiter
            return
        self._watchdog = asyncio.get_running_loop().call_later(left, self._watch)

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._open()
        except Exception as exc:  # every queued reader hears why; a cancel goes up
            error = RedisConnectionError(
                f"cannot connect to redis: {type(exc).__name__}: {exc}")
            waiters, self._queued, self._waiters = self._waiters, [], []
            for w in waiters:
                if not w.future.done():
                    w.future.set_exception(error)
            return
        finally:
            self._connecting = None
        self._conn = conn
        self._flush()

    async def _open(self) -> _Replies:
        options: dict[str, Any] = dict(parse_url(self._url))
        ssl = None
        if options.pop("connection_class", None) is SSLConnection:
            ssl = SSLConnection(**{k: v for k, v in options.items()
                                   if k.startswith("ssl_")}).ssl_context.get()
        host = str(options.get("host", "localhost"))
        loop = asyncio.get_running_loop()
        _transport, conn = await loop.create_connection(
            lambda: _Replies(self._lost), host, int(options.get("port", 6379)), ssl=ssl,
            server_hostname=host if ssl else None)
        hello: list[Command] = []
        if options.get("password"):
            user = options.get("username")
            hello.append(("AUTH", user, options["password"]) if user
                         else ("AUTH", options["password"]))
        if int(options.get("db") or 0):
            hello.append(("SELECT", str(options["db"])))
        if hello:
            waiter = _Waiter(loop.create_future(), len(hello), time.monotonic())
            conn.send(b"".join(_pack(c) for c in hello), [waiter])
            try:
                await waiter.future  # an error reply (wrong password, no such db) raises
            except BaseException:
                conn.abort()
                raise
        return conn

    def _lost(self, conn: _Replies) -> None:
        if self._conn is conn:
            self._conn = None

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        await asyncio.sleep(0)  # let the transport report connection_lost


class Scripts:
    """Lua scripts run by their SHA-1 (EVALSHA) over one pipelined connection; a script
    Redis does not know (restarted or flushed) is loaded and run again in one round trip."""

    def __init__(self, conn: PipelinedConnection, sources: dict[str, str]) -> None:
        self._conn = conn
        self._sources = sources
        self._shas = {name: hashlib.sha1(src.encode()).hexdigest()  # Redis's script id
                      for name, src in sources.items()}

    async def run(self, name: str, keys: tuple[str, ...] | list[str], *args: Any) -> Any:
        call = ("EVALSHA", self._shas[name], len(keys), *keys, *args)
        try:
            (reply,) = await self._conn.call(call)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            _sha, reply = await self._conn.call(("SCRIPT", "LOAD", self._sources[name]), call)
        return reply
