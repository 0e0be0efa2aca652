"""The router's write-ahead journal (journal.py): what a SIGKILLed process appended is
recovered by the next one, a living process's segment is never taken, done records go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import structlog

from tokenrt_router.journal import Journal

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
    assert Journal(folder, LOG).recover() == []  # held by `alive` now
    alive.done(seg, 6)
    assert seg.path.exists()
    alive.done(seg)
    assert not seg.path.exists()  # all replayed: gone
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
    assert j.recover() == []
    j.close()
