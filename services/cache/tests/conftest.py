"""Cache test fixtures: a real cache process per module, a private Valkey per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # cache_procs, cache_fixtures (importlib mode)

from cache_procs import Proc, clear_prefix, start_cache, stop  # noqa: E402

from tokenrt_testkit.procs import PrivateValkey  # noqa: E402
from tokenrt_testkit.stack import free_ports  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_cache(tmp_path_factory.mktemp("cache"))
    yield proc
    stop(proc)
    clear_prefix(proc.prefix)


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[PrivateValkey]:
    """A private Valkey on a free port, which the test may stop and start again."""
    port = free_ports(1)[0]
    v = PrivateValkey(port)
    v.start(tmp_path)
    yield v
    v.stop()
