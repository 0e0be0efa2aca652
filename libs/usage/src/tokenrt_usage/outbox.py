"""The publisher's durable outbox: an SQLite file in WAL mode with synchronous=FULL.

An append is committed (and so fsynced) before `append` returns, so an event that made
it here survives a SIGKILL or a power cut. Rows come back in insertion order and are
deleted once JetStream has acknowledged them. SQLite is from the standard library, copes
with several processes sharing the file, and never leaves a half-written record behind,
which an append-only file would have to handle by hand.

Every call does blocking file I/O, so the async wrappers run it on one dedicated thread
(which also serialises access to the single connection).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS REAL))
)
"""


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    event_id: str
    subject: str
    data: bytes


class Outbox:
    """Append-only queue of serialized events waiting for JetStream."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-outbox")
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- blocking implementations (run on the outbox thread) ---

    def _append(self, rows: list[tuple[str, str, bytes]]) -> None:
        db = self._conn()
        with db:  # BEGIN ... COMMIT (fsynced: synchronous=FULL)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO outbox (event_id, subject, data) VALUES (?, ?, ?)", rows)

    def _head(self, limit: int) -> list[OutboxRecord]:
        cur = self._conn().execute(
            "SELECT seq, event_id, subject, data FROM outbox ORDER BY seq LIMIT ?", (limit,))
        return [OutboxRecord(*row) for row in cur.fetchall()]

    def _delete_through(self, seq: int) -> None:
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))

    def _count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- async API ---

    async def append(self, rows: list[tuple[str, str, bytes]]) -> None:
        """Store (event_id, subject, data) rows durably, in order."""
        await self._run(self._append, rows)

    async def head(self, limit: int = 100) -> list[OutboxRecord]:
        """The oldest `limit` records."""
        return await self._run(self._head, limit)

    async def delete_through(self, seq: int) -> None:
        """Forget every record up to and including `seq` (they are on JetStream)."""
        await self._run(self._delete_through, seq)

    async def count(self) -> int:
        return await self._run(self._count)

    async def close(self) -> None:
        await self._run(self._close)
        self._pool.shutdown(wait=True)
