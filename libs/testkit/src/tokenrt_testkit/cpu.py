"""CPU time of a process from /proc, for the benchmarks' per-operation figures (CPU time is
not distorted by other processes' load the way wall time is)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, threads that ended included (/proc/<pid>/stat,
    in 10 ms ticks: for runs of many operations); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu_seconds(pid: int) -> float:
    """The sum of the running threads' scheduler run time (/proc/<pid>/task/*/schedstat, in
    nanoseconds: for sub-millisecond operations). Threads that ended are not counted."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


def load_average() -> float:
    return os.getloadavg()[0]
