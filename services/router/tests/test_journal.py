"""The router's write-ahead journal (journal.py): what a SIGKILLed process appended is
recovered by the next one, a living process's segment is never taken, done records go."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import structlog

from tokenrt_router.journal import Journal
from tokenrt_router.offpath import Coalescer

LOG = structlog.get_logger("test")

WRITER = textwrap.dedent("""
    import os, sys, structlog
    from tokenrt_router.journal import Journal
    j = Journal(sys.argv[1], structlog.get_logger("w"))
    j.open()
    for i in range(int(sys.argv[2])):
        seg = j.append(f"event-{i}".encode(), f"settle-{i}".encode() if i % 2 else b"")
        if i < int(sys.argv[3]):  # these are done (published and settled)
            j.done(seg, 2 if i % 2 else 1)
    print("written", flush=True)
    sys.stdin.read()  # hold the lock until killed
""")


def _writer(folder: Path, n: int, done: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(n), str(done)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    return proc


def test_a_sigkilled_writer_s_records_are_recovered_and_then_removed(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    proc = _writer(folder, 5, 0)
    try:
        alive = Journal(folder, LOG)
        alive.open()
        assert alive.recover() == []  # the writer is alive: its segment is not taken
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        [(seg, entries)] = alive.recover()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [(e.event, e.settlement) for e in entries] == [
        (b"event-0", b""), (b"event-1", b"settle-1"), (b"event-2", b""),
        (b"event-3", b"settle-3"), (b"event-4", b"")]
    assert seg.outstanding == 7  # 5 events, 2 settlements
    assert alive.outstanding == 7  # (the metric)
    assert Journal(folder, LOG).recover() == []  # held by `alive` now
    alive.done(seg, 6)
    assert seg.path.exists()
    alive.done(seg)
    assert not seg.path.exists()  # all replayed: gone
    assert alive.outstanding == 0
    alive.close()
    assert list(folder.iterdir()) == []


def test_done_records_are_not_replayed(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    proc = _writer(folder, 4, 4)  # all done: the segment was truncated
    proc.kill()
    proc.wait(10)
    assert Journal(folder, LOG).recover() == []
    assert list(folder.iterdir()) == []  # an empty abandoned segment is removed


def test_a_torn_tail_ends_the_replay_of_its_file(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    j = Journal(folder, LOG)
    j.open()
    j.append(b"kept", b"")
    j.append(b"torn", b"settlement")
    j.close()  # work left: the file stays (and its lock goes with the process's fd)
    [path] = folder.glob("*.seg")
    os.truncate(path, path.stat().st_size - 3)  # a machine crash cut the last record
    j2 = Journal(folder, LOG)
    [(_, entries)] = j2.recover()
    assert [e.event for e in entries] == [b"kept"]


def test_an_old_segment_with_work_left_is_replaced_and_removed_when_done(tmp_path: Path
                                                                         ) -> None:
    j = Journal(tmp_path, LOG, rotate_seconds=0.0)
    j.open()
    first = j.append(b"a")
    second = j.append(b"b")  # the first segment is older than 0 s with work left
    assert first is not None and second is not None and first is not second
    assert first.path.exists()
    j.done(first)
    assert not first.path.exists()
    j.done(second)  # the current one is truncated, not removed
    assert second.path.exists() and second.path.stat().st_size == 0
    j.close()
    assert not second.path.exists()



def test_an_unwritable_folder_means_no_journal_not_no_router(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    j = Journal(blocker / "journal", LOG)
    j.open()  # logged, not raised
    assert j.append(b"event") is None
    assert not j.writing and j.unwritten == 1  # (the metrics)
    assert j.recover() == []
    j.close()


async def test_work_given_up_on_stays_in_the_journal_for_the_next_router(tmp_path: Path) -> None:
    """A flush that keeps failing (the outbox's disk full, the budget away for the whole
    reservation lifetime) is given up on by this router, but its record is not marked done:
    after a shutdown the next router replays it instead of it being lost."""
    journal = Journal(tmp_path, LOG)
    journal.open()
    sent: list[list[bytes]] = []

    async def down(items: list[bytes]) -> None:
        sent.append(items)
        raise ConnectionError("the dependency is down")

    events: Coalescer[bytes] = Coalescer("usage", down, 0.001, 10, LOG,
                                         done=lambda tickets: [journal.done(s) for s in tickets])
    events.add(b"event-1", journal.append(b"event-1"))
    await asyncio.wait_for(events.drain(), 30)  # retried, then given up on
    assert len(sent) > 1
    journal.close()  # shutdown: work left
    [(_, entries)] = Journal(tmp_path, LOG).recover()
    assert [e.event for e in entries] == [b"event-1"]


async def test_delivered_work_is_marked_done(tmp_path: Path) -> None:
    journal = Journal(tmp_path, LOG)
    journal.open()

    async def up(items: list[bytes]) -> None:
        return None

    events: Coalescer[bytes] = Coalescer("usage", up, 0.001, 10, LOG,
                                         done=lambda tickets: [journal.done(s) for s in tickets])
    seg = journal.append(b"event-1")
    events.add(b"event-1", seg)
    await asyncio.wait_for(events.drain(), 30)
    assert seg is not None and seg.outstanding == 0
    journal.close()
    assert Journal(tmp_path, LOG).recover() == []


def test_work_done_after_shutdown_touches_no_other_file(tmp_path: Path) -> None:
    """close() closes the segment's descriptor; a record done after it (a flush that was
    still running) must not truncate or close whatever file reuses that number."""
    journal = Journal(tmp_path / "j", LOG)
    journal.open()
    seg = journal.append(b"event", b"settlement")
    assert seg is not None
    number = seg.fd
    journal.close()
    other = tmp_path / "other"
    other.write_bytes(b"precious")
    fd = os.open(other, os.O_RDWR)
    try:
        assert fd == number, "the descriptor was not reused: nothing is tested"
        journal.done(seg, 2)
        os.fstat(fd)  # still open
        assert other.read_bytes() == b"precious"
    finally:
        os.close(fd)
    assert seg.path.exists()  # the next router replays it (replays are idempotent)
