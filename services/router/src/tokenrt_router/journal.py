"""The router's write-ahead journal: what an answer promises, written before it is sent.

When a request finishes, its usage event and its budget settlement (Commit or Release) are
appended here as one record with a single `write()` before the answer goes back; the
coalescers then publish and settle them off the answer's path, and each record counts as
done once both are (event acknowledged by JetStream or committed to the publisher's
fsynced outbox; settlement answered by the budget). Work this router gives up on (a flush
that kept failing: the outbox's disk full, the budget away for the reservation's whole
lifetime) is not done: its record stays for the next router. A router that dies (SIGKILL,
OOM kill, crash) leaves its journal behind; the next router started with the same outbox
folder replays it on start-up.

Promise: what `append` wrote survives the router process dying in any way, because the
data is in the kernel's page cache once `write()` returns. It does NOT survive a machine
crash or power cut (no fsync on the answer's path: an fsync costs milliseconds); events
that have reached the publisher's outbox or the stream do. Replays are safe to repeat:
an event is deduplicated by its id (JetStream's duplicate window, then the ledger's unique
event id), a settlement by the budget's tombstone of a settled reservation (a second
Commit is ALREADY_SETTLED for 24 h; a Commit whose reservation expired unsettled is
charged late with its chain).

Files: `<folder>/<pid>-<n>.seg`, each held with an exclusive flock(2) by the process that
writes it (the kernel drops the lock when the process dies, however it dies). A router
replays every segment whose lock it can take. The current segment is truncated when all of
its records are done; it is replaced by a new one after ROTATE_SECONDS, and a replaced or
replayed segment is deleted when all of its records are done. Several routers may share
the folder.

Record: header (body length, CRC-32 of the body), body (event length, settlement length,
event bytes, settlement bytes). A torn tail (a machine crash) ends the replay of its file.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import structlog

HEADER = struct.Struct("<II")  # body length, crc32(body)
LENGTHS = struct.Struct("<II")  # event length, settlement length
SUFFIX = ".seg"
ROTATE_SECONDS = 2.0
MAX_RECORD = 64 << 20
STALE_TMP_SECONDS = 60.0


@dataclass(eq=False)
class Segment:
    """One journal file and how many of its parts (events, settlements) are not done."""

    path: Path
    fd: int
    outstanding: int = 0
    size: int = 0
    opened: float = field(default_factory=time.monotonic)
    current: bool = True


@dataclass(frozen=True)
class Entry:
    """One recovered record: a serialized UsageEvent and a serialized budget Settlement
    (empty when the request held no reservation)."""

    event: bytes
    settlement: bytes


class Journal:
    def __init__(self, folder: str | Path, log: structlog.stdlib.BoundLogger,
                 rotate_seconds: float = ROTATE_SECONDS) -> None:
        self.folder = Path(folder)
        self._log = log
        self._rotate = rotate_seconds
        self._n = 0
        self._seg: Segment | None = None
        self._failing = False  # log a write failure once, not once per request
        # For the metrics: records not written (answers served without the journal's
        # promise), and parts (events, settlements) written or replayed and not done.
        self.unwritten = 0
        self.outstanding = 0

    @property
    def writing(self) -> bool:
        """Whether the last append (or the start) succeeded."""
        return self._seg is not None and not self._failing

    # -- writing ------------------------------------------------------------------------

    def open(self) -> None:
        """Start this process's segment. A folder that cannot be written is logged and the
        router serves without a journal (the off-path work then lives in memory only)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._seg = self._new_segment()
        except OSError as exc:
            self._log.error("router.journal_unavailable", path=str(self.folder),
                            error=str(exc)[:200])

    def _new_segment(self) -> Segment:
        self._n += 1
        name = f"{os.getpid()}-{time.time_ns()}-{self._n}"
        tmp = self.folder / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.folder / (name + SUFFIX)
        os.rename(tmp, path)  # visible to others only once locked
        return Segment(path, fd)

    def append(self, event: bytes, settlement: bytes = b"") -> Segment | None:
        """Write one record (one write(2)); the segment to mark done, once per part (event,
        and settlement when given). None when the journal cannot write: the work is then
        only in memory, as it would be without a journal, and that is logged."""
        seg = self._seg
        if seg is None:
            self.unwritten += 1
            return None
        if seg.outstanding > 0 and time.monotonic() - seg.opened > self._rotate:
            seg = self._rotated()  # (a segment with nothing outstanding is truncated)
        body = LENGTHS.pack(len(event), len(settlement)) + event + settlement
        record = HEADER.pack(len(body), zlib.crc32(body)) + body
        try:
            written = os.write(seg.fd, record)
            if written != len(record):
                raise OSError(f"short write: {written} of {len(record)} bytes")
        except OSError as exc:
            self._write_failed(seg, exc)
            self.unwritten += 1
            return None
        if self._failing:
            self._failing = False
            self._log.info("router.journal_writing_again", path=str(seg.path))
        seg.size += len(record)
        parts = 2 if settlement else 1
        seg.outstanding += parts
        self.outstanding += parts
        return seg

    def _rotated(self) -> Segment:
        old = self._seg
        assert old is not None
        try:
            self._seg = self._new_segment()
        except OSError as exc:
            self._write_failed(old, exc)
            return old
        old.current = False
        return self._seg

    def _truncate(self, seg: Segment) -> None:
        try:
            os.ftruncate(seg.fd, 0)
            seg.size = 0
            seg.opened = time.monotonic()
        except OSError as exc:
            self._write_failed(seg, exc)

    def _write_failed(self, seg: Segment, exc: OSError) -> None:
        try:  # a torn record would end a replay: cut it off
            os.ftruncate(seg.fd, seg.size)
        except OSError:
            pass
        if not self._failing:
            self._failing = True
            self._log.error("router.journal_write_failed", path=str(seg.path),
                            error=str(exc)[:200])

    def done(self, seg: Segment | None, parts: int = 1) -> None:
        """`parts` of the segment's records are done (published / settled)."""
        if seg is None or seg.fd < 0:  # closed on shutdown: the file is the next router's
            return
        seg.outstanding -= parts
        self.outstanding -= parts
        if seg.outstanding > 0:
            return
        if seg.current:
            if seg.size:
                self._truncate(seg)
        else:
            _remove(seg)

    def close(self) -> None:
        """On shutdown, after the off-path work drained: a segment with nothing left to do
        is deleted; one with work left stays for the next router to replay."""
        seg, self._seg = self._seg, None
        if seg is None:
            return
        if seg.outstanding <= 0:
            _remove(seg)
        else:
            self._log.warning("router.journal_left", path=str(seg.path),
                              parts=seg.outstanding)
            os.close(seg.fd)
            seg.fd = -1  # its number may be reused: a late done() must not touch it

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> list[tuple[Segment, list[Entry]]]:
        """Segments that no living process holds, locked by this one, with their records.
        Mark each part done (`done(segment)`) once replayed; the file goes when all are."""
        own = self._seg.path if self._seg else None
        out: list[tuple[Segment, list[Entry]]] = []
        if not self.folder.is_dir():
            return out
        for path in sorted(self.folder.glob("*.tmp")):  # never made visible: empty
            try:  # (a fresh one may be another router's, between its open and its lock)
                stale = time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
            except FileNotFoundError:
                continue
            seg = _lock(path) if stale else None
            if seg is not None:
                _remove(seg)
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            if path == own:
                continue
            seg = _lock(path)
            if seg is None:
                continue
            entries, torn = _read(seg.fd)
            if torn:
                self._log.warning("router.journal_torn_tail", path=str(path), bytes=torn)
            seg.current = False
            seg.outstanding = sum(2 if e.settlement else 1 for e in entries)
            self.outstanding += seg.outstanding
            if not entries:
                _remove(seg)
                continue
            out.append((seg, entries))
        return out


def _lock(path: Path) -> Segment | None:
    """The segment at `path` locked by this process, or None when a living process holds
    it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Its owner may have deleted it (all done) between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return Segment(path, fd, current=False)


def _read(fd: int) -> tuple[list[Entry], int]:
    """The whole records of a file, and how many bytes of a torn tail follow them."""
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    out: list[Entry] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        size, crc = HEADER.unpack_from(data, pos)
        body = data[pos + HEADER.size:pos + HEADER.size + size]
        if size < LENGTHS.size or size > MAX_RECORD or len(body) < size \
                or zlib.crc32(body) != crc:
            break
        ev, st = LENGTHS.unpack_from(body)
        if LENGTHS.size + ev + st != size:
            break
        out.append(Entry(body[LENGTHS.size:LENGTHS.size + ev], body[LENGTHS.size + ev:]))
        pos += HEADER.size + size
    return out, len(data) - pos


def _remove(seg: Segment) -> None:
    try:
        os.unlink(seg.path)
    except FileNotFoundError:
        pass
    try:
        os.close(seg.fd)
    except OSError:
        pass
    seg.fd = -1
