"""Counter test fixtures: tiktoken's offline files, a real counter process on real Redis."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # counter_* helpers (import mode is importlib)

from counter_fixtures import clear_calibration, start_counter, stop  # noqa: E402

from tokenrt_testkit.procs import ServiceProcess  # noqa: E402


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    clear_calibration()
    proc = start_counter(tmp_path_factory.mktemp("counter"))
    yield proc
    stop(proc)
