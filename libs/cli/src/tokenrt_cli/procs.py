"""Processes that `tokenrt up` starts: records of them, and signals that never miss.

A record keeps the pid, the command line and the start time read back from /proc right
after the start. Before any signal, both are compared with /proc again, so a pid that the
kernel gave to another process since is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessRecord:
    """One process started by `tokenrt up`."""

    kind: str  # "service", "nats", "postgres" or "redis"
    name: str
    pid: int
    cmdline: tuple[str, ...]
    start_ticks: int  # field 22 of /proc/<pid>/stat: start time since boot, in clock ticks
    log: str
    port: int | None = None
    data_dir: str | None = None
    # Extra facts a stop needs (postgres: its pgdata, bin dir and system user).
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cmdline"] = list(self.cmdline)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(**{**data, "cmdline": tuple(data["cmdline"]),
                      "extra": dict(data.get("extra") or {})})


def proc_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of a live pid, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()  # fields from 3 on; the name may hold spaces
    return rest[0], int(rest[19])


def record_for(kind: str, name: str, pid: int, log: Path, cmdline: Iterable[str] | None = None,
               **facts: Any) -> ProcessRecord:
    """A record of a process that runs now: its start time, and its command line as given
    or as /proc shows it."""
    now, stat = proc_cmdline(pid), proc_stat(pid)
    if now is None or stat is None or stat[0] in ("Z", "X"):
        raise ProcessLookupError(f"{name} (pid {pid}) is not running")
    recorded = tuple(cmdline) if cmdline is not None else now
    return ProcessRecord(kind, name, pid, recorded, stat[1], str(log), **facts)


def is_ours(record: ProcessRecord) -> bool:
    """True when the pid still runs the very process the record describes."""
    _reap(record.pid)
    stat = proc_stat(record.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return stat[1] == record.start_ticks and _same_command(proc_cmdline(record.pid), record.cmdline)


def _same_command(now: tuple[str, ...] | None, recorded: tuple[str, ...]) -> bool:
    """Equal command lines; or, for a server that retitles itself (valkey-server does:
    "valkey-server 127.0.0.1:6379"), a title that still begins with the recorded program.

    A retitle clears the old command line before writing the new one: read in between,
    /proc shows it empty. The start time already tells the process apart from a later one
    with the same pid, so an empty command line is not taken for another program (it was:
    "embedded redis exited during start-up" with an empty log, now and then)."""
    if not recorded:
        return False
    if not now or not any(now):
        return True
    return now == recorded or now[0].split(" ", 1)[0] == recorded[0].split(" ", 1)[0]


def launch(kind: str, name: str, cmd: list[str], log: Path, *,
           env: Mapping[str, str] | None = None, cwd: Path | None = None,
           **facts: Any) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    """Start `cmd` in its own session with stdout and stderr going to `log` (truncated).

    Keep the Popen while its exit code matters: once it is dropped, the subprocess module
    may reap the process on a later start, and its exit code is gone."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd,
                                start_new_session=True)
    try:
        return record_for(kind, name, proc.pid, log, cmd, **facts), proc
    except ProcessLookupError:
        proc.wait()
        raise


def spawn(kind: str, name: str, cmd: list[str], log: Path, **options: Any) -> ProcessRecord:
    """`launch`, for a process whose exit code nobody needs."""
    return launch(kind, name, cmd, log, **options)[0]


def signal_if_ours(record: ProcessRecord, sig: signal.Signals) -> bool:
    if not is_ours(record):
        return False
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_all(records: Iterable[ProcessRecord], grace: float) -> dict[str, str]:
    """SIGTERM every record that is still ours, SIGKILL what outlives `grace` seconds.

    Returns name -> what happened ("stopped", "killed", "not running").
    """
    outcome: dict[str, str] = {}
    pending: list[ProcessRecord] = []
    for record in records:
        if signal_if_ours(record, signal.SIGTERM):
            pending.append(record)
        else:
            outcome[record.name] = "not running"
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        still = []
        for record in pending:
            if is_ours(record):
                still.append(record)
            else:
                outcome[record.name] = "stopped"
        pending = still
    for record in pending:
        outcome[record.name] = "killed" if signal_if_ours(record, signal.SIGKILL) else "stopped"
    for record in pending:
        wait_gone(record, 5.0)
    return outcome


def wait_gone(record: ProcessRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_ours(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    """Collect a child of ours that has ended, so it is not mistaken for a live process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path | str, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
