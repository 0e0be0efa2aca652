"""A recorded pid is signalled only while it still runs the recorded process."""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

from tokenrt_cli.procs import _same_command, is_ours, signal_if_ours, spawn, stop_all


def test_a_pid_that_no_longer_matches_its_record_is_never_signalled(tmp_path: Path) -> None:
    real = spawn("service", "sleeper", ["sleep", "30"], tmp_path / "sleep.log")
    try:
        assert is_ours(real)
        # The same pid, as if the kernel had handed it to another program or another start.
        recycled = dataclasses.replace(real, start_ticks=real.start_ticks - 1)
        renamed = dataclasses.replace(real, cmdline=("/usr/bin/other", "30"))
        for record in (recycled, renamed):
            assert not is_ours(record)
            assert not signal_if_ours(record, signal.SIGTERM)
            assert stop_all([record], grace=1.0) == {"sleeper": "not running"}
            assert is_ours(real)  # untouched
        assert stop_all([real], grace=5.0) == {"sleeper": "stopped"}
        assert not is_ours(real)
    finally:
        signal_if_ours(real, signal.SIGKILL)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    stubborn = spawn("service", "stubborn",
                     ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"], log)
    try:
        deadline = time.monotonic() + 5
        while "ready" not in log.read_text():  # the trap is set
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert stop_all([stubborn], grace=0.5) == {"stubborn": "killed"}
        assert not is_ours(stubborn)
    finally:
        signal_if_ours(stubborn, signal.SIGKILL)


def test_a_server_caught_mid_retitle_is_still_ours() -> None:
    """valkey-server clears its command line before writing its title: /proc shows it
    empty for a moment, which once made `tokenrt up` call a starting Valkey dead."""
    recorded = ("/venv/bin/valkey-server", "/state/valkey.conf")
    assert _same_command((), recorded)
    assert _same_command(("", "", ""), recorded)
    assert _same_command(("/venv/bin/valkey-server 127.0.0.1:6379", "", ""), recorded)
    assert not _same_command(("/usr/bin/other", "30"), recorded)
